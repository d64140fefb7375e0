import { effectiveShaping, providerForMxHosts } from '../config/effective-shaping.js';
import type { Policy, ShapingSettings } from '../config/policy.js';
import type { Destination, DestinationFailure, Transport } from './transport.js';

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
  /** The source address's name: `default` until pools choose one (limits are per source and site). */
  source: string;
}

export const DEFAULT_SOURCE = 'default';
const MAX_ROUTES = 10_000;

/** The transport's answer, or the domain as a site of its own for a transport that cannot locate (test doubles). */
export function locateDestination(transport: Transport, domain: string): Promise<Destination | DestinationFailure> {
  return transport.locate ? transport.locate(domain) : Promise.resolve({ site: domain, mxHosts: [], firstAddress: null });
}

export class Router {
  constructor(
    private readonly transport: Transport,
    private readonly policy: () => Policy,
    private readonly relayHost: boolean,
  ) {}

  /** The last route per domain, reused while the transport's destination and the policy are the same objects. */
  private readonly routes = new Map<string, { destination: Destination; policy: Policy; route: Route }>();

  async route(domain: string): Promise<Route | DestinationFailure> {
    const destination = await locateDestination(this.transport, domain);
    if ('failure' in destination) return destination;
    const policy = this.policy();
    const known = this.routes.get(domain);
    if (known && known.destination === destination && known.policy === policy) return known.route;
    // The relay host is a route of its own: no provider, and no recipient domain's shaping (shared/design/cli.md).
    const provider = this.relayHost ? null : providerForMxHosts(policy, destination.mxHosts);
    const route = { ...destination, domain, provider: provider?.name ?? null, shaping: effectiveShaping(policy, provider, this.relayHost ? null : domain), source: DEFAULT_SOURCE };
    if (this.routes.size >= MAX_ROUTES) this.routes.clear();
    this.routes.set(domain, { destination, policy, route });
    return route;
  }
}
