import { effectiveShaping, providerForMxHosts } from '../config/effective-shaping.js';
import type { Policy, ProviderPolicy, ShapingSettings } from '../config/policy.js';
import { domainOf } from '../shared/addresses.js';
import type { Clock } from '../shared/clock.js';
import type { Backoffs } from './backoffs.js';
import type { WarmupCaps } from './warmup-caps.js';
import { chooseSource, poolFor } from './source-choice.js';
import type { Destination, DestinationFailure, LocalSource, Transport } from './transport.js';

/**
 * Route first (shared/design/dispatch.md): where a domain's mail goes and under which limits, decided before any
 * slot is taken. The transport finds the site (the MX set); the policy adds the provider and the shaping.
 */
export interface Route extends Destination {
  domain: string;
  /** The provider-table entry whose MX suffixes cover the site, or null: the site is a provider of its own. */
  provider: string | null;
  /** [shaping.default], then the provider's, then the domain's settings (config/effective-shaping.ts). */
  shaping: ShapingSettings;
  /** The pool address the mail leaves from, or `default` (the machine's own): limits are per source and site. */
  source: string;
  /** What the connection binds and says in EHLO; null for `default` (no binding, --hostname). */
  local: LocalSource | null;
  /**
   * The rate is the recipient domain's own (`[shaping.domain."D"] max_message_rate`): the receiver's limit, so it
   * counts every source's mail to the site (shared/design/cli.md), not each source's apart.
   */
  domainRate: boolean;
}

/** Who a message is from, as far as the choice of its source address goes. */
export interface RouteSender {
  /** The AUTH user, null for a trusted-network client. */
  user: string | null;
  /** The envelope sender, '' for a bounce. */
  address: string;
}

export interface RouterOptions {
  transport: Transport;
  policy: () => Policy;
  relayHost: boolean;
  /** A pool address backed off for a site is skipped for the next one of its pool. */
  backoffs: Backoffs;
  /** So is one at its warm-up cap for the site's provider. */
  warmup: WarmupCaps;
  clock: Clock;
}

export const DEFAULT_SOURCE = 'default';
const MAX_ROUTES = 10_000;

/** The transport's answer, or the domain as a site of its own for a transport that cannot locate (test doubles). */
export function locateDestination(transport: Transport, domain: string): Promise<Destination | DestinationFailure> {
  return transport.locate ? transport.locate(domain) : Promise.resolve({ site: domain, mxHosts: [], firstAddress: null });
}

export class Router {
  constructor(private readonly options: RouterOptions) {}

  /** The last routes per domain (one per source), reused while the destination and the policy are the same objects. */
  private readonly routes = new Map<string, { destination: Destination; policy: Policy; provider: ProviderPolicy | null; bySource: Map<string, Route> }>();
  /** Where each pool's round robin goes on. */
  private readonly turns = new Map<string, number>();

  async route(domain: string, sender: RouteSender): Promise<Route | DestinationFailure> {
    const destination = await locateDestination(this.options.transport, domain);
    if ('failure' in destination) return destination;
    const policy = this.options.policy();
    let known = this.routes.get(domain);
    if (!known || known.destination !== destination || known.policy !== policy) {
      if (this.routes.size >= MAX_ROUTES) this.routes.clear();
      // The relay host is a route of its own: no provider, and no recipient domain's shaping (shared/design/cli.md).
      const provider = this.options.relayHost ? null : providerForMxHosts(policy, destination.mxHosts);
      this.routes.set(domain, (known = { destination, policy, provider, bySource: new Map() }));
    }
    const { provider } = known;
    const source = this.sourceFor(policy, sender, { site: destination.site, provider: provider?.name ?? null });
    let route = known.bySource.get(source);
    if (!route) {
      const relayHost = this.options.relayHost;
      const local = source === DEFAULT_SOURCE ? null : { address: source, ehlo: policy.sources.get(source)?.ehlo ?? null };
      const domainRate = !relayHost && policy.domains.get(domain)?.max_message_rate !== undefined;
      route = { ...destination, domain, provider: provider?.name ?? null, shaping: effectiveShaping(policy, provider, relayHost ? null : domain), source, local, domainRate };
      known.bySource.set(source, route);
    }
    return route;
  }

  private sourceFor(policy: Policy, sender: RouteSender, site: Pick<Route, 'site' | 'provider'>): string {
    const pool = poolFor(policy, sender.user, sender.address.includes('@') ? domainOf(sender.address) : null);
    const addresses = pool === null ? undefined : policy.pools.get(pool);
    if (pool === null || !addresses?.length) return DEFAULT_SOURCE;
    const now = this.options.clock.now();
    const blockedUntil = (address: string) => {
      const ends = [this.options.backoffs.find(site.site, address, now)?.until, this.options.warmup.cappedUntil(address, site, now)].filter((until) => until != null);
      return ends.length === 0 ? null : Math.max(...ends);
    };
    const chosen = chooseSource(addresses, this.turns.get(pool) ?? 0, blockedUntil);
    this.turns.set(pool, chosen.next % addresses.length);
    return chosen.address;
  }
}
