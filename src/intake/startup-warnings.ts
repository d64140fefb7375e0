import type net from 'node:net';
import type { ServerConfig } from '../config/server-config.js';
import { warnIfReadableByOthers } from '../shared/file-permissions.js';
import type { Logger } from '../shared/logger.js';

/**
 * Addresses spread over the whole of each family: a trusted list that holds them all is `0.0.0.0/0` or `::/0`
 * (or the same written as several halves), i.e. an open relay for anyone who can reach the port.
 */
const IPV4_SPREAD = ['1.1.1.1', '45.33.2.1', '100.64.0.1', '128.0.0.1', '185.0.0.1', '223.255.255.254', '255.255.255.254'];
const IPV6_SPREAD = ['2001:db8::1', '2600::1', '2a00::1', '3fff::1', '4000::1', 'fc00::1', 'ff02::1'];

/** Configuration that works but that an operator should hear about, one `warn` line each, at start. */
export async function logStartupWarnings(config: Pick<ServerConfig, 'usersFile' | 'keyFile' | 'trustedNetworks'>, logger: Logger): Promise<void> {
  await warnIfReadableByOthers([['users', config.usersFile], ['tls-key', config.keyFile]], logger);
  const everything = coversEverything(config.trustedNetworks);
  if (everything) {
    logger.warn({ event: 'trusted-networks-everything', family: everything }, `--trusted-networks covers every ${everything} address: anyone who reaches the port may relay without AUTH`);
  }
}

function coversEverything(networks: net.BlockList | null): 'IPv4' | 'IPv6' | null {
  if (!networks) return null;
  if (IPV4_SPREAD.every((address) => networks.check(address, 'ipv4'))) return 'IPv4';
  if (IPV6_SPREAD.every((address) => networks.check(address, 'ipv6'))) return 'IPv6';
  return null;
}
