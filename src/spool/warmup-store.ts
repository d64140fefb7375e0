import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { signature } from './backoff-store.js';
import { DirectorySync, replaceFileDurably } from './durable.js';
import type { SpoolLayout } from './layout.js';

/**
 * Warm-up counters (docs/spool.md, "Warm-up counters"): `state/warmup.json`, recipients granted today per
 * (source, provider), so a restart does not hand a new address a second day's worth. Only the current UTC day is
 * kept; a change adds this process's counts to what the file holds (another mta-queue on the spool) and replaces
 * it atomically (tmp, fdatasync, rename, fsync), one change at a time.
 */
export const WARMUP_FILE = 'warmup.json';
/** Counters kept at most (sources × providers): past it a new pair is not written down, only counted in memory. */
export const MAX_WARMUP_COUNTERS = 10_000;
const MAX_KEY_CHARS = 1_100;
const MAX_FILE_BYTES = MAX_WARMUP_COUNTERS * (MAX_KEY_CHARS + 32) + 1024;

export interface WarmupCounts {
  /** The UTC day, YYYY-MM-DD. */
  day: string;
  /** Recipients per `SOURCE PROVIDER` key. */
  counts: Map<string, number>;
}

export class WarmupStore {
  readonly file: string;
  private readonly directory: DirectorySync;
  private seen: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly layout: SpoolLayout) {
    this.file = path.join(layout.dir('state'), WARMUP_FILE);
    this.directory = new DirectorySync(layout.fs, layout.dir('state'));
  }

  /** The counters of `day`; none without a file, for another day, or for one that does not parse (it is replaced at the next add). */
  read(day: string): Promise<Map<string, number>> {
    return this.exclusive(() => this.load(day));
  }

  /** Adds `deltas` to the file's counters of `day` and returns the sum, what every process on the spool counted. */
  add(day: string, deltas: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    return this.exclusive(async () => {
      const counts = await this.load(day);
      for (const [key, delta] of deltas) {
        if (key.length > MAX_KEY_CHARS || (!counts.has(key) && counts.size >= MAX_WARMUP_COUNTERS)) continue;
        counts.set(key, (counts.get(key) ?? 0) + delta);
      }
      await this.layout.fs.mkdir(this.layout.dir('state'));
      const tmp = path.join(this.layout.dir('tmp'), `warmup-${randomBytes(8).toString('hex')}.json`);
      const text = `${JSON.stringify({ version: 1, day, counts: Object.fromEntries(counts) })}\n`;
      await replaceFileDurably(this.layout.fs, tmp, this.file, text, this.directory);
      this.seen = undefined;
      return counts;
    });
  }

  /** Has the file changed since this store last read it? */
  async changed(): Promise<boolean> {
    const handle = await this.open();
    if (!handle) return this.seen !== 'absent';
    try {
      return signature(await handle.stat()) !== this.seen;
    } finally {
      await handle.close();
    }
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async open() {
    try {
      return await this.layout.fs.open(this.file, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  private async load(day: string): Promise<Map<string, number>> {
    const handle = await this.open();
    if (!handle) {
      this.seen = 'absent';
      return new Map();
    }
    try {
      const stats = await handle.stat();
      this.seen = signature(stats);
      if (stats.size > MAX_FILE_BYTES) return new Map();
      return parseCounts((await handle.readFile()).toString('utf8'), day);
    } finally {
      await handle.close();
    }
  }
}

/** What a file we wrote holds for `day`; anything else (another day, not ours) counts as none. */
function parseCounts(text: string, day: string): Map<string, number> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return new Map();
  }
  const file = value as { version?: unknown; day?: unknown; counts?: unknown };
  if (file?.version !== 1 || file.day !== day || typeof file.counts !== 'object' || file.counts === null) return new Map();
  const counts = new Map<string, number>();
  for (const [key, count] of Object.entries(file.counts).slice(0, MAX_WARMUP_COUNTERS)) {
    if (key.length <= MAX_KEY_CHARS && Number.isSafeInteger(count) && (count as number) >= 0) counts.set(key, count as number);
  }
  return counts;
}
