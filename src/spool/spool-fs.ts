import { createReadStream } from 'node:fs';
import { access, chmod, mkdir, open, readdir, readFile, rename, rmdir, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { removeIfPresent as removeFileIfPresent, syncDirectory } from '../shared/files.js';

/** The calls the spool makes on an open file (a node FileHandle has them all). */
export interface SpoolFile extends Pick<FileHandle, 'write' | 'writev' | 'read' | 'readFile' | 'datasync' | 'stat' | 'close'> {
  /** Node 20's FileHandle takes a stream here too (its types lag behind). */
  writeFile(data: string | Uint8Array | Readable): Promise<void>;
}

/**
 * Every file-system call of the spool goes through one of these (chasquid's safeio: injectable file operations
 * "so we can simulate failures in tests"). Production uses `nodeSpoolFs`; a test passes a double that fails or
 * delays step k of a commit, a detach, a split or a recovery, or records the order of the operations.
 */
export interface SpoolFs {
  /** 'r' reads; 'wx' creates a file only the service user can read and fails rather than reuse a name. */
  open(file: string, flags: 'r' | 'wx'): Promise<SpoolFile>;
  rename(from: string, to: string): Promise<void>;
  unlink(file: string): Promise<void>;
  readdir(dir: string): Promise<string[]>;
  /** With parents, mode 0700. */
  mkdir(dir: string): Promise<void>;
  rmdir(dir: string): Promise<void>;
  chmod(file: string, mode: number): Promise<void>;
  /** Rejects (ENOENT) when nothing is there. */
  access(file: string): Promise<void>;
  readFile(file: string): Promise<Buffer>;
  /** mtime in epoch ms. */
  modifiedAt(file: string): Promise<number>;
  /** Sets the mtime (a lease's heartbeat). */
  touch(file: string, at: Date): Promise<void>;
  /** fsync of a directory: what makes the renames and unlinks in it durable. */
  syncDirectory(dir: string): Promise<void>;
  /** A byte range (both ends included) or the whole file. */
  createReadStream(file: string, range?: { start: number; end: number }): Readable;
}

export const nodeSpoolFs: SpoolFs = {
  open: (file, flags) => open(file, flags, 0o600),
  rename,
  unlink,
  readdir: (dir) => readdir(dir),
  mkdir: async (dir) => {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  },
  rmdir: (dir) => rmdir(dir),
  chmod,
  access: (file) => access(file),
  readFile: (file) => readFile(file),
  modifiedAt: async (file) => (await stat(file)).mtimeMs,
  touch: (file, at) => utimes(file, at, at),
  syncDirectory,
  createReadStream: (file, range) => createReadStream(file, range),
};

/** Unlinks a file that may already be gone (another process, or an earlier attempt, removed it first). */
export function removeIfPresent(fs: SpoolFs, file: string): Promise<void> {
  return removeFileIfPresent(file, (target) => fs.unlink(target));
}
