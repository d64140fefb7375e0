import { BlockList, isIPv6 } from 'node:net';
import os from 'node:os';

/**
 * The addresses this machine can bind, read now (at start and on SIGHUP: an address added meanwhile counts). A
 * loopback interface's whole network is local (Linux binds any of 127.0.0.0/8 on `lo`), other interfaces' own
 * addresses only.
 */
export function localAddressCheck(): (address: string) => boolean {
  const local = new BlockList();
  for (const entries of Object.values(os.networkInterfaces())) {
    for (const entry of entries ?? []) {
      const family = entry.family === 'IPv6' ? 'ipv6' : 'ipv4';
      if (entry.internal && entry.cidr) {
        const [network, prefix] = entry.cidr.split('/');
        local.addSubnet(network!, Number(prefix), family);
      } else local.addAddress(entry.address.replace(/%.*$/, ''), family);
    }
  }
  return (address) => local.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
}
