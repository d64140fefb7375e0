import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import { newRecipient, type Envelope, type RecipientRecord } from '../spool/envelope.js';
import type { MessageSource } from '../spool/message-source.js';
import type { MessageWriter } from '../spool/message-writer.js';
import { newQueueId } from '../spool/queue-id.js';
import { buildDsn, readHeaderBlock, wantsDsn } from './dsn.js';

export interface BounceContext {
  writer: MessageWriter;
  hostname: string;
  clock: Clock;
  logger: Logger;
}

/** What one attempt has to report: final failures, and deliveries to an MX that will not report them itself. */
export interface DsnReport {
  /** Recipients bounced or expired. */
  failed: RecipientRecord[];
  /** Recipients delivered to an MX that does not offer DSN (the transport's `remoteDsn` false). */
  relayed?: RecipientRecord[];
}

/**
 * Queues one DSN (RFC 3464) to the original sender naming every recipient of `report` whose NOTIFY asks for it
 * (RFC 3461 §4.1: NEVER, or a list without FAILURE or SUCCESS, leaves that recipient out), as an ordinary spool
 * message from `<>`; it is durable before the original leaves the spool, so a crash can duplicate a DSN but never
 * lose one. Mail from `<>` (bounces themselves) never gets a DSN: no loops.
 */
export async function queueBounce(envelope: Envelope, original: MessageSource, report: DsnReport, context: BounceContext): Promise<void> {
  const { failed: allFailed, relayed: allRelayed = [] } = report;
  const failed = allFailed.filter((r) => wantsDsn(r, 'FAILURE'));
  const relayed = allRelayed.filter((r) => wantsDsn(r, 'SUCCESS'));
  if (allFailed.length > failed.length) {
    context.logger.info({ event: 'bounce-not-requested', queueId: envelope.id, recipients: allFailed.filter((r) => !failed.includes(r)).map((r) => r.address) }, 'NOTIFY asked for no failure DSN');
  }
  if (failed.length === 0 && relayed.length === 0) return;
  if (envelope.sender === '' || envelope.bounceOf !== null) {
    context.logger.info({ event: 'bounce-suppressed', queueId: envelope.id, failed: failed.length, relayed: relayed.length }, 'no DSN for a message from <>');
    return;
  }
  const now = context.clock.now();
  const dsnId = newQueueId(now);
  const originalHeaders = await readHeaderBlock(original);
  const dsn = await buildDsn({ reportingMta: context.hostname, envelope, failed, relayed, originalHeaders, now: new Date(now), dsnId });
  const draft = context.writer.create(dsnId);
  try {
    await draft.append([dsn]);
    await draft.commit({
      version: 1,
      sender: '',
      recipients: [newRecipient(envelope.sender)],
      user: null,
      client: { address: '127.0.0.1', hostname: context.hostname, helo: null, tls: null },
      arrivedAt: now,
      smtpUtf8: /[^\x00-\x7f]/.test(envelope.sender),
      bodyType: '7bit', // buildDsn keeps the report 7-bit, so any MX can take it
      nextAttemptAt: now,
      bounceOf: envelope.id,
    });
  } catch (error) {
    await draft.discard();
    throw error;
  }
  context.logger.info({ event: 'bounce-queued', queueId: dsnId, bounceOf: envelope.id, to: envelope.sender, failed: failed.map((r) => r.address), relayed: relayed.map((r) => r.address) }, 'DSN queued');
}
