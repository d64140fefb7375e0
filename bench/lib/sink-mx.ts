import { spawn, type ChildProcess } from 'node:child_process';
import { access } from 'node:fs/promises';
import { constants } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { SMTPServer } from 'smtp-server';
import { canConnect, freePortOn, readCpuMs } from './proc.js';

export const SMTP_SINK = '/usr/sbin/smtp-sink';

/**
 * The fake MX every delivery goes to: Postfix's `smtp-sink` (as shared/design/peers.md runs it) when installed,
 * else a minimal smtp-server in this process. Either way it only counts messages, and tells the moment a count
 * was reached (for drain end times and arrival latencies).
 */
export interface SinkMx {
  kind: 'smtp-sink' | 'node';
  host: string;
  port: number;
  /** Messages whose DATA ended with 250, over the sink's whole life. */
  readonly count: number;
  /** performance.now() when `count` reached `target` (possibly in the past), or null after `timeoutMs`. */
  waitForCount(target: number, timeoutMs: number): Promise<number | null>;
  /** CPU used so far by the sink's own process (NaN for the in-process sink: it is part of the bench's CPU). */
  cpuMs(): Promise<number>;
  /** Why the sink is gone, or null while it runs. */
  readonly exitReason: string | null;
  close(): Promise<void>;
}

export async function hasSmtpSink(): Promise<boolean> {
  try {
    await access(SMTP_SINK, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

class Counter {
  count = 0;
  /** When each count was reached (a message can arrive before anybody waits for it). */
  private readonly reachedAt: number[] = [0];
  private waiters: { target: number; resolve: (at: number | null) => void; timer: NodeJS.Timeout }[] = [];

  set(value: number): void {
    if (value <= this.count) return;
    const now = performance.now();
    for (let n = this.count + 1; n <= value; n++) this.reachedAt[n] = now;
    this.count = value;
    this.waiters = this.waiters.filter((waiter) => {
      if (waiter.target > value) return true;
      clearTimeout(waiter.timer);
      waiter.resolve(now);
      return false;
    });
  }

  wait(target: number, timeoutMs: number): Promise<number | null> {
    if (this.count >= target) return Promise.resolve(this.reachedAt[Math.max(0, target)] ?? 0);
    return new Promise((resolve) => {
      const waiter = {
        target,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((other) => other !== waiter);
          resolve(null);
        }, timeoutMs),
      };
      // A wait nobody reads any more must not keep the benchmark alive (the sink's own handles do while it runs).
      waiter.timer.unref();
      this.waiters.push(waiter);
    });
  }
}

export async function startSink(kind: 'smtp-sink' | 'node', host: string): Promise<SinkMx> {
  return kind === 'smtp-sink' ? startSmtpSink(host) : startNodeSink(host);
}

/**
 * `smtp-sink -c HOST:PORT 1000`: with -c it prints `sess=N quit=N mesg=N` followed by CR each time a count
 * changes, flushed at once, so the count is read from its stdout as it happens.
 */
async function startSmtpSink(host: string): Promise<SinkMx> {
  const port = await freePortOn(host);
  const args = [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), '-c', `${host}:${port}`, '1000'];
  const child: ChildProcess = spawn(SMTP_SINK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const counter = new Counter();
  let exitReason: string | null = null;
  let stderr = '';
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitReason = `smtp-sink exited (${signal ?? `status ${code}`})${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`;
      resolve();
    }),
  );
  let pending = '';
  child.stdout!.setEncoding('latin1');
  child.stdout!.on('data', (text: string) => {
    pending += text;
    const records = pending.split(/[\r\n]/);
    pending = records.pop()!;
    for (let i = records.length - 1; i >= 0; i--) {
      const match = /mesg=(\d+)/.exec(records[i]!);
      if (match) {
        counter.set(Number(match[1]));
        break;
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2000)));
  const stop = async () => {
    if (exitReason === null && child.pid !== undefined) {
      child.kill('SIGTERM');
      if (await Promise.race([exited.then(() => false), sleep(5000).then(() => true)])) {
        child.kill('SIGKILL');
        await exited;
      }
    }
  };
  // smtp-sink counts a probe connection as a session only: it changes no message count.
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(host, port))) {
    if (exitReason !== null || Date.now() > deadline) {
      await stop();
      throw new Error(exitReason ?? `smtp-sink did not listen on ${host}:${port} within 10 s`);
    }
    await sleep(50);
  }
  return {
    kind: 'smtp-sink',
    host,
    port,
    get count() {
      return counter.count;
    },
    waitForCount: (target, timeoutMs) => counter.wait(target, timeoutMs),
    cpuMs: async () => (child.pid === undefined ? NaN : ((await readCpuMs(child.pid)) ?? NaN)),
    get exitReason() {
      return exitReason;
    },
    close: stop,
  };
}

/** The fallback: smtp-server taking everything, no TLS, no AUTH, counting at the end of DATA. */
async function startNodeSink(host: string): Promise<SinkMx> {
  const counter = new Counter();
  let received = 0;
  const server = new SMTPServer({
    name: 'sink.bench.test',
    banner: 'bench sink',
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    hideSTARTTLS: true,
    logger: false,
    maxClients: 2000,
    onData(stream, _session, callback) {
      stream.on('end', () => {
        received += 1;
        counter.set(received);
        callback();
      });
      stream.resume();
    },
  });
  const port = await freePortOn(host);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    kind: 'node',
    host,
    port,
    get count() {
      return counter.count;
    },
    waitForCount: (target, timeoutMs) => counter.wait(target, timeoutMs),
    cpuMs: async () => NaN,
    exitReason: null,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A sink that keeps every message it gets (at most `limit`): the sample whose DKIM signatures are checked. */
export interface CaptureSink {
  host: string;
  port: number;
  readonly messages: Buffer[];
  /** Resolves true once `count` messages are kept, false after `timeoutMs`. */
  waitFor(count: number, timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * smtp-server on `host:port` keeping whole messages (only a handful are routed here: the check messages of
 * each measurement, addressed to a domain of their own). `port` is given, not chosen: mta-queue reaches every MX
 * on its one --smtp-port, so this sink listens on another loopback address at the main sink's port.
 */
export async function startCaptureSink(host: string, port: number, limit = 1000): Promise<CaptureSink> {
  const messages: Buffer[] = [];
  let waiters: { count: number; resolve: (ok: boolean) => void }[] = [];
  const server = new SMTPServer({
    name: 'capture.bench.test',
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    hideSTARTTLS: true,
    logger: false,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (messages.length < limit) messages.push(Buffer.concat(chunks));
        waiters = waiters.filter((waiter) => (messages.length >= waiter.count ? (waiter.resolve(true), false) : true));
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    host,
    port,
    messages,
    waitFor: (count, timeoutMs) =>
      messages.length >= count
        ? Promise.resolve(true)
        : new Promise((resolve) => {
            const waiter = { count, resolve };
            waiters.push(waiter);
            setTimeout(() => {
              waiters = waiters.filter((other) => other !== waiter);
              resolve(messages.length >= count);
            }, timeoutMs).unref();
          }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
