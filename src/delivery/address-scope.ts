import net from 'node:net';

/** Where an address leads: the Internet, or this machine and the networks around it. */
export type AddressScope = 'public' | 'unspecified' | 'loopback' | 'private' | 'link-local';

/**
 * Anyone can publish an MX (or write a recipient domain `[127.0.0.1]`) that points inside our network: dialled,
 * it would turn the relay into a probe of our own listeners and neighbours. Node's BlockList also matches the
 * IPv4-mapped form (`::ffff:127.0.0.1`) of an IPv4 range.
 */
const SCOPE_RANGES: readonly (readonly [AddressScope, readonly (readonly [string, number, 'ipv4' | 'ipv6'])[]])[] = [
  // RFC 1122 §3.2.1.3, RFC 4291 §2.5.2: "this host"; connecting to one on Linux reaches our own listeners.
  ['unspecified', [['0.0.0.0', 8, 'ipv4'], ['::', 128, 'ipv6']]],
  // RFC 1122 §3.2.1.3, RFC 4291 §2.5.3.
  ['loopback', [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']]],
  // RFC 1918, and unique local IPv6 (RFC 4193).
  ['private', [['10.0.0.0', 8, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['fc00::', 7, 'ipv6']]],
  // RFC 3927, RFC 4291 §2.5.6.
  ['link-local', [['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']]],
];

const SCOPES = SCOPE_RANGES.map(([scope, ranges]) => {
  const list = new net.BlockList();
  for (const [network, prefix, family] of ranges) list.addSubnet(network, prefix, family);
  return [scope, list] as const;
});

/** Every check makes a SocketAddress per range: asked for each message's MX address, the answers are kept. */
const known = new Map<string, AddressScope>();
const KNOWN_MAX = 10_000;

/** The scope of an IP address as a resolver or an address literal gives it. */
export function addressScope(ip: string): AddressScope {
  let scope = known.get(ip);
  if (scope === undefined) {
    const family = net.isIPv6(ip) ? 'ipv6' : 'ipv4';
    scope = SCOPES.find(([, list]) => list.check(ip, family))?.[0] ?? 'public';
    if (known.size >= KNOWN_MAX) known.clear();
    known.set(ip, scope);
  }
  return scope;
}

/**
 * Whether delivery may connect to `ip`. Unspecified addresses never; loopback, private and link-local ones only
 * in a lab set-up (shared/design/cli.md: `--smtp-port` other than 25, or `--allow-private-destinations`).
 */
export function mayConnectTo(ip: string, privateAllowed: boolean): boolean {
  const scope = addressScope(ip);
  return scope === 'public' || (privateAllowed && scope !== 'unspecified');
}

/** An address refused before any packet is sent; classify.ts NETWORK_ERRORS makes it 4.4.4 (unable to route). */
export class RefusedAddressError extends Error {
  readonly code = 'EREFUSEDADDRESS';
}
