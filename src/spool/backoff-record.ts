import { RelayError } from '../shared/errors.js';

/**
 * One back-off in force (docs/spool.md, "Back-offs"): what `state/backoffs.json` holds per (site, source), and how
 * its fields are checked. A site name comes from DNS and a reply from a remote server, so every field is bounded
 * here, where the file is both written and read.
 */
export interface BackoffRecord {
  /** The site as `policy show` names it: the sorted MX host names joined by ',' (or `relay:HOST:PORT`). */
  site: string;
  /** A pool address, or 'default' for mail outside every pool. */
  source: string;
  /** The rule's name (BackoffRule.name, e.g. 'built-in rule 1'), or 'connection-failures' for the consecutive-failure delay. */
  rule: string;
  action: 'suspend' | 'throttle';
  /** Epoch ms. */
  since: number;
  /** Epoch ms. */
  until: number;
  /** The reply that triggered it, as formatReply prints it, cut to 300 chars. */
  reply: string;
  /** For a throttle: the settings in force meanwhile, in policy-file form, e.g. { max_message_rate: '1/min', connection_limit: 1 }. */
  shaping: Record<string, string | number>;
}

export const BACKOFF_FILE_VERSION = 1;
/** Replies are cut to this many characters: the reason is in the first line, and a hostile MX sends megabytes. */
export const BACKOFF_REPLY_CHARS = 300;

// A site is every MX name of a domain (253 characters each): 16 of the longest, far more than any provider has.
const LIMITS = { site: 4096, source: 64, rule: 256, shapingKeys: 16, shapingKey: 64, shapingValue: 64 } as const;
/** One record as JSON (escapes included) at most: what bounds the whole file. */
export const BACKOFF_RECORD_BYTES = 8 * 1024;

/** A record put() was given that breaks the file's bounds (docs/spool.md): not written. */
export class BackoffRecordError extends RelayError {
  readonly code = 'EBACKOFFRECORD';
}

const isBoundedText = (value: unknown, max: number): value is string => typeof value === 'string' && value.length > 0 && value.length <= max;
const isTime = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function shapingProblem(shaping: unknown): string | null {
  if (typeof shaping !== 'object' || shaping === null || Array.isArray(shaping)) return 'shaping is not an object';
  const entries = Object.entries(shaping);
  if (entries.length > LIMITS.shapingKeys) return `shaping has over ${LIMITS.shapingKeys} settings`;
  for (const [key, value] of entries) {
    if (!isBoundedText(key, LIMITS.shapingKey)) return 'a shaping setting has no name or a name too long';
    const fits = (typeof value === 'number' && Number.isFinite(value)) || (typeof value === 'string' && value.length <= LIMITS.shapingValue);
    if (!fits) return `shaping ${key} is not a number or a short string`;
  }
  return null;
}

/** What is wrong with `value` as a record, or null when it is one. */
export function backoffRecordProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const record = value as Record<string, unknown>;
  if (!isBoundedText(record.site, LIMITS.site)) return `site is not a string of 1 to ${LIMITS.site} characters`;
  if (!isBoundedText(record.source, LIMITS.source)) return `source is not a string of 1 to ${LIMITS.source} characters`;
  if (!isBoundedText(record.rule, LIMITS.rule)) return `rule is not a string of 1 to ${LIMITS.rule} characters`;
  if (record.action !== 'suspend' && record.action !== 'throttle') return 'action is not "suspend" or "throttle"';
  if (!isTime(record.since) || !isTime(record.until)) return 'since and until are not epoch milliseconds';
  if (typeof record.reply !== 'string' || record.reply.length > BACKOFF_REPLY_CHARS) return `reply is not a string of at most ${BACKOFF_REPLY_CHARS} characters`;
  return shapingProblem(record.shaping);
}

/** The record as the file keeps it: known fields only, the reply cut. Throws BackoffRecordError when out of bounds. */
export function normalizeBackoffRecord(record: BackoffRecord): BackoffRecord {
  const { site, source, rule, action, since, until, reply, shaping } = record;
  const kept = { site, source, rule, action, since, until, reply: String(reply).slice(0, BACKOFF_REPLY_CHARS), shaping: { ...shaping } };
  const size = Buffer.byteLength(JSON.stringify(kept));
  const problem = backoffRecordProblem(kept) ?? (size > BACKOFF_RECORD_BYTES ? `${size} bytes as JSON, over ${BACKOFF_RECORD_BYTES}` : null);
  if (problem) throw new BackoffRecordError(`back-off for ${JSON.stringify(site).slice(0, 200)}: ${problem}`);
  return kept;
}

/** The records of a file's text, or the reason it is not a back-off file. */
export function parseBackoffFile(text: string): { records: BackoffRecord[] } | { problem: string } {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    return { problem: `not JSON (${(error as Error).message})` };
  }
  const { version, backoffs } = (document ?? {}) as { version?: unknown; backoffs?: unknown };
  if (version !== BACKOFF_FILE_VERSION) return { problem: `version is not ${BACKOFF_FILE_VERSION}` };
  if (!Array.isArray(backoffs)) return { problem: 'backoffs is not an array' };
  for (const [index, record] of backoffs.entries()) {
    const problem = backoffRecordProblem(record);
    if (problem) return { problem: `backoffs[${index}]: ${problem}` };
  }
  return { records: (backoffs as BackoffRecord[]).map(normalizeBackoffRecord) };
}

export function serializeBackoffFile(records: readonly BackoffRecord[]): string {
  return JSON.stringify({ version: BACKOFF_FILE_VERSION, backoffs: records }) + '\n';
}
