import { Gauge, Histogram, type Registry } from 'prom-client';
import { TallyCounter, type Tally } from '../shared/metrics.js';
import type { RecipientState } from '../spool/envelope.js';
import { ShapingMetrics, type ShapingState } from './shaping-metrics.js';
import type { HoldCause } from './site-queues.js';

/** What the runner knows without reading the spool: its own counts, the deferred index, the ids it holds. */
export interface QueueSnapshot {
  /** In incoming/, not yet claimed. */
  incoming: number;
  /** In deferred/, waiting for their next attempt or for a delivery slot. */
  deferred: number;
  /** Claimed by this process, being delivered. */
  active: number;
  /** First-seen time of the oldest message this process knows of (queue ids carry it), null when none. */
  oldestArrivedAt: number | null;
  /** Entries in this process's claim directory that none of its claims accounts for, at the last poll. */
  stranded: number;
}

type Outcome = 'delivered' | 'deferred' | 'bounced' | 'expired';
type ReplyClass = '2xx' | '4xx' | '5xx' | 'none';

const OUTCOMES: readonly Outcome[] = ['delivered', 'deferred', 'bounced', 'expired'];
const REPLY_CLASSES: readonly ReplyClass[] = ['2xx', '4xx', '5xx', 'none'];
const CLASS_OF_DIGIT: Readonly<Record<number, ReplyClass>> = { 2: '2xx', 4: '4xx', 5: '5xx' };

/**
 * mta-queue's metrics. Every label set is bound here once, so counting a recipient is a table look-up and an
 * addition; the queue gauges are computed from the snapshot only when scraped.
 */
export class DeliveryMetrics {
  private readonly outcomes = new Map<RecipientState, Record<ReplyClass, Tally>>();
  private readonly latency: Histogram;
  private readonly dns: Record<'transient' | 'permanent', Tally>;
  /** Per provider (bounded by the policy's provider table). */
  private readonly shaping: ShapingMetrics;

  constructor(registry: Registry, snapshot: () => QueueSnapshot, now: () => number, shaping: () => ShapingState) {
    const registers = [registry];
    const deliveries = new TallyCounter({
      name: 'mta_queue_deliveries_total',
      help: 'recipients at the end of a delivery attempt, by outcome and by the class of the reply that decided it (none: no SMTP reply, e.g. DNS or connection failure)',
      labelNames: ['outcome', 'reply_class'],
      registry,
    });
    for (const outcome of OUTCOMES) {
      const byClass = {} as Record<ReplyClass, Tally>;
      for (const replyClass of REPLY_CLASSES) byClass[replyClass] = deliveries.bind({ outcome, reply_class: replyClass });
      this.outcomes.set(outcome, byClass);
    }
    this.latency = new Histogram({
      name: 'mta_queue_delivery_duration_seconds',
      help: 'one attempt at one destination domain: waiting for a connection slot to it, DNS, connection (or reuse), TLS and the SMTP transaction',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    const dnsFailures = new TallyCounter({
      name: 'mta_queue_dns_failures_total',
      help: 'DNS look-ups that failed, by kind (transient: SERVFAIL, time-out; permanent: NXDOMAIN, null MX, no address)',
      labelNames: ['kind'],
      registry,
    });
    this.dns = { transient: dnsFailures.bind({ kind: 'transient' }), permanent: dnsFailures.bind({ kind: 'permanent' }) };
    this.shaping = new ShapingMetrics(registry, shaping);

    const size = new Gauge({
      name: 'mta_queue_messages',
      help: "messages in this process's view of the queue, by state",
      labelNames: ['state'],
      registers,
      collect() {
        const now = snapshot();
        incoming.set(now.incoming);
        deferred.set(now.deferred);
        active.set(now.active);
      },
    });
    const [incoming, deferred, active] = [size.labels('incoming'), size.labels('deferred'), size.labels('active')];
    new Gauge({
      name: 'mta_queue_stranded_claims',
      help: "entries in this process's active/ directory that no delivery accounts for (a failure on our side); given back to incoming/ at each poll",
      registers,
      collect() {
        this.set(snapshot().stranded);
      },
    });
    new Gauge({
      name: 'mta_queue_oldest_message_age_seconds',
      help: 'age of the oldest message still queued (from its queue id), 0 when the queue is empty',
      registers,
      collect() {
        const oldest = snapshot().oldestArrivedAt;
        this.set(oldest === null ? 0 : Math.max(0, (now() - oldest) / 1000));
      },
    });
  }

  /** A recipient's state after an attempt, the reply code that put it there, and its site's provider. */
  recipientDone(state: RecipientState, code: number | null, provider: string | null): void {
    this.outcomes.get(state)?.[(code !== null && CLASS_OF_DIGIT[Math.floor(code / 100)]) || 'none'].inc();
    this.shaping.recipientDone(provider, state);
  }

  heldBack(provider: string | null, cause: HoldCause): void {
    this.shaping.heldBack(provider, cause);
  }

  domainAttempt(seconds: number): void {
    this.latency.observe(seconds);
  }

  dnsFailure(permanent: boolean): void {
    (permanent ? this.dns.permanent : this.dns.transient).inc();
  }
}
