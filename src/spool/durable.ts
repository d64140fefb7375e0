import type { Readable } from 'node:stream';
import { removeIfPresent, type SpoolFs } from './spool-fs.js';

/**
 * Group commit for directory entries. A rename is durable only once its directory is fsynced; every writer
 * that renamed before a sync started is covered by that sync, so concurrent writers share one fsync instead
 * of paying one each (Postfix pays one per message, which is what bounds its intake).
 */
export class DirectorySync {
  private inFlight: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(
    private readonly fs: SpoolFs,
    private readonly dir: string,
  ) {}

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
    const run = this.fs.syncDirectory(this.dir);
    this.inFlight = run;
    const clear = () => {
      if (this.inFlight === run) this.inFlight = undefined;
    };
    run.then(clear, clear);
    return run;
  }
}

/**
 * Writes `data` to `finalPath` atomically (chasquid safeio, Postfix): temp file in the same filesystem,
 * fdatasync, rename over the target, fsync the directory. Readers see the old content or the new, never half.
 * `beforeRename` runs on the complete temp file (chasquid's hook): what it learns is about our file, whereas after
 * the rename another writer may already have replaced it.
 */
export async function replaceFileDurably(fs: SpoolFs, tmpPath: string, finalPath: string, data: string | Uint8Array | Readable, directory: DirectorySync, beforeRename?: () => Promise<void>): Promise<void> {
  await writeFileDurably(fs, tmpPath, data);
  try {
    await beforeRename?.();
    await fs.rename(tmpPath, finalPath);
  } catch (error) {
    await removeIfPresent(fs, tmpPath).catch(() => undefined);
    throw error;
  }
  await directory.sync();
}

/** The first half of replaceFileDurably: `tmpPath` written whole and fdatasynced, or removed. */
export async function writeFileDurably(fs: SpoolFs, tmpPath: string, data: string | Uint8Array | Readable): Promise<void> {
  // A temp file of the same name is a leftover of a crash (only the claim's owner writes under it): without
  // this, every later attempt would fail on EEXIST.
  await removeIfPresent(fs, tmpPath);
  const handle = await fs.open(tmpPath, 'wx');
  try {
    try {
      await handle.writeFile(data);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    await removeIfPresent(fs, tmpPath).catch(() => undefined);
    throw error;
  }
}
