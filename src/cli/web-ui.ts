import { readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import type { Counter, Registry } from 'prom-client';
import type { QueueConfig, WebConfig } from '../config/queue-config.js';
import { loadUsersFile } from '../config/users-file.js';
import type { DkimKeyring } from '../dkim/keyring.js';
import { ConfigError } from '../shared/errors.js';
import { warnIfReadableByOthers } from '../shared/file-permissions.js';
import type { Logger } from '../shared/logger.js';
import { formatAddress, isLoopback } from '../shared/metrics.js';
import type { SitesReport } from '../shared/site-status.js';
import type { OutcomeTotals } from '../web/outcome-history.js';
import type { FromWebThread, ToWebThread, WebThreadAnswer, WebThreadData, WebThreadQuestion } from './web-thread-server.js';

/**
 * `mta-queue --web`: the web UI inside the running delivery daemon, so its actions go through the process that
 * owns the claims, on a thread of its own (web-thread-server.ts) so that serving it takes nothing from the
 * delivery event loop. This side checks the users file and the certificate, starts the thread, writes its log
 * lines to the daemon's log and answers its questions (the delivery counters for the chart, the DKIM keys, the
 * Sites table).
 */
export interface WebUi {
  host: string;
  port: number;
  /** SIGHUP: the users file again; the old one stays when the new one does not parse. */
  reload(): void;
  close(): Promise<void>;
}

/** How long a closing UI thread may take to finish its requests before it is stopped. */
const CLOSE_TIMEOUT_MS = 5000;

/**
 * Reads what the UI needs from disk (users file, certificate): a usage error (exit 2) comes out here, before
 * anything runs. The returned start() starts the UI thread and resolves once it listens; fastify and the templates
 * are loaded only there, so a daemon without --web never loads them.
 */
export async function prepareWebUi(
  config: QueueConfig & { web: WebConfig },
  deps: { logger: Logger; registry: Registry; keyring: DkimKeyring; sites(): SitesReport },
): Promise<() => Promise<WebUi>> {
  const { logger, registry, keyring } = deps;
  const web = config.web;
  // Parsed only: the UI thread hashes any plain password, off the delivery thread.
  const users = await loadUsersFile(web.usersFile);
  if (users.size === 0) throw new ConfigError(`--web-users ${web.usersFile}: no user in it (add one with: mta-server passwd USER --users ${web.usersFile})`);
  await warnIfReadableByOthers([['web-users', web.usersFile], ...(web.tls ? ([['web-tls-key', web.tls.keyFile]] as const) : [])], logger);
  const tls = web.tls ? { cert: await readTlsFile(web.tls.certFile, '--web-cert'), key: await readTlsFile(web.tls.keyFile, '--web-key') } : null;
  const answers: Record<WebThreadQuestion, () => Promise<WebThreadAnswer>> = {
    deliveryTotals: () => deliveryTotals(registry),
    dkimStatus: async () => [...keyring.activeKeys().values()].flat().map((key) => ({ domain: key.domain, selector: key.selector, type: key.type, state: key.state })),
    sites: async () => deps.sites(),
  };
  return () => {
    const data: WebThreadData = {
      spool: config.spool,
      host: web.address.host,
      port: web.address.port,
      hostnames: web.hostnames,
      trustedProxies: web.trustedProxies,
      maxConnections: web.maxConnections,
      idleTimeout: web.idleTimeout,
      usersFile: web.usersFile,
      tls,
      inboxDir: config.inboxDir,
      logLevel: logger.level,
    };
    const thread = new Worker(new URL('./web-thread.js', import.meta.url), { workerData: data });
    // The lines come formatted (and redacted) by the thread's own pino: they go to this logger's destination as
    // they are, between whole lines of ours (stdout, --log-file or pino-pretty).
    const destination = (logger as unknown as Record<symbol, { write(line: string): void }>)[pino.symbols.streamSym]!;
    const post = (message: ToWebThread) => thread.postMessage(message);
    const flag = `--web ${formatAddress(web.address.host, web.address.port)}`;
    // After a failure or a close, the thread's end says nothing new.
    let ended = false;
    const exited = new Promise<number>((resolve) => thread.once('exit', resolve));
    return new Promise<WebUi>((resolve, reject) => {
      let listening = false;
      thread.on('message', (message: FromWebThread) => {
        if (message.kind === 'log') destination.write(message.line);
        else if (message.kind === 'ask') {
          answers[message.question]().then(
            (value) => post({ kind: 'answer', id: message.id, value }),
            (error: Error) => post({ kind: 'answer', id: message.id, error: error.message }),
          );
        } else if (message.kind === 'failed') reject(new Error(`${flag}: ${message.message}`));
        else {
          listening = true;
          const url = `${tls ? 'https' : 'http'}://${formatAddress(message.host, message.port)}/`;
          logger.info({ event: 'web-listening', url, users: users.size }, `web UI on ${url}`);
          if (!isLoopback(message.host)) logger.warn({ event: 'web-exposed', host: message.host, port: message.port }, `the web UI listens on ${message.host}, beyond loopback: put it behind TLS (--web-cert) and a firewall`);
          resolve({
            host: message.host,
            port: message.port,
            reload: () => post({ kind: 'reload' }),
            close: async () => {
              ended = true;
              post({ kind: 'close' });
              const timer = setTimeout(() => void thread.terminate(), CLOSE_TIMEOUT_MS);
              await exited;
              clearTimeout(timer);
            },
          });
        }
      });
      thread.on('error', (error) => {
        if (!listening) return reject(new Error(`${flag}: ${error.message}`, { cause: error }));
        ended = true;
        logger.error({ event: 'web-thread-failed', err: error }, 'the web UI thread failed; delivery goes on without the UI');
      });
      void exited.then((code) => {
        if (!listening) reject(new Error(`${flag}: the web UI thread exited with ${code}`));
        else if (!ended) logger.error({ event: 'web-thread-exited', code }, 'the web UI thread ended; delivery goes on without the UI');
      });
    });
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
