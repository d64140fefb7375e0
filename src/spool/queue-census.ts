import type { SpoolLayout } from './layout.js';
import { queueStats, type QueueStats } from './queue-inspect.js';
import { isBatchName } from './entry-names.js';
import { listQueueEntries, readQueueEntry, type SpoolItem } from './queue-listing.js';

/**
 * `queueStats` for a page that refreshes itself every few seconds beside a busy delivery: the counts and the
 * oldest message come from the names, and only deferred/ envelopes are read (for the destinations and their
 * replies), each once, since a deferred entry's name is new at every deferral. Batch files, which hold several
 * messages under one name, are read each time; they stay in incoming/ only for the moment before their claim.
 */
export class QueueCensus {
  private deferred = new Map<string, SpoolItem[]>();
  /** The census being taken: callers meanwhile (several tabs refreshing) share it instead of reading twice. */
  private taking: Promise<QueueStats> | null = null;

  constructor(private readonly layout: SpoolLayout) {}

  take(now: number, top = 10): Promise<QueueStats> {
    this.taking ??= this.count(now, top).finally(() => (this.taking = null));
    return this.taking;
  }

  private async count(now: number, top: number): Promise<QueueStats> {
    const items: SpoolItem[] = [];
    const deferred = new Map<string, SpoolItem[]>();
    const unread: { file: string; id: string }[] = [];
    for (const entry of await listQueueEntries(this.layout)) {
      if (entry.state === 'deferred') {
        const known = this.deferred.get(entry.file);
        if (known) deferred.set(entry.file, known);
        else unread.push(entry);
      } else if (isBatchName(entry.file)) {
        items.push(...(await readQueueEntry(this.layout.fs, entry.file, entry.state, entry.id)));
      } else {
        items.push({ id: entry.id, state: entry.state, file: entry.file, envelope: null });
      }
    }
    for (let start = 0; start < unread.length; start += 64) {
      const chunk = unread.slice(start, start + 64);
      const read = await Promise.all(chunk.map(({ file, id }) => readQueueEntry(this.layout.fs, file, 'deferred', id)));
      chunk.forEach(({ file }, index) => deferred.set(file, read[index]!));
    }
    this.deferred = deferred;
    for (const entryItems of deferred.values()) items.push(...entryItems);
    return queueStats(items, now, top);
  }
}
