import net from 'node:net';
import { DeliveryFailure, deliveryFailureFrom } from './delivery-failure.js';
import { planMxHosts, type MxRecord } from './mx-order.js';

/*
 * Why not mx-connect (ZoneMTA's MX connector, evaluated at 1.6): it sorts MX by preference and falls back to
 * A/AAAA, but does not recognise a null MX (RFC 7505: it would try to resolve "."), does not shuffle equal
 * preferences, connects one socket per call (we pool connections per MX for reuse), and brings mailauth for
 * MTA-STS/DANE, which we do not enforce yet. The walk itself is small, so it is ours, with the policy pure
 * (mx-order.ts) and the resolver a seam.
 */

/** The resolver seam: node's `dns.promises.Resolver` fits, pointed at `--dns-servers` or the system's. */
export interface DnsResolver {
  resolveMx(domain: string): Promise<MxRecord[]>;
  resolve4(host: string): Promise<string[]>;
  resolve6(host: string): Promise<string[]>;
  resolveCname(name: string): Promise<string[]>;
}

/**
 * A DNS outcome that decides a recipient without any SMTP: permanent (5.x.x) for a domain that does not exist or
 * takes no mail, transient (4.4.3) for a resolver that failed. `host` is the MX whose addresses were asked for.
 */
function dnsFailure(text: string, enhanced: string, host: string | null, cause?: unknown): DeliveryFailure {
  const verdict = enhanced.startsWith('5.') ? 'permanent' : 'transient';
  return new DeliveryFailure({ verdict, reply: { code: null, enhanced, text }, mx: host, ip: null, stage: 'dns', greeted: false }, { cause });
}

// node reports NXDOMAIN as ENOTFOUND and an existing name without records of the type as ENODATA.
const NO_SUCH_NAME = 'ENOTFOUND';
const NO_RECORDS = 'ENODATA';

/** Aliases followed to tell a CNAME loop from a name without records; a longer chain counts as a loop. */
const MAX_CNAME_CHAIN = 8;

/** A CNAME chain that comes back on itself (RFC 1034 §3.6.2); classify.ts NETWORK_ERRORS makes it 4.4.3. */
class CnameLoopError extends Error {
  readonly code = 'ECNAMELOOP';
}

export interface MxTarget {
  /** The name to present in TLS SNI and logs. */
  host: string;
  /** Resolved lazily, only when this host's turn comes. */
  addresses(): Promise<string[]>;
}

/** MX hosts to try for `domain`, best first; throws a DeliveryFailure (stage 'dns') when DNS alone settles the matter. */
export async function resolveMxTargets(domain: string, resolver: DnsResolver): Promise<MxTarget[]> {
  const literal = /^\[(?:ipv6:)?(.+)\]$/i.exec(domain)?.[1];
  if (literal && net.isIP(literal)) return [{ host: literal, addresses: async () => [literal] }];
  let records: MxRecord[];
  try {
    records = await resolver.resolveMx(domain);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === NO_SUCH_NAME) throw dnsFailure(`domain ${domain} does not exist (NXDOMAIN)`, '5.1.2', null, error);
    if (code !== NO_RECORDS) throw dnsFailure(`MX lookup for ${domain} failed (${code ?? 'error'})`, '4.4.3', null, error);
    records = [];
  }
  const plan = planMxHosts(records);
  if (plan.kind === 'null-mx') throw dnsFailure(`domain ${domain} accepts no mail (null MX, RFC 7505)`, '5.1.10', null);
  if (plan.kind === 'implicit') {
    const addresses = await hostAddresses(domain, resolver);
    if (addresses.length === 0) {
      await refuseCnameLoop(domain, resolver);
      throw dnsFailure(`domain ${domain} has no MX, A or AAAA records`, '5.1.2', null);
    }
    return [{ host: domain, addresses: async () => addresses }];
  }
  return plan.hosts.map((host) => ({ host, addresses: () => hostAddresses(host, resolver) }));
}

/** IPv4 first (what most MXes serve best), then IPv6; a host with neither is an empty list. */
async function hostAddresses(host: string, resolver: DnsResolver): Promise<string[]> {
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
  const found = [v4, v6].flatMap((result) => (result.status === 'fulfilled' ? result.value : []));
  const failure = [v4, v6].find((result): result is PromiseRejectedResult => result.status === 'rejected' && ![NO_SUCH_NAME, NO_RECORDS].includes(result.reason?.code));
  if (found.length === 0 && failure) {
    const code = (failure.reason as NodeJS.ErrnoException).code;
    throw dnsFailure(`address lookup for ${host} failed (${code ?? 'error'})`, '4.4.3', host, failure.reason);
  }
  return found;
}

/**
 * A looping CNAME answers every type with the aliases alone, which node reports as no records, not as an error:
 * told apart here from a domain that has none, since a loop is a broken zone its owner will fix (a DNS failure, to
 * retry), not a verdict on the domain. Asked only on the way to a 5.1.2.
 */
async function refuseCnameLoop(domain: string, resolver: DnsResolver): Promise<void> {
  const chain = [canonical(domain)];
  for (;;) {
    const name = chain.at(-1)!;
    const [target] = await resolver.resolveCname(name).catch((error: NodeJS.ErrnoException) => {
      if ([NO_SUCH_NAME, NO_RECORDS].includes(error.code ?? '')) return [];
      throw dnsFailure(`CNAME lookup for ${name} failed (${error.code ?? 'error'})`, '4.4.3', null, error);
    });
    if (target === undefined) return;
    chain.push(canonical(target));
    if (chain.indexOf(chain.at(-1)!) < chain.length - 1 || chain.length > MAX_CNAME_CHAIN) break;
  }
  throw deliveryFailureFrom(new CnameLoopError(`CNAME loop: ${chain.join(' → ')}`), { mx: null, ip: null, stage: 'dns', greeted: false });
}

function canonical(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/**
 * `--relay-host` in place of the MX walk (Postfix relayhost): the one host's A/AAAA records, never its MX, or the
 * IP literal itself. Nothing about the relay host is permanent: an unknown name is the operator's to fix (4.4.3).
 */
export function resolveRelayTargets(host: string, resolver: DnsResolver): MxTarget[] {
  if (net.isIP(host)) return [{ host, addresses: async () => [host] }];
  return [
    {
      host,
      addresses: async () => {
        const addresses = await hostAddresses(host, resolver);
        if (addresses.length === 0) throw dnsFailure(`relay host ${host} has no A or AAAA records`, '4.4.3', host);
        return addresses;
      },
    },
  ];
}
