import { readFile } from 'node:fs/promises';
import type { Counter, Registry } from 'prom-client';
import type { QueueConfig, WebConfig } from '../config/queue-config.js';
import { UserStore } from '../config/user-store.js';
import type { DkimKeyring } from '../dkim/keyring.js';
import { InboxStore } from '../inbox/inbox-store.js';
import type { Clock } from '../shared/clock.js';
import { ConfigError } from '../shared/errors.js';
import { warnIfReadableByOthers } from '../shared/file-permissions.js';
import type { Logger } from '../shared/logger.js';
import { formatAddress, isLoopback } from '../shared/metrics.js';
import { spoolLayout } from '../spool/layout.js';
import { QueueAdmin } from '../spool/queue-admin.js';
import type { OutcomeTotals } from '../web/outcome-history.js';
import type { WebServer } from '../web/web-server.js';
import { newLeaseToken, procProcessTable } from './process-table.js';

/**
 * `mta-queue --web`: the web UI inside the running delivery daemon, so its actions go through the process that
 * owns the claims. Reads the web users file (no file, no UI: exit 2), the optional certificate, the Prometheus
 * counters for the chart and the keyring for DKIM status.
 */
export interface WebUi {
  server: WebServer;
  /** SIGHUP: the users file again; the old one stays when the new one does not parse. */
  reload(): Promise<void>;
}

/**
 * Reads what the UI needs from disk (users file, certificate): a usage error (exit 2) comes out here, before
 * anything runs. The returned start() serves it; fastify and the templates are loaded only then, so a daemon
 * without --web never loads them, and one with it starts delivering first.
 */
export async function prepareWebUi(config: QueueConfig & { web: WebConfig }, deps: { logger: Logger; clock: Clock; registry: Registry; keyring: DkimKeyring }): Promise<() => Promise<WebUi>> {
  const { logger, registry, keyring } = deps;
  const web = config.web;
  const users = await UserStore.load(web.usersFile);
  if (users.size === 0) throw new ConfigError(`--web-users ${web.usersFile}: no user in it (add one with: mta-server passwd USER --users ${web.usersFile})`);
  await warnIfReadableByOthers([['web-users', web.usersFile], ...(web.tls ? ([['web-tls-key', web.tls.keyFile]] as const) : [])], logger);
  const tls = web.tls ? { cert: await readTlsFile(web.tls.certFile, '--web-cert'), key: await readTlsFile(web.tls.keyFile, '--web-key') } : null;
  return async () => {
    const { startWebServer } = await import('../web/web-server.js');
    const layout = spoolLayout(config.spool);
    const server = await startWebServer(
      { host: web.address.host, port: web.address.port, tls, censusThread: true },
      {
        layout,
        users,
        logger,
        clock: deps.clock,
        makeAdmin: (operator) => new QueueAdmin(layout, logger.child({ operator, via: 'web' }), procProcessTable(), newLeaseToken()),
        deliveryTotals: () => deliveryTotals(registry),
        dkimStatus: async () =>
          [...keyring.activeKeys().values()].flat().map((key) => ({ domain: key.domain, selector: key.selector, type: key.type, state: key.state })),
        ...(config.inboxDir ? { inbox: new InboxStore(config.inboxDir) } : {}),
      },
    ).catch((error: Error) => {
      throw new Error(`--web ${formatAddress(web.address.host, web.address.port)}: ${error.message}`, { cause: error });
    });
    const url = `${tls ? 'https' : 'http'}://${formatAddress(server.host, server.port)}/`;
    logger.info({ event: 'web-listening', url, users: users.size }, `web UI on ${url}`);
    if (!isLoopback(server.host)) logger.warn({ event: 'web-exposed', host: server.host, port: server.port }, `the web UI listens on ${server.host}, beyond loopback: put it behind TLS (--web-cert) and a firewall`);
    return {
      server,
      reload: async () => {
        const count = await users.reload().catch((error: unknown) => {
          logger.error({ event: 'web-users-reload-failed', err: error }, 'web users file not reloaded; the previous one stays');
          return null;
        });
        if (count === null) return;
        server.usersReloaded();
        logger.info({ event: 'web-users-reloaded', users: count }, 'web users file reloaded');
      },
    };
  };
}

async function readTlsFile(file: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new ConfigError(`${flag} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** mta_queue_deliveries_total by outcome (expired counts as bounced: the sender got a DSN either way). */
async function deliveryTotals(registry: Registry): Promise<OutcomeTotals> {
  const totals: OutcomeTotals = { delivered: 0, deferred: 0, bounced: 0 };
  const counter = registry.getSingleMetric('mta_queue_deliveries_total') as Counter | undefined;
  for (const { labels, value } of (await counter?.get())?.values ?? []) {
    const outcome = labels.outcome === 'expired' ? 'bounced' : labels.outcome;
    if (outcome === 'delivered' || outcome === 'deferred' || outcome === 'bounced') totals[outcome] += value;
  }
  return totals;
}
