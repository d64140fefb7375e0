import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Linux /proc readings and process plumbing shared by the scenarios (loopback and own PIDs only). */

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux; /proc/PID/stat counts in these

export interface MemoryReading {
  rssKb: number;
  hwmKb: number;
}

/** VmRSS and VmHWM (peak RSS since the process started) of one process, or null once it is gone. */
export async function readMemory(pid: number): Promise<MemoryReading | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
  } catch {
    return null;
  }
}

/**
 * User + system CPU time of one process in milliseconds, or null once it is gone. `withExitedChildren` adds
 * what its children used before they exited and were waited for (Postfix's master reaps cleanup processes
 * that reached max_use: their time would otherwise vanish from any count).
 */
export async function readCpuMs(pid: number | 'self', withExitedChildren = false): Promise<number | null> {
  return statCpuMs(`/proc/${pid}/stat`, withExitedChildren);
}

/** The same for a process's main thread alone (its task whose id is the pid): a node process's event loop. */
export function readMainThreadCpuMs(pid: number): Promise<number | null> {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`, false);
}

async function statCpuMs(file: string, withExitedChildren: boolean): Promise<number | null> {
  try {
    const stat = await readFile(file, 'utf8');
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]) + (withExitedChildren ? Number(fields[13]) + Number(fields[14]) : 0);
    return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** PIDs whose parent is `parent` (Postfix's master and the daemons it forked). */
export async function childPids(parent: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === parent) out.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Alive and not a zombie (state Z or X in /proc/PID/stat). Synchronous: a tiny /proc read in bounded polls. */
export function isRunning(pid: number): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
  return state !== 'Z' && state !== 'X';
}

/** Whole-machine CPU: busy share of all cores between two readings of /proc/stat. */
export interface CpuSnapshot {
  busy: number;
  total: number;
}

export async function readMachineCpu(): Promise<CpuSnapshot> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = values[3]! + values[4]!; // idle + iowait
  const total = values.reduce((sum, value) => sum + value, 0);
  return { busy: total - idle, total };
}

/** Busy percentage of the whole machine (100 % = every core busy). */
export function machineBusyPercent(before: CpuSnapshot, after: CpuSnapshot): number {
  const total = after.total - before.total;
  return total > 0 ? ((after.busy - before.busy) / total) * 100 : NaN;
}

/** CPU time all processes together used between two readings, milliseconds. */
export function machineBusyMs(before: CpuSnapshot, after: CpuSnapshot): number {
  return ((after.busy - before.busy) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** A loopback port nobody listens on right now (the kernel picks it). */
export function freePort(): Promise<number> {
  return freePortOn('127.0.0.1');
}

/** A port free on `host` right now (every 127.x address is loopback; 127.0.0.1's free ports say nothing for .2). */
export function freePortOn(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Polls until something accepts TCP connections on 127.0.0.1:port; `gone()` aborts early (the server died). */
export async function waitForPort(port: number, timeoutMs: number, gone: () => string | null = () => null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reason = gone();
    if (reason) throw new Error(reason);
    if (await canConnect('127.0.0.1', port)) return;
    if (Date.now() > deadline) throw new Error(`nothing accepted connections on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Whether something accepts a TCP connection on host:port right now (1 s connect timeout). */
export function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
  timedOut: boolean;
}

/**
 * Runs a command to completion with a hard time limit: past `timeoutMs` the child (only that PID) gets SIGKILL.
 * Output is kept up to 64 KB per stream; `ignoreStdout` sends stdout nowhere (smtp-source's counter).
 */
export function runCommand(file: string, args: string[], options: { timeoutMs: number; ignoreStdout?: boolean; env?: NodeJS.ProcessEnv }): Promise<CommandResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    let child: ChildProcess;
    try {
      child = spawn(file, args, { stdio: ['ignore', options.ignoreStdout ? 'ignore' : 'pipe', 'pipe'], env: options.env ?? process.env });
    } catch (error) {
      resolve({ code: null, signal: null, stdout: '', stderr: (error as Error).message, elapsedMs: 0, timedOut: false });
      return;
    }
    const keep = { stdout: '', stderr: '' };
    const collect = (name: 'stdout' | 'stderr') => (chunk: Buffer) => {
      if (keep[name].length < 65536) keep[name] += chunk.toString('utf8');
    };
    child.stdout?.on('data', collect('stdout'));
    child.stderr?.on('data', collect('stderr'));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, options.timeoutMs);
    child.once('error', (error) => {
      keep.stderr += error.message;
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: keep.stdout, stderr: keep.stderr, elapsedMs: performance.now() - started, timedOut });
    });
  });
}

/** Number of regular files under `dir` (recursively); 0 if it does not exist. */
export async function countFiles(dir: string): Promise<number> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let count = 0;
  for (const entry of entries) {
    if (entry.isFile()) count += 1;
    else if (entry.isDirectory()) count += await countFiles(`${dir}/${entry.name}`);
  }
  return count;
}
