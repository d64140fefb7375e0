import path from 'node:path';
import type { Readable } from 'node:stream';
import { nodeSpoolFs, type SpoolFile, type SpoolFs } from '../../src/spool/spool-fs.js';

/** One spool file-system call, as the double saw it: the operation and the file (or directory) it was on. */
export interface FsCall {
  op: string;
  path: string;
}

type Matcher = (call: FsCall, index: number) => boolean;

interface Fault {
  match: Matcher;
  /** errno code to fail with; undefined with `gate` only delays. */
  code: string | undefined;
  /** The call waits for this before it runs (or fails). */
  gate: Promise<void> | undefined;
  /** How many more calls it applies to. */
  left: number;
  /** The call reports success without running (`loseWhen`). */
  lose?: boolean;
}

/**
 * The spool's file system with faults on demand (chasquid's safeio tests): the real calls, recorded in order, of
 * which chosen ones fail with an errno (ENOSPC, EIO, EMFILE) or wait for the test to let them go. Calls made on an
 * open file (write, datasync, close…) count as calls too, named by the file they were opened on.
 */
export class FaultyFs implements SpoolFs {
  readonly calls: FsCall[] = [];
  private readonly faults: Fault[] = [];

  constructor(private readonly real: SpoolFs = nodeSpoolFs) {}

  /** Fails the call number `index` (0-based, counting every call since this double was made) with `code`. */
  failCall(index: number, code = 'EIO'): void {
    this.faults.push({ match: (_call, at) => at === index, code, gate: undefined, left: 1 });
  }

  /** Fails the next `times` calls that `match` with `code`. */
  failWhen(match: (call: FsCall) => boolean, code = 'EIO', times = 1): void {
    this.faults.push({ match, code, gate: undefined, left: times });
  }

  /** Holds the next call that matches until the returned function is called; `reached` resolves when it is held. */
  holdWhen(match: (call: FsCall) => boolean): { reached: Promise<void>; release: () => void } {
    let release!: () => void;
    let reached!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const held = new Promise<void>((resolve) => (reached = resolve));
    this.faults.push({
      match: (call) => {
        if (!match(call)) return false;
        reached();
        return true;
      },
      code: undefined,
      gate,
      left: 1,
    });
    return { reached: held, release };
  }

  /**
   * Makes the next `times` calls that `match` report success without running: what a power loss does to a rename
   * or unlink whose directory was never fsynced. Only for calls that return nothing (rename, unlink, rmdir).
   */
  loseWhen(match: (call: FsCall) => boolean, times = 1): void {
    this.faults.push({ match, code: undefined, gate: undefined, left: times, lose: true });
  }

  /** The calls seen so far that match, as `op basename` lines, for checking their order. */
  callsOn(predicate: (call: FsCall) => boolean): string[] {
    return this.calls.filter(predicate).map((call) => `${call.op} ${path.basename(call.path)}`);
  }

  /** Records the call and applies its fault; true when the call is to be lost rather than run. */
  private async enter(op: string, file: string): Promise<boolean> {
    const call = { op, path: file };
    const index = this.calls.push(call) - 1;
    const fault = this.faults.find((candidate) => candidate.left > 0 && candidate.match(call, index));
    if (!fault) return false;
    fault.left--;
    if (fault.gate) await fault.gate;
    if (fault.code) throw Object.assign(new Error(`${fault.code}: injected fault, ${op} '${file}'`), { code: fault.code, syscall: op, path: file });
    return fault.lose === true;
  }

  private async run<T>(op: string, file: string, action: () => Promise<T>): Promise<T> {
    if (await this.enter(op, file)) return undefined as T;
    return action();
  }

  async open(file: string, flags: 'r' | 'wx'): Promise<SpoolFile> {
    const handle = await this.run(`open-${flags}`, file, () => this.real.open(file, flags));
    const on = <T>(op: string, action: () => Promise<T>) => this.run(op, file, action);
    return {
      write: ((...args: Parameters<SpoolFile['write']>) => on('write', () => (handle.write as (...a: unknown[]) => Promise<unknown>)(...args))) as SpoolFile['write'],
      writev: (buffers, position) => on('writev', () => handle.writev(buffers, position)),
      writeFile: (data) => on('writeFile', () => handle.writeFile(data)),
      read: ((...args: Parameters<SpoolFile['read']>) => on('read', () => (handle.read as (...a: unknown[]) => Promise<unknown>)(...args))) as SpoolFile['read'],
      readFile: ((options?: unknown) => on('readFile', () => (handle.readFile as (o?: unknown) => Promise<unknown>)(options))) as SpoolFile['readFile'],
      datasync: () => on('datasync', () => handle.datasync()),
      stat: ((options?: unknown) => on('stat', () => (handle.stat as (o?: unknown) => Promise<unknown>)(options))) as SpoolFile['stat'],
      // A close always releases the descriptor, even when it reports a failure: no test leaks one.
      close: async () => {
        const closing = handle.close();
        await this.enter('close', file).finally(() => closing);
        await closing;
      },
    };
  }

  rename(from: string, to: string): Promise<void> {
    return this.run('rename', `${from} -> ${to}`, () => this.real.rename(from, to));
  }
  unlink(file: string): Promise<void> {
    return this.run('unlink', file, () => this.real.unlink(file));
  }
  readdir(dir: string): Promise<string[]> {
    return this.run('readdir', dir, () => this.real.readdir(dir));
  }
  mkdir(dir: string): Promise<void> {
    return this.run('mkdir', dir, () => this.real.mkdir(dir));
  }
  rmdir(dir: string): Promise<void> {
    return this.run('rmdir', dir, () => this.real.rmdir(dir));
  }
  chmod(file: string, mode: number): Promise<void> {
    return this.run('chmod', file, () => this.real.chmod(file, mode));
  }
  access(file: string): Promise<void> {
    return this.run('access', file, () => this.real.access(file));
  }
  readFile(file: string): Promise<Buffer> {
    return this.run('readFile', file, () => this.real.readFile(file));
  }
  modifiedAt(file: string): Promise<number> {
    return this.run('modifiedAt', file, () => this.real.modifiedAt(file));
  }
  touch(file: string, at: Date): Promise<void> {
    return this.run('touch', file, () => this.real.touch(file, at));
  }
  syncDirectory(dir: string): Promise<void> {
    return this.run('syncDirectory', dir, () => this.real.syncDirectory(dir));
  }
  createReadStream(file: string, range?: { start: number; end: number }): Readable {
    this.calls.push({ op: 'createReadStream', path: file });
    return this.real.createReadStream(file, range);
  }
}
