import { effectiveShaping, providerForMxHosts } from '../config/effective-shaping.js';
import type { Policy, ProviderPolicy, ShapingSettings } from '../config/policy.js';
import type { SitesReport, SiteStatus } from '../shared/site-status.js';
import { shapingUnder, type ActiveBackoff } from './backoffs.js';
import type { SiteActivity } from './site-queues.js';

/** Rows the web UI's Sites table gets at most: the overview refreshes every 2 s, so the answer stays small. */
export const SITES_SHOWN = 50;

/**
 * The provider of a site known only by its name (a back-off read from the spool): the name is the sorted MX host
 * names joined by `,`, which the provider table matches as routing does. `relay:HOST:PORT` matches no MX suffix.
 */
export function siteProvider(policy: Policy, site: string): ProviderPolicy | null {
  return providerForMxHosts(policy, site.split(','));
}

const keyOf = (site: string, source: string) => `${site}\u0000${source}`;

/**
 * The sites delivery is busy with (connections in use, transactions waiting) and those backed off, for the web
 * UI: busiest first, then the back-offs soonest ending first, at most `limit` rows. Sorting needs only the
 * counts, so a spool with thousands of back-offs costs one sort, and a provider look-up per row shown.
 */
export function sitesReport(activity: readonly SiteActivity[], backoffs: readonly ActiveBackoff[], policy: Policy, now: number, limit = SITES_SHOWN): SitesReport {
  const inForce = new Map<string, ActiveBackoff>();
  for (const backoff of backoffs) if (backoff.until > now) inForce.set(keyOf(backoff.site, backoff.source), backoff);
  const busiest = [...activity].sort((a, b) => b.connections + b.waiting - (a.connections + a.waiting) || a.route.site.localeCompare(b.route.site));
  const active = new Set(activity.map((site) => keyOf(site.route.site, site.route.source)));
  const idle = [...inForce.values()].filter((backoff) => !active.has(keyOf(backoff.site, backoff.source))).sort((a, b) => a.until - b.until);
  const rows: SiteStatus[] = busiest.slice(0, limit).map(({ route, connections, waiting }) => {
    const backoff = inForce.get(keyOf(route.site, route.source));
    return siteStatus(route.site, route.source, route.provider, shapingUnder(backoff, route.shaping), { connections, waiting }, backoff);
  });
  for (const backoff of idle.slice(0, Math.max(0, limit - rows.length))) {
    const provider = siteProvider(policy, backoff.site);
    // Without a route the domain's own settings are unknown: the provider's (or the default) stand for them.
    rows.push(siteStatus(backoff.site, backoff.source, provider?.name ?? null, shapingUnder(backoff, effectiveShaping(policy, provider, null)), { connections: 0, waiting: 0 }, backoff));
  }
  const suspended = [...inForce.values()].filter((backoff) => backoff.action === 'suspend').length;
  return { sites: rows, total: activity.length + idle.length, backoffs: { count: inForce.size, suspend: suspended, throttle: inForce.size - suspended } };
}

function siteStatus(site: string, source: string, provider: string | null, shaping: ShapingSettings, load: { connections: number; waiting: number }, backoff: ActiveBackoff | undefined): SiteStatus {
  return {
    site,
    source,
    provider,
    ...load,
    connectionLimit: shaping.connection_limit ?? null,
    messageRate: shaping.max_message_rate?.text ?? null,
    backoff: backoff ? { action: backoff.action, rule: backoff.rule, until: backoff.until, reply: backoff.reply } : null,
  };
}
