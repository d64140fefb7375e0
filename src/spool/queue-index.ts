import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { countBatchRecords } from './batch-file.js';
import { isBatchName, RECOVERED_BATCH } from './entry-names.js';
import type { SpoolLayout } from './layout.js';
import { queueStats, type QueueStats } from './queue-inspect.js';
import { filterStateOf, namedEntries, readQueueEntry, type FilterState, type NamedEntry, type QueueState, type SpoolItem } from './queue-listing.js';

/**
 * What a long-lived reader of the queue (the web UI, refreshing every few seconds beside a busy delivery) keeps
 * between two looks, so that a page of a 100,000-message queue costs a few stat calls and the envelopes shown:
 *
 * - a directory's sorted listing, reused while the directory's mtime is unchanged (every entry added or removed
 *   changes it). File-system timestamps are coarse (a kernel tick), so a listing taken less than a second after
 *   that mtime is not trusted: a change in the same tick would leave the mtime as it was. A costly listing of a
 *   directory that keeps changing is reused for a moment anyway (see reusable);
 * - the messages of each deferred/ entry and incoming/ batch file, read once (see isImmutable); other entries are
 *   read every time;
 * - `queueStats` of it all, taken again only when a listing changed.
 */
export class QueueIndex {
  private readonly listings = new Map<string, { mtimeMs: number; trusted: boolean; entries: NamedEntry[]; takenAt: number; costMs: number }>();
  /** The messages of entries whose content never changes under their name (isImmutable), by file. */
  private readonly kept = new Map<string, SpoolItem[]>();
  /** How many messages each incoming/ batch file holds, by file (isImmutable). */
  private readonly batchSizes = new Map<string, number>();
  private merged: { parts: NamedEntry[][]; entries: NamedEntry[] } | null = null;
  private lastStats: { entries: NamedEntry[]; stats: QueueStats } | null = null;
  private lastCensus: { takenAt: number; costMs: number; top: number; stats: QueueStats } | null = null;
  /** The census being taken: callers meanwhile (several tabs refreshing) share it instead of reading twice. */
  private taking: Promise<QueueStats> | null = null;

  constructor(readonly layout: SpoolLayout) {}

  /** The entries of every state, or of `only`, sorted by key (ids sort by arrival). */
  async entries(only?: FilterState): Promise<NamedEntry[]> {
    const parts: NamedEntry[][] = [];
    for (const state of STATE_DIRECTORIES) {
      if (only !== undefined && only !== filterStateOf(state)) continue;
      if (state !== 'active') {
        parts.push(await this.listing(this.layout.dir(state), state));
        continue;
      }
      // A claim directory goes when its owner ends, between our two looks.
      for (const owner of (await this.listing(this.layout.dir('active'), null)).map((entry) => entry.file)) parts.push(await this.listing(owner, 'active'));
    }
    if (parts.length === 1) return parts[0]!;
    const previous = this.merged;
    if (previous && previous.parts.length === parts.length && previous.parts.every((part, index) => part === parts[index])) return previous.entries;
    // Already sorted runs: the merge sort in V8 takes them in linear time.
    const entries = parts.flat().sort(byKey);
    if (only === undefined) this.merged = { parts, entries };
    return entries;
  }

  /** The messages of an entry as they are now: none when it moved or finished since it was listed. */
  async read(entry: NamedEntry): Promise<SpoolItem[]> {
    if (!isImmutable(entry)) return readQueueEntry(this.layout.fs, entry.file, entry.state, entry.id);
    const known = this.kept.get(entry.file);
    if (known) return known;
    // Kept without their message bytes (a small batch is read whole): the envelopes are what pages and counts need.
    const items = (await readQueueEntry(this.layout.fs, entry.file, entry.state, entry.id)).map(({ source: _bytes, ...item }) => item);
    // Not yet there (listed, then claimed): nothing to keep.
    if (items.length > 0) this.kept.set(entry.file, items);
    return items;
  }

  /** A batch's messages, from its record headers; 0 when it moved on or does not parse (mta-queue sets it aside). */
  private async countBatch(entry: NamedEntry): Promise<number> {
    const known = this.batchSizes.get(entry.file);
    if (known !== undefined) return known;
    const count = await countBatchRecords(this.layout.fs, entry.file).catch(() => 0);
    if (count > 0 && isImmutable(entry)) this.batchSizes.set(entry.file, count);
    return count;
  }

  /**
   * `queueStats` without reading any envelope but deferred/ ones (for the destinations and their replies); a
   * batch file's messages are counted from its record headers.
   */
  census(now: number, top = 10): Promise<QueueStats> {
    const last = this.lastCensus;
    // Beside a busy delivery every listing changes between two refreshes: a costly census is answered again for a
    // while (see reusable), its ages brought up to date.
    if (last && last.top === top && reusable(last)) return Promise.resolve(withAges(last.stats, now));
    this.taking ??= this.timedCount(now, top).finally(() => (this.taking = null));
    return this.taking;
  }

  private async timedCount(now: number, top: number): Promise<QueueStats> {
    const started = performance.now();
    const stats = await this.count(now, top);
    this.lastCensus = { takenAt: performance.now(), costMs: performance.now() - started, top, stats };
    return stats;
  }

  private async count(now: number, top: number): Promise<QueueStats> {
    const entries = await this.entries();
    const last = this.lastStats;
    if (last && last.entries === entries && last.stats.deferredDomains.length <= top) return withAges(last.stats, now);
    const items: SpoolItem[] = [];
    let batches = false;
    for (let start = 0; start < entries.length; start += READS_IN_FLIGHT) {
      const chunk = entries.slice(start, start + READS_IN_FLIGHT);
      const read = await Promise.all(
        chunk.map(async (entry): Promise<SpoolItem[]> => {
          if (entry.state === 'deferred') return this.read(entry);
          const item = { id: entry.id, state: entry.state, file: entry.file, envelope: null };
          if (!isBatchName(entry.file)) return [item];
          if (!isImmutable(entry)) batches = true;
          // Its messages count, and arrived together: the batch's own id (its first message's) dates them all.
          return Array.from({ length: await this.countBatch(entry) }, () => item);
        }),
      );
      for (const entryItems of read) items.push(...entryItems);
    }
    const stats = queueStats(items, now, top);
    // A claimed batch's messages settle without its name changing: counted afresh each time.
    this.lastStats = batches ? null : { entries, stats };
    return stats;
  }

  /** `state` null: the claim directories of active/ themselves (their names are owners, not entries). */
  private async listing(dir: string, state: QueueState | null): Promise<NamedEntry[]> {
    // Compared with the file system's own timestamps: the real clock, not an injected one.
    const listedAt = Date.now();
    const mtimeMs = await this.layout.fs.modifiedAt(dir).catch(missing(null));
    const cached = this.listings.get(dir);
    if (cached && mtimeMs !== null && ((cached.trusted && cached.mtimeMs === mtimeMs) || reusable(cached))) return cached.entries;
    const started = performance.now();
    // held/ is missing from spools made before it; a claim directory goes when its owner ends.
    const names = await this.layout.fs.readdir(dir).catch(missing([] as string[]));
    const entries = state === null ? owners(dir, names) : namedEntries(dir, state, names);
    entries.sort(byKey);
    const takenAt = performance.now();
    if (mtimeMs === null) this.listings.delete(dir);
    else this.listings.set(dir, { mtimeMs, trusted: listedAt - mtimeMs > TIMESTAMP_TRUST_MS, entries, takenAt, costMs: takenAt - started });
    if (state === 'deferred' || state === 'incoming') this.forgetGone(state, entries);
    return entries;
  }

  private forgetGone(state: QueueState, entries: readonly NamedEntry[]): void {
    if (this.kept.size === 0 && this.batchSizes.size === 0) return;
    const present = new Set(entries.map((entry) => entry.file));
    const dir = this.layout.dir(state) + path.sep;
    for (const cache of [this.kept, this.batchSizes]) for (const file of cache.keys()) if (file.startsWith(dir) && !present.has(file)) cache.delete(file);
  }
}

/**
 * A deferral always writes a new name (the due time is part of it), and a group commit's batch file in incoming/
 * is written once: neither ever has two contents. A claimed batch settles in place, and a recovered one
 * (`<id>.recovered.batch`) can come back under the same name with more of it settled.
 */
function isImmutable(entry: NamedEntry): boolean {
  return entry.state === 'deferred' || (entry.state === 'incoming' && isBatchName(entry.file) && !entry.file.endsWith(RECOVERED_BATCH));
}

const STATE_DIRECTORIES: readonly QueueState[] = ['incoming', 'deferred', 'held', 'active', 'corrupt'];
/**
 * A listing or census that cost more than COSTLY_MS is reused, changed or not, for REUSE_FACTOR times its cost:
 * a page polling a large, busy queue then takes at most about a twentieth of the daemon's time, and shows it at
 * most that much late. Small ones (every test spool) are always taken afresh.
 */
const COSTLY_MS = 5;
const REUSE_FACTOR = 20;

function reusable(taken: { takenAt: number; costMs: number }): boolean {
  return taken.costMs > COSTLY_MS && performance.now() - taken.takenAt < REUSE_FACTOR * taken.costMs;
}

function withAges(stats: QueueStats, now: number): QueueStats {
  return { ...stats, oldest: stats.oldest && { ...stats.oldest, ageMs: now - stats.oldest.arrivedAt } };
}
/**
 * Reads the UI keeps in flight. They go through libuv's thread pool (4 threads), which delivery's own file calls
 * share: with 64 in flight a census of 100,000 envelopes was 10–25 % faster but made every other file call in the
 * process wait 3–4× longer (p50 0.4 ms instead of 0.1 ms).
 */
export const READS_IN_FLIGHT = 8;
/** A listing this long after its directory's mtime cannot have missed a change made in the same tick. */
const TIMESTAMP_TRUST_MS = 1000;

const byKey = (a: NamedEntry, b: NamedEntry) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

function missing<T>(value: T): (error: NodeJS.ErrnoException) => T {
  return (error) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return value;
    throw error;
  };
}

function owners(dir: string, names: readonly string[]): NamedEntry[] {
  return names.filter((name) => !name.startsWith('.')).map((name) => ({ key: name, id: '', state: 'active' as const, file: `${dir}${path.sep}${name}` }));
}
