import type { SpoolLayout } from './layout.js';
import { StateFile } from './state-file.js';

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
  private readonly state: StateFile;

  constructor(layout: SpoolLayout) {
    this.state = new StateFile(layout, WARMUP_FILE, MAX_FILE_BYTES);
  }

  get file(): string {
    return this.state.file;
  }

  /** The counters of `day`; none without a file, for another day, or for one that does not parse (it is replaced at the next add). */
  read(day: string): Promise<Map<string, number>> {
    return this.state.exclusive(() => this.load(day));
  }

  /** Adds `deltas` to the file's counters of `day` and returns the sum, what every process on the spool counted. */
  add(day: string, deltas: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    return this.state.exclusive(async () => {
      const counts = await this.load(day);
      for (const [key, delta] of deltas) {
        if (key.length > MAX_KEY_CHARS || (!counts.has(key) && counts.size >= MAX_WARMUP_COUNTERS)) continue;
        counts.set(key, (counts.get(key) ?? 0) + delta);
      }
      await this.state.write(`${JSON.stringify({ version: 1, day, counts: Object.fromEntries(counts) })}\n`);
      return counts;
    });
  }

  /** Has the file changed since this store last read or wrote it? */
  changed(): Promise<boolean> {
    return this.state.changed();
  }

  private async load(day: string): Promise<Map<string, number>> {
    const read = await this.state.read();
    return read !== null && 'text' in read ? parseCounts(read.text, day) : new Map();
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
