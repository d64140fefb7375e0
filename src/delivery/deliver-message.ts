import type { Clock } from '../shared/clock.js';
import { groupBy } from '../shared/collections.js';
import type { Logger } from '../shared/logger.js';
import { domainOf } from '../shared/addresses.js';
import type { Policy } from '../config/policy.js';
import { FINAL_STATES, formatReply, type Envelope, type RecipientRecord, type RecipientState, type RecordedReply } from '../spool/envelope.js';
import { readSource, streamSource, type MessageSource } from '../spool/message-source.js';
import type { Claim, QueueStore } from '../spool/queue-store.js';
import { queueBounce, type BounceContext } from './bounce.js';
import { outgoingDsn } from './dsn.js';
import type { DeliveryMetrics } from './delivery-metrics.js';
import { readMessageHead } from '../spool/header-block.js';
import { countReceivedHeaders, loopReply } from './hop-limit.js';
import type { Backoffs } from './backoffs.js';
import type { Router, Route } from './router.js';
import type { HoldCause, SiteQueues } from './site-queues.js';
import type { DomainAttempt, OutgoingMessage, RecipientOutcome, Transport } from './transport.js';
import { nextAttemptAt } from './retry-policy.js';

export interface DeliveryContext extends BounceContext {
  store: QueueStore;
  transport: Transport;
  /** Where each domain's mail goes, under which policy (route first). */
  router: Router;
  /** Per-site ready queues: the connection limits, `--concurrency` and rates a transaction waits for. */
  sites: SiteQueues;
  /** Back-offs in force, started by the policy's rules and the connection breaker. */
  backoffs: Backoffs;
  /** The policy in force now (reloaded on SIGHUP): its back-off rules are matched against every reply. */
  policy(): Policy;
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
 * What one transaction, or one decision not to make it, came to (shared/design/dispatch.md: one record, many
 * sinks). `held` is a throttled outcome: the recipients wait until then with no attempt counted.
 */
export interface AttemptRecord {
  domain: string;
  route: Route | null;
  recipients: RecipientRecord[];
  result: DomainAttempt | null;
  held?: { until: number; reason: string; site: string; source: string; cause: HoldCause };
  ms: number;
}

/**
 * One delivery attempt for a claimed message: every recipient not final yet, one
 * transaction per domain (or several, when a rate grants fewer recipients than the domain has), all domains at
 * once. Each recipient ends the attempt delivered, bounced, expired, deferred or held back, and the message
 * leaves the spool when none is left to try.
 */
export async function deliverClaimedMessage(claim: Claim, envelope: Envelope, context: DeliveryContext): Promise<'completed' | 'deferred'> {
  const started = context.clock.now();
  // Held-back recipients are asked for again whenever the message is looked at (a flush, another recipient's
  // retry): their site queue holds them again at no cost if it must, and no attempt is counted for it.
  const due = envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state));
  const attempt = Math.max(0, ...due.map((recipient) => recipient.attempts)) + 1;
  // Read once, when the first destination has a slot: a message waiting for a slot holds no body in memory.
  let message: Promise<OutgoingMessage> | undefined;
  const body = () => (message ??= outgoingMessage(envelope, claim.source));
  const looping = loopReply(countReceivedHeaders((await readMessageHead(claim.source, HEAD_READ_LIMIT)).bytes));
  const byDomain = groupBy(due, (recipient) => domainOf(recipient.address));
  const records: AttemptRecord[] = (
    await Promise.all<AttemptRecord[]>(
      [...byDomain].map(([domain, recipients]) =>
        looping ? [{ domain, route: null, recipients, result: everyRecipient(recipients, { verdict: 'permanent', reply: looping }), ms: 0 }] : attemptDomain(envelope, domain, recipients, body, context),
      ),
    )
  ).flat();
  // Kept with the envelope, so a retry of this message signs without reading its body again.
  const bodyHash = message && (await message).bodyHash?.relaxedSha256;
  if (bodyHash) envelope.dkimBodyHash = bodyHash;
  const now = context.clock.now();
  const retryAt = nextAttemptAt({ schedule: context.retrySchedule, attempts: attempt, arrivedAt: envelope.arrivedAt, now, maxQueueTime: context.maxQueueTime });
  const expiresAt = envelope.arrivedAt + context.maxQueueTime;
  // Delivered to an MX without DSN: a NOTIFY=SUCCESS there is ours to answer (RFC 3461 §5.2.2).
  const relayed: RecipientRecord[] = [];
  for (const record of records) {
    for (const recipient of record.recipients) {
      if (record.held) holdBack(recipient, record.held, expiresAt, now);
      else applyOutcome(recipient, record.result!, retryAt, now, attempt);
      if (recipient.state === 'delivered' && record.result?.remoteDsn !== true) relayed.push(recipient);
      if (record.held && recipient.state !== 'expired') context.metrics?.heldBack(record.route?.provider ?? null, record.held.cause);
      else context.metrics?.recipientDone(recipient.state, recipient.lastReply?.code ?? null, record.route?.provider ?? null);
    }
    logAttempt(context.logger, envelope.id, record, attempt, now - started);
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
    envelope.nextAttemptAt = nextLook(envelope, retryAt ?? now);
    await context.store.defer(claim, envelope);
    return 'deferred';
  });
}

/** One domain's recipients: routed, then admitted by its site's queue, as many transactions as its rate grants. */
async function attemptDomain(envelope: Envelope, domain: string, recipients: RecipientRecord[], body: () => Promise<OutgoingMessage>, context: DeliveryContext): Promise<AttemptRecord[]> {
  const started = context.clock.now();
  const queueId = envelope.id;
  const sender = { user: envelope.user, address: envelope.sender };
  const routed = await context.router.route(domain, sender);
  if ('failure' in routed) return [{ domain, route: null, recipients, result: { ...everyRecipient(recipients, routed.failure), mx: routed.mx }, ms: context.clock.now() - started }];
  let route = routed;
  const records: AttemptRecord[] = [];
  const triedSources = new Set<string>();
  for (let rest = recipients; rest.length > 0; ) {
    const current = route;
    const answer = context.sites.admit({ route: current, recipients: rest.length, hasIdleConnection: () => context.transport.hasIdleConnection?.(current, current.local) ?? false });
    const admission = answer instanceof Promise ? await answer : answer;
    if (admission.kind === 'held' && route.local !== null && (admission.cause === 'warm-up' || admission.cause === 'suspend')) {
      // Its source reached its cap or was suspended while the transaction waited: the next address of the pool,
      // if the router now picks another one (it skips those capped or backed off), before holding anything back.
      triedSources.add(route.source);
      const again = await context.router.route(domain, sender);
      if (!('failure' in again) && !triedSources.has(again.source)) {
        route = again;
        continue;
      }
    }
    if (admission.kind === 'held') {
      records.push({ domain, route, recipients: rest, result: null, held: { until: admission.until, reason: admission.reason, site: route.site, source: route.source, cause: admission.cause }, ms: context.clock.now() - started });
      break;
    }
    const batch = rest.slice(0, admission.recipients);
    rest = rest.slice(admission.recipients);
    const transactionStarted = context.clock.now();
    try {
      const result = await context.transport.deliver(domain, batch.map((r) => r.address), await body(), { maxDeliveriesPerConnection: route.shaping.max_deliveries_per_connection, source: route.local });
      context.metrics?.domainAttempt((context.clock.now() - transactionStarted) / 1000);
      const record = { domain, route, recipients: batch, result, ms: context.clock.now() - started };
      // Before the connection is given back: the next transaction to the site must already see a back-off this reply starts.
      if (!context.backoffs.quiet || result.unreachable === true || someNotDelivered(result)) await observeBackoffs(record, queueId, context);
      records.push(record);
    } finally {
      admission.release();
    }
  }
  return records;
}

function someNotDelivered(result: DomainAttempt): boolean {
  for (const outcome of result.outcomes.values()) if (outcome.verdict !== 'delivered') return true;
  return false;
}

/** The back-off sink: the policy's rules against every reply that was not a success, and the connection breaker. */
async function observeBackoffs(record: AttemptRecord, queueId: string, context: DeliveryContext): Promise<void> {
  const { route, result } = record;
  if (!route || !result) return;
  const now = context.clock.now();
  const rules = context.policy().rules;
  const replies = new Map<string, RecordedReply>();
  for (const outcome of result.outcomes.values()) if (outcome.verdict !== 'delivered') replies.set(formatReply(outcome.reply), outcome.reply);
  for (const reply of replies.values()) await context.backoffs.observeReply(route.site, route.source, reply, rules, now, queueId);
  const someReply = replies.values().next().value ?? null;
  await context.backoffs.observeConnection(route.site, route.source, result.unreachable !== true, route.shaping, someReply, now, queueId);
}

/** When delivery should look at the message next: the soonest of its retry and its held-back recipients' times. */
function nextLook(envelope: Envelope, retryAt: number): number {
  const pending = envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state));
  const held = pending.filter((recipient) => recipient.dueAt !== undefined).map((recipient) => recipient.dueAt!);
  return pending.some((recipient) => recipient.dueAt === undefined) ? Math.min(retryAt, ...held) : Math.min(...held);
}

/**
 * A throttled outcome: no attempt counted, the place in --retry-schedule kept, the remote's last reply kept, and
 * why it waits said beside it. Held back past the queue lifetime it expires now, naming the hold (4.4.7).
 */
function holdBack(recipient: RecipientRecord, held: NonNullable<AttemptRecord['held']>, expiresAt: number, now: number): void {
  if (held.until >= expiresAt) {
    recipient.state = 'expired';
    recipient.lastAttemptAt = now;
    recipient.lastReply = { code: null, enhanced: '4.4.7', text: `message expired while ${held.reason}` };
    delete recipient.dueAt;
    delete recipient.heldBack;
    return;
  }
  if (recipient.state === 'pending') recipient.state = 'deferred';
  recipient.dueAt = held.until;
  // The cause is for the metrics; the spool keeps what `show` says.
  const { until, reason, site, source } = held;
  recipient.heldBack = { until, reason, site, source };
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
  delete recipient.dueAt;
  delete recipient.heldBack;
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

function logAttempt(logger: Logger, queueId: string, record: AttemptRecord, attemptNumber: number, ms: number): void {
  const { domain, route, held, result } = record;
  for (const [state, group] of groupBy(record.recipients, (recipient) => recipient.state)) {
    if (held && state !== 'expired') {
      logger.info({ event: 'held-back', queueId, domain, site: route?.site, recipients: group.map((r) => r.address), until: new Date(held.until).toISOString(), reason: held.reason }, 'held back');
      continue;
    }
    const reply = group[0]!.lastReply;
    const line = {
      event: state,
      queueId,
      domain,
      recipients: group.map((recipient) => recipient.address),
      mx: result?.mx ?? null,
      ip: result?.ip ?? null,
      tls: result?.tls ?? null,
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
