import { readMessageHead } from './header-block.js';
import path from 'node:path';
import type { SpoolLayout } from './layout.js';
import { wholeFileSource, type MessageSource } from './message-source.js';
import { domainOf } from '../shared/addresses.js';
import { describeItem, filterStateOf, findQueueItem, type FilterState } from './queue-listing.js';
import { formatReply } from './envelope.js';
import { queueIdTime } from './queue-id.js';
import type { SpoolItem } from './queue-listing.js';

/** `mta-queue show` reads at most this much of a message: its header block, never the body. */
export const HEADER_READ_LIMIT = 64 * 1024;

export interface HeaderBlock {
  /** The header lines, CRLF-separated, without the blank line that ends them. */
  text: string;
  /** The block was longer than the read limit: `text` is its beginning only. */
  truncated: boolean;
}

/** The header block as `show` prints it; null when the file is missing. */
export async function readHeaderBlock(message: MessageSource, limit = HEADER_READ_LIMIT): Promise<HeaderBlock | null> {
  try {
    const head = await readMessageHead(message, limit);
    return { text: head.bytes.toString('utf8').replace(/\r\n$/, ''), truncated: !head.complete };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Where a message's bytes are: inside its batch, data/<id>.eml, or next to its envelope in corrupt/ once set aside. */
export function messageFiles(layout: SpoolLayout, item: Pick<SpoolItem, 'id' | 'state' | 'source'>): MessageSource[] {
  if (item.source) return [item.source];
  const data = layout.messagePath(item.id);
  const files = item.state === 'corrupt' ? [path.join(layout.dir('corrupt'), `${item.id}.eml`), data] : [data];
  return files.map((file) => wholeFileSource(layout.fs, file));
}

/** What `show` shows of one message; `--json` and the API's GET /api/messages/ID give `detailsJson` of it. */
export interface MessageDetails {
  item: SpoolItem;
  /** The entry's file, relative to the spool root. */
  file: string;
  headers: HeaderBlock | null;
}

export async function inspectMessage(layout: SpoolLayout, id: string): Promise<MessageDetails | undefined> {
  const item = await findQueueItem(layout, id);
  if (!item) return undefined;
  let headers: HeaderBlock | null = null;
  for (const file of messageFiles(layout, item)) if ((headers = await readHeaderBlock(file))) break;
  return { item, file: path.relative(layout.root, item.file), headers };
}

export function detailsJson({ item, file, headers }: MessageDetails) {
  return { id: item.id, state: describeItem(item).state, file, envelope: item.envelope, headers: headers?.text ?? null, headersTruncated: headers?.truncated ?? false };
}

export interface QueueStats {
  counts: Record<FilterState, number>;
  total: number;
  /** The message waiting longest (incoming, deferred, held or active; corrupt/ is out of the queue). */
  oldest: { id: string; state: FilterState; arrivedAt: number; ageMs: number } | null;
  /** Recipients in state `deferred` of messages in deferred/, by domain, most first, with the latest reply one of them got. */
  deferredDomains: { domain: string; recipients: number; messages: number; lastReply: string | null }[];
}

/**
 * `items` may lack envelopes outside deferred/ (the web UI's census reads only those): such a message still counts,
 * with the arrival time its id carries.
 */
export function queueStats(items: readonly SpoolItem[], now: number, top = 10): QueueStats {
  const counts: Record<FilterState, number> = { incoming: 0, deferred: 0, held: 0, active: 0, failed: 0 };
  let oldest: QueueStats['oldest'] = null;
  const domains = new Map<string, { recipients: number; messages: Set<string>; lastReply: { at: number; text: string } | null }>();
  for (const item of items) {
    const state = filterStateOf(item.state);
    counts[state]++;
    if (state === 'failed') continue;
    const arrivedAt = item.envelope?.arrivedAt ?? queueIdTime(item.id);
    if (!oldest || arrivedAt < oldest.arrivedAt) oldest = { id: item.id, state, arrivedAt, ageMs: now - arrivedAt };
    // Destinations with mail waiting for a retry: a held message's recipients wait for the operator instead.
    if (state !== 'deferred') continue;
    for (const recipient of item.envelope?.recipients ?? []) {
      if (recipient.state !== 'deferred') continue;
      const domain = domainOf(recipient.address);
      const entry = domains.get(domain) ?? { recipients: 0, messages: new Set<string>(), lastReply: null };
      entry.recipients++;
      entry.messages.add(item.id);
      const at = recipient.lastAttemptAt ?? 0;
      if (recipient.lastReply && (!entry.lastReply || at > entry.lastReply.at)) entry.lastReply = { at, text: formatReply(recipient.lastReply) };
      domains.set(domain, entry);
    }
  }
  const deferredDomains = [...domains]
    .map(([domain, entry]) => ({ domain, recipients: entry.recipients, messages: entry.messages.size, lastReply: entry.lastReply?.text ?? null }))
    .sort((a, b) => b.recipients - a.recipients || a.domain.localeCompare(b.domain))
    .slice(0, top);
  return { counts, total: items.length, oldest, deferredDomains };
}
