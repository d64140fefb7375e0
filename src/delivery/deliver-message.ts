import type { Clock } from '../shared/clock.js';
import { groupBy } from '../shared/collections.js';
import type { Logger } from '../shared/logger.js';
import { domainOf } from '../shared/addresses.js';
import { FINAL_STATES, type Envelope, type RecipientRecord, type RecipientState } from '../spool/envelope.js';
import { readSource, streamSource, type MessageSource } from '../spool/message-source.js';
import type { Claim, QueueStore } from '../spool/queue-store.js';
import { queueBounce, type BounceContext } from './bounce.js';
import { outgoingDsn } from './dsn.js';
import type { DeliveryMetrics } from './delivery-metrics.js';
import { readMessageHead } from '../spool/header-block.js';
import { countReceivedHeaders, loopReply } from './hop-limit.js';
import type { DeliverySlots } from './limiter.js';
import type { DomainAttempt, OutgoingMessage, RecipientOutcome, Transport } from './transport.js';
import { nextAttemptAt } from './retry-policy.js';

export interface DeliveryContext extends BounceContext {
  store: QueueStore;
  transport: Transport;
  /** `--max-connections-per-destination`, then `--concurrency`. */
  slots: DeliverySlots;
  clock: Clock;
  logger: Logger;
  retrySchedule: number[];
  maxQueueTime: number;
  metrics?: DeliveryMetrics;
}

/** Messages up to this size are read once and shared by all domains' transactions; larger ones stream from disk. */
const BUFFERED_BODY_LIMIT = 1024 * 1024;
/** The header block is read this far to count Received: lines; a loop has far fewer bytes of them. */
const HEAD_READ_LIMIT = 64 * 1024;

/**
 * One delivery attempt for a claimed message: every recipient not yet final, one transaction per domain,
 * all domains at once. Each recipient ends the attempt delivered, bounced, expired or deferred, and the
 * message leaves the spool when none is left to try.
 */
export async function deliverClaimedMessage(claim: Claim, envelope: Envelope, context: DeliveryContext): Promise<'completed' | 'deferred'> {
  const started = context.clock.now();
  const due = envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state));
  const attempt = Math.max(0, ...due.map((recipient) => recipient.attempts)) + 1;
  // Read once, when the first destination has a slot: a message waiting for a slot holds no body in memory.
  let message: Promise<OutgoingMessage> | undefined;
  const looping = loopReply(countReceivedHeaders((await readMessageHead(claim.source, HEAD_READ_LIMIT)).bytes));
  const byDomain = groupBy(due, (recipient) => domainOf(recipient.address));
  const attempts = await Promise.all(
    [...byDomain].map(async ([domain, recipients]) => {
      if (looping) return { domain, recipients, result: everyRecipient(recipients, { verdict: 'permanent', reply: looping }) };
      const domainStarted = context.clock.now();
      const release = await context.slots.acquire(domain);
      try {
        message ??= outgoingMessage(envelope, claim.source);
        const result = await context.transport.deliver(domain, recipients.map((r) => r.address), await message);
        context.metrics?.domainAttempt((context.clock.now() - domainStarted) / 1000);
        return { domain, recipients, result };
      } finally {
        release();
      }
    }),
  );
  // Kept with the envelope, so a retry of this message signs without reading its body again.
  const bodyHash = message && (await message).bodyHash?.relaxedSha256;
  if (bodyHash) envelope.dkimBodyHash = bodyHash;
  const now = context.clock.now();
  const retryAt = nextAttemptAt({ schedule: context.retrySchedule, attempts: attempt, arrivedAt: envelope.arrivedAt, now, maxQueueTime: context.maxQueueTime });
  // Delivered to an MX without DSN: a NOTIFY=SUCCESS there is ours to answer (RFC 3461 §5.2.2).
  const relayed: RecipientRecord[] = [];
  for (const { domain, recipients, result } of attempts) {
    for (const recipient of recipients) {
      applyOutcome(recipient, result, retryAt, now, attempt);
      if (recipient.state === 'delivered' && result.remoteDsn !== true) relayed.push(recipient);
      context.metrics?.recipientDone(recipient.state, recipient.lastReply?.code ?? null);
    }
    logAttempt(context.logger, envelope.id, domain, recipients, result, attempt, now - started);
  }
  // Recorded only while the claim is still ours: given back at shutdown meanwhile, the outcome is dropped.
  return context.store.whileHeld(claim, async () => {
    if (envelope.recipients.every((recipient) => FINAL_STATES.has(recipient.state))) {
      const failed = envelope.recipients.filter((recipient) => recipient.state === 'bounced' || recipient.state === 'expired');
      if (failed.length > 0) {
        // Final states first: a crash before the unlink then repeats at most the DSN, never the deliveries.
        await context.store.save(claim, envelope);
      }
      await queueBounce(envelope, claim.source, { failed, relayed }, context);
      await context.store.complete(claim);
      context.logger.info({ event: 'completed', queueId: envelope.id, ...countStates(envelope.recipients) }, 'message completed');
      return 'completed';
    }
    await queueBounce(envelope, claim.source, { failed: [], relayed }, context);
    envelope.nextAttemptAt = retryAt ?? now;
    await context.store.defer(claim, envelope);
    return 'deferred';
  });
}

function everyRecipient(recipients: RecipientRecord[], outcome: RecipientOutcome): DomainAttempt {
  return { outcomes: new Map(recipients.map((recipient) => [recipient.address, outcome])), mx: null, ip: null, tls: null };
}

function applyOutcome(recipient: RecipientRecord, attempt: DomainAttempt, retryAt: number | null, now: number, attemptNumber: number): void {
  const outcome: RecipientOutcome = attempt.outcomes.get(recipient.address) ?? {
    verdict: 'transient',
    reply: { code: null, enhanced: '4.0.0', text: 'no reply recorded for this recipient' },
  };
  recipient.attempts = attemptNumber;
  recipient.lastAttemptAt = now;
  recipient.lastReply = outcome.reply;
  recipient.remoteMta = attempt.mx;
  recipient.state = stateFor(outcome, retryAt);
}

function stateFor(outcome: RecipientOutcome, retryAt: number | null): RecipientState {
  if (outcome.verdict === 'delivered') return 'delivered';
  if (outcome.verdict === 'permanent') return 'bounced';
  return retryAt === null ? 'expired' : 'deferred';
}

async function outgoingMessage(envelope: Envelope, source: MessageSource): Promise<OutgoingMessage> {
  const needsSmtpUtf8 = envelope.smtpUtf8 || /[^\x00-\x7f]/.test(envelope.sender + envelope.recipients.map((r) => r.address).join(''));
  const wire = { sender: envelope.sender, queueId: envelope.id, needsSmtpUtf8, eightBit: envelope.bodyType === '8bitmime', size: envelope.size, dsn: outgoingDsn(envelope), bodyHash: { relaxedSha256: envelope.dkimBodyHash } };
  if (source.bytes || envelope.size <= BUFFERED_BODY_LIMIT) {
    const buffer = await readSource(source);
    return { ...wire, body: () => buffer };
  }
  return { ...wire, body: () => streamSource(source) };
}

function logAttempt(logger: Logger, queueId: string, domain: string, recipients: RecipientRecord[], attempt: DomainAttempt, attemptNumber: number, ms: number): void {
  for (const [state, group] of groupBy(recipients, (recipient) => recipient.state)) {
    const reply = group[0]!.lastReply;
    const line = {
      event: state,
      queueId,
      domain,
      recipients: group.map((recipient) => recipient.address),
      mx: attempt.mx,
      ip: attempt.ip,
      tls: attempt.tls,
      code: reply?.code ?? null,
      enhanced: reply?.enhanced ?? null,
      reply: reply?.text ?? null,
      attempt: attemptNumber,
      ms,
    };
    if (state === 'delivered') logger.info(line, 'delivered');
    else logger.warn(line, state);
  }
}

function countStates(recipients: RecipientRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const recipient of recipients) counts[recipient.state] = (counts[recipient.state] ?? 0) + 1;
  return counts;
}
