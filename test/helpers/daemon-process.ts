import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type DaemonLogLine = Record<string, unknown> & { event?: string; msg?: string };

/**
 * One of our daemons as operators run it: the built CLI in its own process, JSON log lines on stdout.
 * Tests read the log to learn bound ports and to wait for events.
 */
export class DaemonProcess {
  readonly logs: DaemonLogLine[] = [];
  stderr = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private listeners: (() => void)[] = [];

  private constructor(readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines.filter(Boolean)) {
        try {
          this.logs.push(JSON.parse(line) as DaemonLogLine);
        } catch {
          this.logs.push({ msg: line });
        }
      }
      for (const listener of this.listeners.splice(0)) listener();
    });
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static start(cli: 'mta-server' | 'mta-queue', args: string[], options: SpawnOptions = {}): DaemonProcess {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/cli', `${cli}.js`), ...args], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...options,
      env: { ...process.env, ...options.env },
    });
    return new DaemonProcess(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first log line matching `predicate`, waiting for it up to `timeoutMs`. */
  async waitForLog(predicate: (line: DaemonLogLine) => boolean, timeoutMs = 15_000): Promise<DaemonLogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.logs.find(predicate);
      if (found) return found;
      if (this.child.exitCode !== null) throw new Error(`process exited (${this.child.exitCode}) before the log line; stderr: ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`log line not seen within ${timeoutMs} ms; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.listeners.push(() => (clearTimeout(timer), resolve()));
      });
    }
  }

  waitForEvent(event: string, timeoutMs?: number): Promise<DaemonLogLine> {
    return this.waitForLog((line) => line.event === event, timeoutMs);
  }

  signal(signal: NodeJS.Signals): void {
    process.kill(this.pid, signal);
  }

  async exit(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within ${timeoutMs} ms`)), timeoutMs)));
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the process if a test left it running; only ever the PID we started. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Runs a CLI to completion (for usage errors and one-shot commands). */
export async function runCli(cli: 'mta-server' | 'mta-queue', args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const daemon = DaemonProcess.start(cli, args, { env: options.env });
  daemon.child.stdin!.end(options.input ?? '');
  const { code } = await daemon.exit();
  return { code, stderr: daemon.stderr, logs: daemon.logs };
}

export interface MtaQueueResult {
  code: number;
  stdout: string;
  /** stdout as bytes, for `cat`. */
  bytes: Buffer;
  stderr: string;
  /** The JSON log lines on stderr (an admin command's, one per changed message). */
  logs: DaemonLogLine[];
  /** stderr lines that are not JSON (errors). */
  errors: string[];
}

/** The built `mta-queue` CLI as an operator runs it (an admin or dkim command), to completion. */
export function runMtaQueue(args: string[], env: NodeJS.ProcessEnv = {}): Promise<MtaQueueResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(REPO_ROOT, 'dist/cli/mta-queue.js'), ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024, encoding: 'buffer' }, (error, bytes, stderrBytes) => {
      const stderr = stderrBytes.toString('utf8');
      const lines = stderr.split('\n').filter(Boolean);
      resolve({
        code: error ? Number((error as { code?: number }).code ?? 1) : 0,
        stdout: bytes.toString('utf8'),
        bytes,
        stderr,
        logs: lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as DaemonLogLine),
        errors: lines.filter((line) => !line.startsWith('{')),
      });
    });
  });
}
