import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { DirectorySync, replaceFileDurably } from './durable.js';
import type { SpoolLayout } from './layout.js';

/**
 * One small JSON state file under `state/` (back-offs, warm-up counters), shared by every mta-queue process on the
 * spool and the admin commands. Writes replace it atomically (tmp, fdatasync, rename, fsync); the work given to
 * `exclusive` runs one at a time per instance, so a read-merge-write is not interleaved within a process. The file's
 * inode, mtime and size tell a poll whether another process changed it.
 */
export class StateFile {
  readonly file: string;
  private readonly directory: DirectorySync;
  /** What the file was (inode, mtime, size) when this instance last read or wrote it; undefined before. */
  private seen: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /** `maxBytes`: a larger file is not one we wrote, and is not read into memory. */
  constructor(
    private readonly layout: SpoolLayout,
    readonly name: string,
    private readonly maxBytes: number,
  ) {
    this.file = path.join(layout.dir('state'), name);
    this.directory = new DirectorySync(layout.fs, layout.dir('state'));
  }

  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The file's text, null when there is none, or why it cannot be read. What is read and its signature come from one descriptor. */
  async read(): Promise<{ text: string } | { problem: string } | null> {
    const handle = await this.open();
    if (!handle) {
      this.seen = 'absent';
      return null;
    }
    try {
      const stats = await handle.stat();
      this.seen = signature(stats);
      if (stats.size > this.maxBytes) return { problem: `${stats.size} bytes, over ${this.maxBytes}` };
      return { text: (await handle.readFile()).toString('utf8') };
    } finally {
      await handle.close();
    }
  }

  /** Moves an unreadable file to `corrupt/` under a name of its own; returns where it went. */
  async setAside(now: number): Promise<string> {
    const { name, ext } = path.parse(this.name);
    const movedTo = path.join(this.layout.dir('corrupt'), `${name}-${now.toString(36)}-${randomBytes(3).toString('hex')}${ext}`);
    await this.layout.fs.rename(this.file, movedTo);
    this.seen = undefined;
    return movedTo;
  }

  async write(text: string): Promise<void> {
    const fs = this.layout.fs;
    // Spools made before state/ existed get it here; ensureSpool makes it for new ones.
    await fs.mkdir(this.layout.dir('state'));
    // A name of our own: two processes writing at once must not remove or rename each other's temp file.
    const { name, ext } = path.parse(this.name);
    const tmp = path.join(this.layout.dir('tmp'), `${name}-${randomBytes(8).toString('hex')}${ext}`);
    let written: string | undefined;
    await replaceFileDurably(fs, tmp, this.file, text, this.directory, async () => {
      const handle = await fs.open(tmp, 'r');
      try {
        written = signature(await handle.stat());
      } finally {
        await handle.close();
      }
    });
    this.seen = written;
  }

  /** Has the file changed since this instance last read or wrote it? One open, fstat and close: fit for every poll. */
  async changed(): Promise<boolean> {
    const handle = await this.open();
    if (!handle) return this.seen !== 'absent';
    try {
      return signature(await handle.stat()) !== this.seen;
    } finally {
      await handle.close();
    }
  }

  private async open() {
    try {
      return await this.layout.fs.open(this.file, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }
}

/** A rename makes a new inode appear under the name; mtime and size catch a file rewritten in place by hand. */
function signature(stats: { ino: number; mtimeMs: number; size: number }): string {
  return `${stats.ino}:${stats.mtimeMs}:${stats.size}`;
}
