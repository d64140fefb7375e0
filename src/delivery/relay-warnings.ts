import type { RelayHostConfig } from '../config/relay-host.js';
import { warnIfReadableByOthers } from '../shared/file-permissions.js';
import type { Logger } from '../shared/logger.js';

/** What an operator should hear about the relay host's settings, one `warn` line each, at mta-queue's start. */
export async function logRelayHostWarnings(relay: RelayHostConfig | null, logger: Logger): Promise<void> {
  if (!relay?.credentials) return;
  await warnIfReadableByOthers([['relay-auth', relay.credentials.file]], logger);
  if (relay.tls !== 'verify') {
    // Anyone on the path who answers with a certificate of their own gets the password.
    logger.warn(
      { event: 'relay-tls-unverified', relayHost: relay.host, tls: relay.tls },
      `--relay-tls ${relay.tls}: the relay password goes to ${relay.host} without its certificate being checked (--relay-tls verify checks it; --relay-ca FILE for a private CA)`,
    );
  }
}
