import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, readCpuMs, readMemory, waitForPort, type MemoryReading } from './proc.js';

export interface MtaServerOptions {
  repoRoot: string;
  /** The spool is a fresh directory made under here, removed by stop(). */
  workDir: string;
  usersFile: string;
  certFile: string;
  keyFile: string;
  extraArgs?: string[];
  /** Options for node itself, e.g. --cpu-prof. */
  nodeArgs?: string[];
}

/**
 * `node dist/cli/mta-server.js` as a child process (its own PID, so /proc readings are the server's alone)
 * on a free loopback port with a fresh spool. Its log output (warn and above) is kept for the report.
 */
export class MtaServerProcess {
  private exit: string | null = null;
  private readonly exited: Promise<void>;
  private logTail = '';
  logLines = 0;

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly spool: string,
    private readonly spoolParent: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = `mta-server exited (${signal ?? `status ${code}`})${this.logTail ? `: ${this.logTail.trim().split('\n').slice(-3).join(' | ')}` : ''}`;
        resolve();
      });
    });
    const keep = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      this.logLines += text.split('\n').length - 1;
      this.logTail = (this.logTail + text).slice(-4096);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  static async start(options: MtaServerOptions): Promise<MtaServerProcess> {
    const spoolParent = await mkdtemp(path.join(options.workDir, 'spool-'));
    const spool = path.join(spoolParent, 'spool');
    const port = await freePort();
    const args = [
      ...(options.nodeArgs ?? []),
      path.join(options.repoRoot, 'dist/cli/mta-server.js'),
      ...['--host', '127.0.0.1', '--port', String(port), '--spool', spool, '--users', options.usersFile],
      ...['--cert', options.certFile, '--key', options.keyFile, '--trusted-networks', '127.0.0.0/8'],
      ...['--log-level', 'warn', '--hostname', 'bench.test'],
      ...(options.extraArgs ?? []),
    ];
    // Only MTA_* variables we set: an MTA_* in the caller's environment must not change the server under test.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MTA_')));
    const child = spawn(process.execPath, args, { cwd: options.repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env });
    const server = new MtaServerProcess(child, port, spool, spoolParent);
    try {
      await waitForPort(port, 15_000, () => server.exit);
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Why the server is gone, or null while it runs. */
  get exitReason(): string | null {
    return this.exit;
  }

  get recentLog(): string {
    return this.logTail;
  }

  memory(): Promise<MemoryReading | null> {
    return readMemory(this.pid);
  }

  /** CPU time used so far (all threads: the event loop and libuv's pool that runs the fs calls). */
  async cpuMs(): Promise<number> {
    return (await readCpuMs(this.pid)) ?? NaN;
  }

  /** SIGTERM (the server's graceful stop), SIGKILL to this PID after 10 s, then the spool is removed. */
  async stop(): Promise<void> {
    if (this.exit === null && this.child.pid !== undefined) {
      this.child.kill('SIGTERM');
      const killed = await Promise.race([this.exited.then(() => false), sleep(10_000).then(() => true)]);
      if (killed && this.exit === null) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    await rm(this.spoolParent, { recursive: true, force: true });
  }
}
