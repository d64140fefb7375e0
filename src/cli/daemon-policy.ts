import { keepLocalSources } from '../config/local-pools.js';
import { readPolicyFile, type Policy, type ShapingSettings } from '../config/policy.js';
import type { Logger } from '../shared/logger.js';

/**
 * The daemon's policy (`--policy`): read at start, where a problem is exit 2 naming `FILE:LINE` (a ConfigError out
 * of here); read again on SIGHUP, where a problem is logged (`policy-invalid`) and the policy in force stays.
 */
export interface DaemonPolicy {
  current(): Policy;
  reload(): Promise<void>;
}

/**
 * `flags`: what command-line flags set under the file (mta-queue's --max-connections-per-destination).
 * `localCheck`: made at each read, which pool addresses this machine has; the others are skipped (logged).
 */
export async function loadDaemonPolicy(file: string | null, flags: ShapingSettings, logger: Logger, localCheck?: () => (address: string) => boolean): Promise<DaemonPolicy> {
  const read = async () => {
    const loaded = await readPolicyFile(file ?? undefined, flags);
    if (!localCheck) return loaded;
    const { policy, skipped } = keepLocalSources(loaded.policy, localCheck());
    for (const { pool, address } of skipped) logger.warn({ event: 'pool-address-not-local', pool, address }, `pool ${pool}: ${address} is not an address of this machine, skipped`);
    return { ...loaded, policy };
  };
  const describe = (loaded: { policy: Policy; file: string | null }) => ({ file: loaded.file ?? 'built-in', providers: loaded.policy.providers.length, rules: loaded.policy.rules.length, domains: loaded.policy.domains.size });
  let loaded = await read();
  logger.info({ event: 'policy-loaded', ...describe(loaded) }, `policy: ${loaded.file ?? 'built-in only'}`);
  return {
    current: () => loaded.policy,
    reload: async () => {
      try {
        loaded = await read();
        logger.info({ event: 'policy-loaded', reason: 'sighup', ...describe(loaded) }, `policy reloaded: ${loaded.file ?? 'built-in only'}`);
      } catch (error) {
        logger.error({ event: 'policy-invalid', err: { message: (error as Error).message } }, `policy not reloaded, the one in force stays: ${(error as Error).message}`);
      }
    },
  };
}
