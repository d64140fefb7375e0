import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCpuMs, readMainThreadCpuMs, readMemory, type MemoryReading } from './proc.js';

export interface MtaQueueOptions {
  repoRoot: string;
  spool: string;
  /** `host:port` of the DNS server. */
  dnsServer: string;
  smtpPort: number;
  concurrency: number;
  /** --max-connections-per-destination, or null for mta-queue's default. */
  perDestination: number | null;
  logLevel: 'info' | 'warn';
  /** Options for node itself, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** More mta-queue flags, e.g. --dkim-dir DIR. */
  extraArgs?: string[];
}

/** One JSON log line of mta-queue (pino), with the moment it was read. */
export interface LogLine {
  at: number;
  level: number;
  event?: string;
  msg?: string;
  [key: string]: unknown;
}

const PINO_WARN = 40;

/**
 * `node dist/cli/mta-queue.js` as a child process (its own PID, so /proc readings are its alone). Its JSON log
 * lines are read as they come: events can be awaited, and warn/error lines are kept for the report.
 */
export class MtaQueueProcess {
  readonly spawnedAt = performance.now();
  private exit: string | null = null;
  private readonly exited: Promise<void>;
  private pending = '';
  private waiters: { event: string; resolve: (line: LogLine | null) => void; timer: NodeJS.Timeout }[] = [];
  private readonly seen = new Map<string, LogLine>();
  /** warn and error lines (the last 20), and how many there were. */
  readonly problems: string[] = [];
  problemCount = 0;
  lineCount = 0;
  private stderr = '';

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = `mta-queue ${child.pid} exited (${signal ?? `status ${code}`})${this.stderr ? `: ${this.stderr.trim().split('\n').slice(-2).join(' | ')}` : ''}`;
        for (const waiter of this.waiters.splice(0)) {
          clearTimeout(waiter.timer);
          waiter.resolve(null);
        }
        resolve();
      });
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => this.onOutput(text));
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString('utf8')).slice(-4000)));
  }

  static start(options: MtaQueueOptions): MtaQueueProcess {
    const args = [
      ...(options.nodeArgs ?? []),
      path.join(options.repoRoot, 'dist/cli/mta-queue.js'),
      ...['--spool', options.spool, '--dns-servers', options.dnsServer, '--smtp-port', String(options.smtpPort)],
      ...['--hostname', 'bench.test', '--log-level', options.logLevel, '--concurrency', String(options.concurrency)],
      ...(options.perDestination === null ? [] : ['--max-connections-per-destination', String(options.perDestination)]),
      ...(options.extraArgs ?? []),
    ];
    // Only the flags above: an MTA_* variable in the caller's environment must not change the daemon under test.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MTA_')));
    return new MtaQueueProcess(spawn(process.execPath, args, { cwd: options.repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get exitReason(): string | null {
    return this.exit;
  }

  /** The first line with this `event` (an earlier one counts), or null on timeout or exit. */
  waitForEvent(event: string, timeoutMs: number): Promise<LogLine | null> {
    const seen = this.seen.get(event);
    if (seen) return Promise.resolve(seen);
    if (this.exit) return Promise.resolve(null);
    return new Promise((resolve) => {
      const waiter = {
        event,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((other) => other !== waiter);
          resolve(null);
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** User + system CPU so far, all threads (the event loop and libuv's pool that runs the fs calls). */
  async cpuMs(): Promise<number> {
    return (await readCpuMs(this.pid)) ?? NaN;
  }

  /** User + system CPU so far of the main thread: the event loop that delivers (the web UI has a thread of its own). */
  async eventLoopCpuMs(): Promise<number> {
    return (await readMainThreadCpuMs(this.pid)) ?? NaN;
  }

  memory(): Promise<MemoryReading | null> {
    return readMemory(this.pid);
  }

  /** SIGTERM (graceful: in-flight deliveries finish), SIGKILL to this PID after `timeoutMs`. Resolves with ms taken. */
  async stop(timeoutMs = 15_000): Promise<number> {
    const started = performance.now();
    if (this.exit === null && this.child.pid !== undefined) {
      this.child.kill('SIGTERM');
      const killed = await Promise.race([this.exited.then(() => false), sleep(timeoutMs).then(() => true)]);
      if (killed && this.exit === null) {
        this.problems.push(`no exit ${timeoutMs} ms after SIGTERM: SIGKILL`);
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    return performance.now() - started;
  }

  private onOutput(text: string): void {
    const at = performance.now();
    this.pending += text;
    const lines = this.pending.split('\n');
    this.pending = lines.pop()!;
    for (const raw of lines) {
      if (!raw.trim()) continue;
      this.lineCount += 1;
      let line: LogLine;
      try {
        line = { ...(JSON.parse(raw) as { level: number }), at };
      } catch {
        this.keepProblem(raw);
        continue;
      }
      if (line.level >= PINO_WARN) this.keepProblem(raw);
      if (line.event && !this.seen.has(line.event)) {
        this.seen.set(line.event, line);
        this.waiters = this.waiters.filter((waiter) => {
          if (waiter.event !== line.event) return true;
          clearTimeout(waiter.timer);
          waiter.resolve(line);
          return false;
        });
      }
    }
  }

  private keepProblem(raw: string): void {
    this.problemCount += 1;
    this.problems.push(raw.length > 400 ? `${raw.slice(0, 400)}…` : raw);
    if (this.problems.length > 20) this.problems.shift();
  }
}
