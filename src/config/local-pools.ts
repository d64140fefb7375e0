import { ConfigError } from '../shared/errors.js';
import type { Policy } from './policy.js';

/** A pool address this node cannot bind: left out of its pool here (another node of the same policy has it). */
export interface SkippedSource {
  pool: string;
  address: string;
}

/**
 * One policy file serves N nodes (shared/design/cli.md): each keeps, in every pool, only the addresses that are
 * local to it. A pool left with none is a ConfigError (exit 2 at start; on SIGHUP the policy in force stays),
 * since its mail would have nowhere to leave from.
 */
export function keepLocalSources(policy: Policy, isLocal: (address: string) => boolean): { policy: Policy; skipped: SkippedSource[] } {
  const skipped: SkippedSource[] = [];
  const pools = new Map<string, string[]>();
  for (const [pool, addresses] of policy.pools) {
    const local = addresses.filter((address) => isLocal(address));
    for (const address of addresses) if (!local.includes(address)) skipped.push({ pool, address });
    if (local.length === 0) throw new ConfigError(`--policy: no address of pool "${pool}" is local on this machine (${addresses.join(', ')})`);
    pools.set(pool, local);
  }
  return { policy: skipped.length === 0 ? policy : { ...policy, pools }, skipped };
}
