import type { DnsZone } from '../../test/helpers/dns-server.js';
import type { ProviderLimits, ProviderStyle, WindowLimit } from './provider-mx.js';

/**
 * What bench:campaign sends where: three simulated providers, each one site (one set of MX names, on its own
 * loopback address) behind one or two recipient domains; the policy file stating their limits; the least time
 * those limits allow.
 */

export type ProviderKey = 'a' | 'b' | 'c';

export interface CampaignProvider {
  key: ProviderKey;
  /** `A (Yahoo-like)`. */
  label: string;
  style: ProviderStyle;
  /** The built-in policy's provider whose MX suffix the MX names carry (src/config/policy-defaults.ts). */
  policyName: string;
  host: string;
  domains: string[];
  /**
   * MX host names with the real provider's suffix, all on `host`. Every domain of a provider has the same set: the
   * policy shapes per site (the set of MX names), and a provider limits per sending address across all its
   * domains, so one site per provider makes the two the same thing.
   */
  mxNames: string[];
  limits: ProviderLimits;
  messages: number;
}

const PROVIDERS: Omit<CampaignProvider, 'limits' | 'messages'>[] = [
  { key: 'a', label: 'A (Yahoo-like)', style: 'yahoo', policyName: 'yahoo', host: '127.0.0.21', domains: ['yahoo.test', 'ymail.test'], mxNames: ['mta5.am0.yahoodns.net', 'mta6.am0.yahoodns.net', 'mta7.am0.yahoodns.net'] },
  { key: 'b', label: 'B (Microsoft-like)', style: 'microsoft', policyName: 'office365', host: '127.0.0.22', domains: ['contoso.test'], mxNames: ['contoso-test.mail.protection.outlook.com'] },
  { key: 'c', label: 'C (Gmail-like)', style: 'gmail', policyName: 'google', host: '127.0.0.23', domains: ['gmail.test', 'workspace.test'], mxNames: ['aspmx.l.google.com', 'alt1.aspmx.l.google.com'] },
];

export function campaignProviders(settings: Record<ProviderKey, { limits: ProviderLimits; messages: number }>): CampaignProvider[] {
  return PROVIDERS.map((provider) => ({ ...provider, ...settings[provider.key] }));
}

/** Every domain's MX names and every MX name's address, for the benchmark's DNS server. */
export function campaignZone(providers: CampaignProvider[]): DnsZone {
  const zone: DnsZone = {};
  for (const provider of providers) {
    for (const domain of provider.domains) zone[domain] = { mx: provider.mxNames.map((exchange, index) => ({ preference: 5 * (index + 1), exchange })) };
    for (const name of provider.mxNames) zone[name] = { a: [provider.host] };
  }
  return zone;
}

export interface CampaignMessage {
  provider: ProviderKey;
  recipient: string;
}

/**
 * The campaign list: `u<i>@<domain>`, a provider's domains in turn, the providers interleaved in proportion to
 * their counts (as a mailing list sorted by address mixes them), so no provider's mail waits behind another's.
 */
export function campaignMessages(providers: CampaignProvider[]): CampaignMessage[] {
  const keyed = providers.flatMap((provider) =>
    Array.from({ length: provider.messages }, (_, index) => ({
      order: (index + 0.5) / provider.messages,
      message: { provider: provider.key, recipient: `u${index}@${provider.domains[index % provider.domains.length]}` },
    })),
  );
  return keyed.sort((x, y) => x.order - y.order).map((entry) => entry.message);
}

/**
 * The least time from the first message to the last that `rate` allows for `messages`: the provider's bucket
 * starts full (`count` at once), then one more every windowMs/count. null: no rate limit, only transfer time.
 */
export function minimumSeconds(messages: number, rate: WindowLimit | null): number | null {
  if (rate === null) return null;
  return (Math.max(0, messages - rate.count) * rate.windowMs) / rate.count / 1000;
}

/**
 * A policy rate for `count` per `windowMs`: the policy takes N/sec|min|hour|day, so the smallest unit in which
 * the rate is a whole number, else N/day rounded down (never faster than the provider allows).
 */
export function policyRate(rate: WindowLimit): string {
  for (const [unit, ms] of [['sec', 1000], ['min', 60_000], ['hour', 3_600_000]] as const) {
    const perUnit = (rate.count * ms) / rate.windowMs;
    if (Number.isInteger(perUnit)) return `${perUnit}/${unit}`;
  }
  return `${Math.max(1, Math.floor((rate.count * 86_400_000) / rate.windowMs))}/day`;
}

/**
 * The `--policy` file: each provider's limits over the built-in provider of the same MX suffix (its `match` is
 * kept). Rates keep the default burst of 1, evenly spaced, although the provider's bucket would take N at once:
 * our clock is not the provider's, and a sender that spends the whole burst then runs at exactly the provider's
 * rate with no slack, so a message that arrives a millisecond early after a delayed one is refused. Evenly spaced,
 * the provider's bucket stays nearly full and absorbs that jitter, for (N−1)·W/N seconds more than the minimum.
 * The built-in back-off rules stay as they are.
 */
export function campaignPolicy(providers: CampaignProvider[]): string {
  const lines = ['# Written by bench/campaign.ts: the simulated providers\' limits, as an operator would state them.'];
  for (const provider of providers) {
    const { rate, perConnection } = provider.limits;
    const settings = [
      ...(rate ? [`max_message_rate = "${policyRate(rate)}"  # ${rate.count} per ${rate.windowMs / 1000} s`] : []),
      ...(perConnection !== null ? [`max_deliveries_per_connection = ${perConnection}`] : []),
    ];
    if (settings.length) lines.push('', `# ${provider.label}: ${provider.mxNames.join(', ')}`, `[shaping.provider.${provider.policyName}]`, ...settings);
  }
  return `${lines.join('\n')}\n`;
}
