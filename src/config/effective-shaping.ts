import type { Policy, ProviderPolicy, ShapingSettings } from './policy.js';

/**
 * Which provider a site belongs to, and the shaping that applies to it: pure functions of the policy, used by
 * delivery's routing and by `mta-queue policy show`.
 */

/**
 * The provider whose MX suffixes cover every MX host name of the site (KumoMTA's MXSuffix rule: a domain that
 * mixes Google's MXes with its own is not Google), or null: the site is then a provider of its own.
 */
export function providerForMxHosts(policy: Policy, mxHosts: readonly string[]): ProviderPolicy | null {
  if (mxHosts.length === 0) return null;
  const names = mxHosts.map((host) => host.toLowerCase().replace(/\.$/, ''));
  return policy.providers.find((provider) => names.every((name) => provider.match.some((suffix) => name.endsWith(suffix)))) ?? null;
}

/** `[shaping.default]`, then the provider's settings, then the recipient domain's: the later one wins per key. */
export function effectiveShaping(policy: Policy, provider: ProviderPolicy | null, domain: string | null): ShapingSettings {
  return { ...policy.default, ...provider?.shaping, ...(domain === null ? undefined : policy.domains.get(domain)) };
}
