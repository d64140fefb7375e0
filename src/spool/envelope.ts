import { CorruptSpoolEntryError } from '../shared/errors.js';
import { isQueueId } from './queue-id.js';

/**
 * The envelope file (`<id>.json`) next to a message: who sent it, to whom, and what delivery has done for each
 * recipient so far. Both daemons read and write it; docs/spool.md is its specification.
 */
export const ENVELOPE_VERSION = 1;

/** pending: not tried yet; deferred: will retry; the other three are final. */
export type RecipientState = 'pending' | 'deferred' | 'delivered' | 'bounced' | 'expired';
export const FINAL_STATES: ReadonlySet<RecipientState> = new Set(['delivered', 'bounced', 'expired']);
const STATES: ReadonlySet<string> = new Set(['pending', 'deferred', 'delivered', 'bounced', 'expired']);

/** The last thing a remote server (or our own resolver/connection) said about a recipient. */
export interface RecordedReply {
  code: number | null;
  enhanced: string | null;
  text: string;
}

export interface RecipientRecord {
  address: string;
  state: RecipientState;
  attempts: number;
  lastAttemptAt: number | null;
  lastReply: RecordedReply | null;
  /** The MX host that gave the last reply, for the operator and the DSN's Remote-MTA. */
  remoteMta: string | null;
  /** RFC 3461 NOTIFY as the client gave it on RCPT; absent: the default (a DSN on failure only). */
  notify?: ('SUCCESS' | 'FAILURE' | 'DELAY')[] | 'NEVER';
  /**
   * Held back (a back-off, a rate, a busy site) until this time, with no attempt counted: the message's
   * nextAttemptAt takes it into account. Optional, so a reader of an older version still reads the envelope.
   */
  dueAt?: number;
  /** Why it is held back, until when, and by which site and source's limits (`policy resume` releases those); cleared by its next attempt. */
  heldBack?: { until: number; reason: string; site: string; source: string };
  /** RFC 3461 ORCPT as the client gave it (`rfc822;addr`, xtext decoded), for the DSN's Original-Recipient. */
  orcpt?: string;
}

export interface ClientInfo {
  address: string;
  hostname: string | null;
  helo: string | null;
  /** TLS protocol and cipher of the submission, null for plain SMTP. */
  tls: { version: string; cipher: string } | null;
}

export interface Envelope {
  version: typeof ENVELOPE_VERSION;
  id: string;
  /** Envelope sender; '' is the null reverse-path `<>` (bounces), which never gets a bounce itself. */
  sender: string;
  recipients: RecipientRecord[];
  /** The AUTH user, or null for a trusted-network client. */
  user: string | null;
  client: ClientInfo;
  arrivedAt: number;
  /** Size of the spooled .eml in bytes. */
  size: number;
  /** The client asked for SMTPUTF8 (RFC 6531); the next hop must offer it too. */
  smtpUtf8: boolean;
  bodyType: '7bit' | '8bitmime';
  /** When delivery should next look at the message (epoch ms). */
  nextAttemptAt: number;
  /** For a DSN we generated: the id of the message it reports on. */
  bounceOf: string | null;
  /** RFC 3461 RET and ENVID from MAIL FROM, when the client gave them. */
  dsn?: { ret: 'FULL' | 'HDRS' | null; envid: string | null };
  /** The relaxed/sha256 DKIM body hash (base64) of the message, from its first signed attempt: retries hash only the header. */
  dkimBodyHash?: string;
  /** Set when the message left a batch file for an entry of its own: that batch's id (its name's id part). */
  detachedFrom?: string;
}

export function newRecipient(address: string): RecipientRecord {
  return { address, state: 'pending', attempts: 0, lastAttemptAt: null, lastReply: null, remoteMta: null };
}

export function serializeEnvelope(envelope: Envelope): string {
  return JSON.stringify(envelope);
}

export function parseEnvelope(text: string, source: string): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CorruptSpoolEntryError(`${source}: not JSON`, { cause: error });
  }
  const problem = envelopeProblem(value);
  if (problem) throw new CorruptSpoolEntryError(`${source}: ${problem}`);
  return value as Envelope;
}

function envelopeProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'not an object';
  if (value.version !== ENVELOPE_VERSION) return `unknown version ${String(value.version)}`;
  if (typeof value.id !== 'string' || !isQueueId(value.id)) return 'bad id';
  if (typeof value.sender !== 'string') return 'bad sender';
  if (!Array.isArray(value.recipients) || value.recipients.length === 0) return 'no recipients';
  for (const recipient of value.recipients) {
    if (!isObject(recipient) || typeof recipient.address !== 'string' || !STATES.has(String(recipient.state))) return 'bad recipient';
    if (typeof recipient.attempts !== 'number') return 'bad recipient attempts';
  }
  if (!isObject(value.client) || typeof value.client.address !== 'string') return 'bad client';
  for (const field of ['arrivedAt', 'size', 'nextAttemptAt'] as const) {
    if (typeof value[field] !== 'number' || !Number.isFinite(value[field])) return `bad ${field}`;
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A reply as `list`, `show`, filters and the web UI print it: `451 4.7.1 text`. */
export function formatReply(reply: RecordedReply): string {
  return [reply.code, reply.enhanced, reply.text].filter((part) => part !== null).join(' ');
}
