import { decidedByName, matchesFilter, type QueueFilter } from './queue-filter.js';
import { queueIdTime } from './queue-id.js';
import { READS_IN_FLIGHT, type QueueIndex } from './queue-index.js';
import type { NamedEntry, SpoolItem } from './queue-listing.js';

/**
 * One page of the queue, in id order (ids sort by arrival time), for the web UI and its API. The names are listed
 * and sorted first, which is cheap even at 100,000 messages; envelopes are read only from the cursor on, and only
 * until the page is full. A filter that needs envelopes (domain, sender, reply, search words) reads at most
 * `scanLimit` of them per page and then hands back a cursor, so a rare match in a huge queue costs pages, not one
 * unbounded request.
 */

export interface QueuePageRequest {
  filter: QueueFilter;
  /** `next` of the previous page; absent for the first. */
  cursor?: string;
  limit: number;
  /** Envelopes read at most for one page when the filter needs them. */
  scanLimit: number;
}

export interface QueuePage {
  items: SpoolItem[];
  /** Where the next page starts, or null when this one reached the end. */
  next: string | null;
  /** Queue entries (files) in the states the filter allows; a batch file counts once. */
  entries: number;
  /** Envelopes read to fill this page. */
  examined: number;
}

export const CURSOR_PATTERN = /^[0-9a-z]{20}\/[a-z]+\/[0-9A-Za-z.-]{1,200}$/;

export async function readQueuePage(queue: QueueIndex, request: QueuePageRequest, now: number): Promise<QueuePage> {
  const { filter, limit, scanLimit } = request;
  const listed = await queue.entries(filter.state);
  const entries = hasTimeBounds(filter) ? listed.filter((entry) => byName(entry, filter, now)) : listed;
  let index = request.cursor === undefined ? 0 : firstAfter(entries, request.cursor);
  const items: SpoolItem[] = [];
  let examined = 0;
  const needsEnvelopes = !decidedByName(filter);
  while (index < entries.length && items.length < limit && (!needsEnvelopes || examined < scanLimit)) {
    // Read a chunk at a time: in parallel for the disk (as many as the census), and not far past a full page (an
    // entry may be a batch of many messages).
    const want = Math.min(READS_IN_FLIGHT, needsEnvelopes ? scanLimit - examined : limit - items.length);
    const chunk = entries.slice(index, index + want);
    const read = await Promise.all(chunk.map((entry) => queue.read(entry)));
    for (let i = 0; i < chunk.length && items.length < limit; i++) {
      index++;
      examined++;
      // A batch brings all its messages; one that moved or finished since the listing brings none.
      items.push(...read[i]!.filter((item) => matchesFilter(item, filter, now)));
    }
  }
  return { items, next: index < entries.length ? entries[index - 1]?.key ?? null : null, entries: entries.length, examined };
}

function hasTimeBounds(filter: QueueFilter): boolean {
  return filter.olderThan !== undefined || filter.arrivedAfter !== undefined || filter.arrivedBefore !== undefined;
}

/** The arrival-time criteria, from the id in the name; the rest needs the envelope. */
function byName(entry: NamedEntry, filter: QueueFilter, now: number): boolean {
  const arrivedAt = queueIdTime(entry.id);
  if (filter.olderThan !== undefined && !(now - arrivedAt >= filter.olderThan)) return false;
  if (filter.arrivedAfter !== undefined && !(arrivedAt >= filter.arrivedAfter)) return false;
  return !(filter.arrivedBefore !== undefined && !(arrivedAt < filter.arrivedBefore));
}

function firstAfter(entries: readonly NamedEntry[], cursor: string): number {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (entries[middle]!.key <= cursor) low = middle + 1;
    else high = middle;
  }
  return low;
}
