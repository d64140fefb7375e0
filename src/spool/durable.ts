import { open, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Readable } from 'node:stream';
import { removeIfPresent } from '../shared/files.js';

export { removeIfPresent };

/**
 * Group commit for directory entries. A rename is durable only once its directory is fsynced; every writer
 * that renamed before a sync started is covered by that sync, so concurrent writers share one fsync instead
 * of paying one each (Postfix pays one per message, which is what bounds its intake).
 */
export class DirectorySync {
  private inFlight: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly dir: string) {}

  /** Resolves once a directory fsync that started after this call has completed. */
  sync(): Promise<void> {
    if (!this.inFlight) return this.start();
    // A sync already running may have read the directory before our rename: wait for the one after it.
    this.next ??= this.inFlight.then(
      () => this.start(),
      () => this.start(),
    );
    return this.next;
  }

  private start(): Promise<void> {
    this.next = undefined;
    const run = fsyncPath(this.dir);
    this.inFlight = run;
    const clear = () => {
      if (this.inFlight === run) this.inFlight = undefined;
    };
    run.then(clear, clear);
    return run;
  }
}

async function fsyncPath(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Opens a new file that only the service user can read; fails rather than reuse a name. */
export function createPrivateFile(filePath: string): Promise<FileHandle> {
  return open(filePath, 'wx', 0o600);
}

/**
 * Writes `data` to `finalPath` atomically (chasquid safeio, Postfix): temp file in the same filesystem,
 * fdatasync, rename over the target, fsync the directory. Readers see the old content or the new, never half.
 */
export async function replaceFileDurably(tmpPath: string, finalPath: string, data: string | Uint8Array | Readable, directory: DirectorySync): Promise<void> {
  // A temp file of the same name is a leftover of a crash (only the claim's owner writes under it): without
  // this, every later attempt would fail on EEXIST.
  await removeIfPresent(tmpPath);
  const handle = await createPrivateFile(tmpPath);
  try {
    try {
      await writeFile(handle, data);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(tmpPath, finalPath);
  } catch (error) {
    await removeIfPresent(tmpPath);
    throw error;
  }
  await directory.sync();
}
