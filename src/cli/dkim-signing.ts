import { Registry } from 'prom-client';
import type { QueueConfig } from '../config/queue-config.js';
import { signingTransport } from '../delivery/signing-transport.js';
import type { TransportFactory } from '../delivery/transport.js';
import { DkimMetrics } from '../dkim/dkim-metrics.js';
import { DkimKeyring } from '../dkim/keyring.js';
import { DkimSigner } from '../dkim/signer.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';

export interface DkimSigning {
  /** `transport` with every message signed on its way out. */
  transport: TransportFactory;
  keyring: DkimKeyring;
}

/**
 * mta-queue's signing, joined here because delivery/ and dkim/ do not know each other: the keyring (loaded now,
 * so the first delivery is signed), the signer over it, and the MX transport wrapped by the signing decorator.
 * `registry` is the --metrics registry; without one the counter is kept in a registry nobody reads.
 */
export async function startDkimSigning(config: QueueConfig, transport: TransportFactory, deps: { logger: Logger; clock: Clock; registry?: Registry | undefined; pollInterval?: number }): Promise<DkimSigning> {
  const keyring = new DkimKeyring(config.dkimDir, deps.logger, deps.pollInterval);
  await keyring.load('start');
  const signer = new DkimSigner({ keys: keyring, defaultDomain: config.dkimDefaultDomain, metrics: new DkimMetrics(deps.registry ?? new Registry()), logger: deps.logger, clock: deps.clock });
  return { transport: signingTransport(transport, signer, deps.logger), keyring };
}
