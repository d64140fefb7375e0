import { Gauge, type Registry } from 'prom-client';
import type { Policy } from '../config/policy.js';
import { TallyCounter, type Tally } from '../shared/metrics.js';
import type { RecipientState } from '../spool/envelope.js';
import type { ActiveBackoff } from './backoffs.js';
import { siteProvider } from './site-report.js';
import { HOLD_CAUSES, type HoldCause, type SiteActivity } from './site-queues.js';

/** What the shaping gauges read when scraped (the runner's site queues and back-offs). */
export interface ShapingState {
  activity: SiteActivity[];
  backoffs: readonly ActiveBackoff[];
  /** Transactions waiting in site queues, all sites. */
  waiting: number;
  policy: Policy;
  now: number;
}

type ProviderOutcome = 'delivered' | 'deferred' | 'bounced';
const PROVIDER_OUTCOMES: readonly ProviderOutcome[] = ['delivered', 'deferred', 'bounced'];
/** Expired counts as bounced here: its sender got a DSN either way (mta_queue_deliveries_total keeps it apart). */
const OUTCOME_OF_STATE: Partial<Record<RecipientState, ProviderOutcome>> = { delivered: 'delivered', deferred: 'deferred', bounced: 'bounced', expired: 'bounced' };

/** Labels never name a site or a domain: a provider of the policy's table, or `none` for a site of its own. */
const providerLabel = (provider: string | null) => provider ?? 'none';

/**
 * Shaping per provider. Counters are bound once per provider (every outcome or cause at once, so each series
 * exists from 0); the gauges are counted from the site queues and back-offs only when scraped.
 */
export class ShapingMetrics {
  private readonly messagesCounter: TallyCounter<'provider' | 'outcome'>;
  private readonly heldBackCounter: TallyCounter<'provider' | 'reason'>;
  private readonly messagesByProvider = new Map<string, Record<ProviderOutcome, Tally>>();
  private readonly heldBackByProvider = new Map<string, Record<HoldCause, Tally>>();

  constructor(registry: Registry, state: () => ShapingState) {
    this.messagesCounter = new TallyCounter({
      name: 'mta_queue_provider_messages_total',
      help: 'recipients at the end of a delivery attempt per provider of their site (none: a site no provider matches), by outcome (expired counts as bounced)',
      labelNames: ['provider', 'outcome'],
      registry,
    });
    this.heldBackCounter = new TallyCounter({
      name: 'mta_queue_held_back_total',
      help: 'recipients held back without an attempt, by provider of the site (none: a site no provider matches) and reason: suspend, throttle-rate, connection-wait, warm-up, stopping',
      labelNames: ['provider', 'reason'],
      registry,
    });
    countedGauge(registry, 'mta_queue_provider_connections', 'transactions in flight per provider (none: sites no provider matches)', ['provider'], () =>
      state().activity.map((site) => [{ provider: providerLabel(site.route.provider) }, site.connections]),
    );
    countedGauge(registry, 'mta_queue_backoffs', 'back-offs in force now, by provider of the backed-off site and action (suspend, throttle)', ['provider', 'action'], () => {
      const { backoffs, policy, now } = state();
      return backoffs.filter((backoff) => backoff.until > now).map((backoff) => [{ provider: providerLabel(siteProvider(policy, backoff.site)?.name ?? null), action: backoff.action }, 1]);
    });
    new Gauge({
      name: 'mta_queue_site_queue_waiting',
      help: 'transactions waiting in site queues for a connection or a rate (they hold no --concurrency slot)',
      registers: [registry],
      collect() {
        this.set(state().waiting);
      },
    });
  }

  recipientDone(provider: string | null, state: RecipientState): void {
    const outcome = OUTCOME_OF_STATE[state];
    if (outcome) bound(this.messagesByProvider, providerLabel(provider), PROVIDER_OUTCOMES, (name) => this.messagesCounter.bind({ provider: providerLabel(provider), outcome: name }))[outcome].inc();
  }

  heldBack(provider: string | null, cause: HoldCause): void {
    bound(this.heldBackByProvider, providerLabel(provider), HOLD_CAUSES, (name) => this.heldBackCounter.bind({ provider: providerLabel(provider), reason: name }))[cause].inc();
  }
}

/** The provider's tallies, one per value, bound on the provider's first use. */
function bound<V extends string>(byProvider: Map<string, Record<V, Tally>>, provider: string, values: readonly V[], bind: (value: V) => Tally): Record<V, Tally> {
  let tallies = byProvider.get(provider);
  if (!tallies) {
    tallies = Object.fromEntries(values.map((value) => [value, bind(value)])) as Record<V, Tally>;
    byProvider.set(provider, tallies);
  }
  return tallies;
}

/**
 * A gauge summed afresh from `count` at each scrape. A label set once seen stays, at 0, so a provider whose last
 * connection closed or whose back-off ended reads 0 rather than vanishing (a gap looks like a failed scrape).
 */
function countedGauge<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], count: () => [Record<L, string>, number][]): void {
  const seen = new Map<string, Record<L, string>>();
  new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      const sums = new Map<string, number>();
      for (const key of seen.keys()) sums.set(key, 0);
      for (const [labels, value] of count()) {
        const key = labelNames.map((label) => labels[label]).join('\u0000');
        if (!seen.has(key)) seen.set(key, labels);
        sums.set(key, (sums.get(key) ?? 0) + value);
      }
      for (const [key, sum] of sums) this.set(seen.get(key)!, sum);
    },
  });
}
