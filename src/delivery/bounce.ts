import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import { newRecipient, type Envelope, type RecipientRecord } from '../spool/envelope.js';
import type { MessageSource } from '../spool/message-source.js';
import type { MessageWriter } from '../spool/message-writer.js';
import { newQueueId } from '../spool/queue-id.js';
import { buildDsn, readHeaderBlock } from './dsn.js';

export interface BounceContext {
  writer: MessageWriter;
  hostname: string;
  clock: Clock;
  logger: Logger;
}

/**
 * Queues one DSN (RFC 3464) to the original sender naming every failed recipient, as an ordinary spool
 * message from `<>`; it is durable before the original leaves the spool, so a crash can duplicate a bounce
 * but never lose one. Mail from `<>` (bounces themselves) never bounces: no loops.
 */
export async function queueBounce(envelope: Envelope, original: MessageSource, failed: RecipientRecord[], context: BounceContext): Promise<void> {
  if (envelope.sender === '' || envelope.bounceOf !== null) {
    context.logger.info({ event: 'bounce-suppressed', queueId: envelope.id, failed: failed.length }, 'no DSN for a message from <>');
    return;
  }
  const now = context.clock.now();
  const dsnId = newQueueId(now);
  const originalHeaders = await readHeaderBlock(original);
  const dsn = await buildDsn({ reportingMta: context.hostname, envelope, failed, originalHeaders, now: new Date(now), dsnId });
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
  context.logger.info({ event: 'bounce-queued', queueId: dsnId, bounceOf: envelope.id, to: envelope.sender, failed: failed.map((r) => r.address) }, 'DSN queued');
}
