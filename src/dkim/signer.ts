import type { Readable } from 'node:stream';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import type { DkimMetrics } from './dkim-metrics.js';
import { parseHeaderFields, signatureFields, type SigningKey } from './dkim-signature.js';
import { chooseSigningKeys, singleFromDomain, type ChoosableKey } from './key-choice.js';

/**
 * mta-queue's MessageSigner (delivery/signing-transport.ts, matched by shape: dkim/ does not import delivery/):
 * reads the header block, picks the keys (key-choice.ts), hashes the body as it streams by (mailauth's relaxed
 * canonicalizer, never the whole message in memory) and returns the DKIM-Signature fields to prepend.
 */

/** What a message offers the signer (delivery's OutgoingMessage has it). */
export interface SignableMessage {
  queueId?: string;
  /** A fresh body each call; a Buffer, or a stream for a large message. */
  body(): Buffer | Readable;
  /** The body hash of an earlier attempt (used instead of reading the body), or where this one leaves it. */
  bodyHash?: { relaxedSha256?: string };
}

/** `converted`: the 7-bit form of a message already signed at this attempt, so not counted again. */
export type SignedForm = 'as-spooled' | 'converted';

/** Where the current active keys are (keyring.ts); read at each message, so a reload takes effect at once. */
export interface ActiveKeys<K extends ChoosableKey & SigningKey> {
  activeKeys(): ReadonlyMap<string, K[]>;
}

export interface DkimSignerOptions<K extends ChoosableKey & SigningKey> {
  keys: ActiveKeys<K>;
  /** `--dkim-default-domain`: signs what no From: domain or parent of it has a key for (DKIM passes, DMARC is not aligned). */
  defaultDomain: string | null;
  metrics: DkimMetrics;
  logger: Logger;
  clock: Clock;
}

/** A header block longer than this (far past any real one) is not signed: it would be held in memory whole. */
const MAX_HEADER_BYTES = 1024 * 1024;
const END_OF_HEADER = Buffer.from('\r\n\r\n');

export class DkimSigner<K extends ChoosableKey & SigningKey> {
  constructor(private readonly options: DkimSignerOptions<K>) {}

  async signatures(message: SignableMessage, form: SignedForm = 'as-spooled'): Promise<Buffer | null> {
    const { logger } = this.options;
    const metrics = form === 'converted' ? null : this.options.metrics;
    const body = message.body();
    const chunks = Buffer.isBuffer(body) ? [body][Symbol.iterator]() : (body[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
    try {
      const head = await readHead(chunks);
      const fromDomain = head ? singleFromDomain(head.fields.filter((field) => field.name === 'from').map((field) => field.raw.slice(field.raw.indexOf(':') + 1))) : null;
      const choice = head ? chooseSigningKeys(fromDomain, this.options.keys.activeKeys(), this.options.defaultDomain) : ({ signed: false, reason: 'header-too-large' } as const);
      if (!choice.signed) {
        metrics?.unsigned.inc();
        logger.debug({ event: 'dkim-unsigned', queueId: message.queueId, reason: choice.reason, fromDomain }, 'sent without a DKIM signature');
        return null;
      }
      const bodyHash = message.bodyHash?.relaxedSha256 ?? (await hashBody(head!.rest, chunks));
      if (message.bodyHash) message.bodyHash.relaxedSha256 = bodyHash;
      const signed = signatureFields(head!.fields, bodyHash, choice.keys, this.options.clock.now());
      metrics?.signed.inc();
      logger.debug({ event: 'dkim-signed', queueId: message.queueId, domain: choice.domain, alignment: choice.alignment, selectors: choice.keys.map((key) => `${key.selector}/${key.type}`) }, 'DKIM-signed');
      return signed;
    } finally {
      // Unsigned, or a read error: the stream is not read to its end, so it is closed here (a file descriptor).
      await chunks.return?.();
    }
  }
}

/** RFC 6376 §3.7 relaxed body hash of what follows the header, as it streams by. */
async function hashBody(first: Buffer, chunks: Iterator<Buffer> | AsyncIterator<Buffer>): Promise<string> {
  const hasher = dkimBody('relaxed', 'sha256', false);
  if (first.length) hasher.update(first);
  for (let next = await chunks.next(); !next.done; next = await chunks.next()) hasher.update(next.value);
  return hasher.digest('base64');
}

/**
 * The header fields and the body bytes read with them; null when no empty line comes within MAX_HEADER_BYTES.
 * A message without an empty line is all header, its body empty (RFC 5322 §3.5 makes the body optional).
 */
async function readHead(chunks: Iterator<Buffer> | AsyncIterator<Buffer>): Promise<{ fields: ReturnType<typeof parseHeaderFields>; rest: Buffer } | null> {
  let head: Buffer = Buffer.alloc(0);
  for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
    // Only the last 3 bytes of what came before can start the empty line.
    const from = Math.max(0, head.length - 3);
    head = head.length ? Buffer.concat([head, next.value]) : next.value;
    // No header at all (the message starts with its empty line): no From:, and no body line read as a field.
    if (head.length >= 2 && head[0] === 0x0d && head[1] === 0x0a) return { fields: [], rest: head.subarray(2) };
    const end = head.indexOf(END_OF_HEADER, from);
    if (end >= 0) return { fields: parseHeaderFields(head.subarray(0, end + 2)), rest: head.subarray(end + 4) };
    if (head.length > MAX_HEADER_BYTES) return null;
  }
  return { fields: parseHeaderFields(head), rest: Buffer.alloc(0) };
}
