import { parseDuration } from '../config/units.js';
import { domainOf } from '../shared/addresses.js';
import { ConfigError } from '../shared/errors.js';
import { FINAL_STATES, formatReply, type Envelope } from './envelope.js';
import { queueIdTime } from './queue-id.js';
import { FILTER_STATES, filterStateOf, type FilterState, type SpoolItem } from './queue-listing.js';

/**
 * Which messages an admin command, `list`, the web UI's queue page or a bulk action is about. One filter type and
 * one matcher serve all of them, so "the messages the page shows" and "the messages the bulk action touches" are
 * the same set by construction.
 */

/** Every criterion given must hold (AND); an empty filter matches everything. */
export interface QueueFilter {
  state?: FilterState;
  /** A pending recipient is at this domain (exact, case-insensitive). */
  domain?: string;
  /** The envelope sender (case-insensitive); '' or '<>' is the null sender. */
  sender?: string;
  /** Arrived at least this many milliseconds ago. */
  olderThan?: number;
  /** A substring (case-insensitive) of a pending recipient's last reply, as `list` prints it: `451 4.3.0 text`. */
  reply?: string;
  /** Search `from:`: a substring (case-insensitive) of the envelope sender. */
  senderIncludes?: string;
  /** Search `to:`: a substring (case-insensitive) of any recipient, delivered or not. */
  recipientIncludes?: string;
  /** Search `after:` / `before:`: arrival time bounds, epoch ms (after inclusive, before exclusive). */
  arrivedAfter?: number;
  arrivedBefore?: number;
  /** Search words without a prefix: each a substring of the id, the sender or a recipient. */
  words?: string[];
}

export function hasCriteria(filter: QueueFilter): boolean {
  return Object.values(filter).some((value) => value !== undefined);
}

/**
 * Whether the filter can be decided from the entry's name alone (its directory and the arrival time in its id),
 * so a page of the queue needs only the envelopes it shows.
 */
export function decidedByName(filter: QueueFilter): boolean {
  const byName: readonly (keyof QueueFilter)[] = ['state', 'olderThan', 'arrivedAfter', 'arrivedBefore'];
  return (Object.keys(filter) as (keyof QueueFilter)[]).every((key) => filter[key] === undefined || byName.includes(key));
}

function normalSender(sender: string): string {
  return sender.trim().replace(/^<(.*)>$/, '$1').toLowerCase();
}

/** Whether an entry matches; pure, so the table in test/spool/queue-admin.test.ts pins every criterion. */
export function matchesFilter(item: Pick<SpoolItem, 'id' | 'state' | 'envelope'>, filter: QueueFilter, now: number): boolean {
  if (filter.state !== undefined && filterStateOf(item.state) !== filter.state) return false;
  // An unreadable corrupt/ entry still has its arrival time in its id.
  const arrivedAt = item.envelope?.arrivedAt ?? queueIdTime(item.id);
  if (filter.olderThan !== undefined && !(now - arrivedAt >= filter.olderThan)) return false;
  if (filter.arrivedAfter !== undefined && !(arrivedAt >= filter.arrivedAfter)) return false;
  if (filter.arrivedBefore !== undefined && !(arrivedAt < filter.arrivedBefore)) return false;
  if (decidedByName(filter)) return true;
  return matchesEnvelope(item.id, item.envelope, filter);
}

function matchesEnvelope(id: string, envelope: Envelope | null, filter: QueueFilter): boolean {
  if (!envelope) return false;
  const pending = envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state));
  if (filter.domain !== undefined) {
    const domain = filter.domain.replace(/^@/, '').toLowerCase();
    if (!pending.some((recipient) => domainOf(recipient.address) === domain)) return false;
  }
  if (filter.sender !== undefined && normalSender(envelope.sender) !== normalSender(filter.sender)) return false;
  if (filter.reply !== undefined) {
    const needle = filter.reply.toLowerCase();
    if (!pending.some((recipient) => recipient.lastReply !== null && formatReply(recipient.lastReply).toLowerCase().includes(needle))) return false;
  }
  const sender = envelope.sender.toLowerCase();
  const recipients = envelope.recipients.map((recipient) => recipient.address.toLowerCase());
  if (filter.senderIncludes !== undefined && !sender.includes(filter.senderIncludes.toLowerCase())) return false;
  if (filter.recipientIncludes !== undefined) {
    const needle = filter.recipientIncludes.toLowerCase();
    if (!recipients.some((address) => address.includes(needle))) return false;
  }
  for (const word of filter.words ?? []) {
    const needle = word.toLowerCase();
    if (!id.includes(needle) && !sender.includes(needle) && !recipients.some((address) => address.includes(needle))) return false;
  }
  return true;
}

/** The filter criteria as text, the way flags, query strings and JSON bodies carry them. */
export interface FilterFields {
  state?: string;
  domain?: string;
  sender?: string;
  olderThan?: string;
  reply?: string;
  /** The web UI's search box (parseSearch); no flag carries it. */
  q?: string;
}

/**
 * Parses the criteria; `label` names a field in refusals the way its caller's user wrote it (`--older-than` for
 * the CLI, `older_than` for the API); `now` is what search ages (`before:2h`) count back from. Throws ConfigError
 * on the first bad one.
 */
export function parseQueueFilter(fields: FilterFields, label: (field: keyof FilterFields) => string, now = Date.now()): QueueFilter {
  const filter: QueueFilter = {};
  if (fields.state !== undefined) filter.state = parseFilterState(fields.state, label('state'));
  if (fields.domain !== undefined) filter.domain = parseDomain(fields.domain, label('domain'));
  if (fields.sender !== undefined) filter.sender = fields.sender;
  if (fields.olderThan !== undefined) filter.olderThan = parseDuration(fields.olderThan, label('olderThan'));
  if (fields.reply !== undefined) {
    if (fields.reply.trim() === '') throw new ConfigError(`${label('reply')} must not be empty`);
    filter.reply = fields.reply;
  }
  if (fields.q !== undefined) Object.assign(filter, parseSearch(fields.q, label('q'), now));
  return filter;
}

function parseFilterState(text: string, what: string): FilterState {
  const state = text === 'corrupt' ? 'failed' : text;
  if (!(FILTER_STATES as readonly string[]).includes(state)) throw new ConfigError(`${what}: "${text}" is not one of ${FILTER_STATES.join(', ')}`);
  return state as FilterState;
}

function parseDomain(text: string, what: string): string {
  const domain = text.trim().replace(/^@/, '');
  if (domain === '' || domain.includes('@') || /\s/.test(domain)) throw new ConfigError(`${what}: "${text}" is not a domain`);
  return domain;
}

const SEARCH_TERMS = ['to', 'from', 'status', 'domain', 'before', 'after'] as const;

/**
 * The search box: `to:bob@ from:news status:deferred domain:example.com before:2h after:2026-11-30 words`.
 * `before:`/`after:` take a date (2026-11-30, UTC midnight), a date-time (2026-11-30T12:00Z) or an age (2h: two
 * hours ago). A term given twice is refused rather than silently narrowed to the last one.
 */
export function parseSearch(q: string, what = 'q', now = Date.now()): QueueFilter {
  const filter: QueueFilter = {};
  const seen = new Set<string>();
  for (const token of q.trim().split(/\s+/).filter(Boolean)) {
    const match = /^([a-z]+):(.*)$/i.exec(token);
    const term = match?.[1]!.toLowerCase();
    if (!match || !(SEARCH_TERMS as readonly string[]).includes(term!)) {
      (filter.words ??= []).push(token);
      continue;
    }
    const value = match[2]!;
    if (value === '') throw new ConfigError(`${what}: "${token}" needs a value after the colon`);
    if (seen.has(term!)) throw new ConfigError(`${what}: ${term}: is given twice`);
    seen.add(term!);
    switch (term as (typeof SEARCH_TERMS)[number]) {
      case 'to':
        filter.recipientIncludes = value;
        break;
      case 'from':
        filter.senderIncludes = value;
        break;
      case 'status':
        filter.state = parseFilterState(value, `${what}: status:`);
        break;
      case 'domain':
        filter.domain = parseDomain(value, `${what}: domain:`);
        break;
      case 'before':
        filter.arrivedBefore = parseSearchTime(value, `${what}: before:`, now);
        break;
      case 'after':
        filter.arrivedAfter = parseSearchTime(value, `${what}: after:`, now);
        break;
    }
  }
  return filter;
}

function parseSearchTime(text: string, what: string, now: number): number {
  if (/^\d+(ms|s|m|h|d)$/.test(text)) return now - parseDuration(text, what);
  const time = /^\d{4}-\d{2}-\d{2}$/.test(text) ? Date.parse(`${text}T00:00:00Z`) : /^\d{4}-\d{2}-\d{2}T/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(time)) throw new ConfigError(`${what} "${text}" is not a date (2026-11-30), a date-time (2026-11-30T12:00Z) or an age (2h)`);
  return time;
}
