import { parentPort, workerData } from 'node:worker_threads';
import { UserStore } from '../config/user-store.js';
import { systemClock } from '../shared/clock.js';
import { createLogger } from '../shared/logger.js';
import type { SitesReport } from '../shared/site-status.js';
import { spoolLayout } from '../spool/layout.js';
import { QueueAdmin } from '../spool/queue-admin.js';
import type { OutcomeTotals } from '../web/outcome-history.js';
import { startWebServer, type DkimDomainStatus, type WebOptions, type WebServer } from '../web/web-server.js';
import { newLeaseToken, procProcessTable } from './process-table.js';

/**
 * The web UI's thread (`mta-queue --web`): fastify, the templates, the queue index and every request run here, so
 * a page someone is looking at takes nothing from the delivery event loop but the few messages below. It is the
 * same process, so its QueueAdmin owns claims under this process's pid, with a lease token of its own, exactly as
 * before. web-ui.ts starts it (through web-thread.ts) and answers it.
 */

/** What the main thread hands over: all of it already checked there (usage errors exit 2 before delivery starts). */
export interface WebThreadData extends Pick<WebOptions, 'host' | 'port' | 'hostnames' | 'trustedProxies' | 'maxConnections' | 'idleTimeout'> {
  spool: string;
  usersFile: string;
  tls: { cert: Uint8Array; key: Uint8Array } | null;
  inboxDir: string | null;
  logLevel: string;
}

/** The main thread's state the UI shows: the delivery counters (for the chart), the DKIM keys, the busy and backed-off sites. */
export type WebThreadQuestion = 'deliveryTotals' | 'dkimStatus' | 'sites';

export type WebThreadAnswer = OutcomeTotals | DkimDomainStatus[] | SitesReport;

export type FromWebThread =
  | { kind: 'listening'; host: string; port: number }
  | { kind: 'failed'; message: string }
  /** One JSON log line, for the main thread's log destination. */
  | { kind: 'log'; line: string }
  | { kind: 'ask'; id: number; question: WebThreadQuestion };

export type ToWebThread =
  | { kind: 'answer'; id: number; value?: WebThreadAnswer; error?: string }
  /** SIGHUP: the users file again. */
  | { kind: 'reload' }
  | { kind: 'close' };

const port = parentPort!;
const data = workerData as WebThreadData;
const send = (message: FromWebThread) => port.postMessage(message);
const logger = createLogger({ level: data.logLevel, destination: { write: (line: string) => send({ kind: 'log', line }) } });

const waiting = new Map<number, { resolve: (value: never) => void; reject: (error: Error) => void }>();
let lastQuestion = 0;
function ask<T>(question: WebThreadQuestion): Promise<T> {
  const id = ++lastQuestion;
  return new Promise<T>((resolve, reject) => {
    waiting.set(id, { resolve: resolve as (value: never) => void, reject });
    send({ kind: 'ask', id, question });
  });
}

async function start(): Promise<{ server: WebServer; users: UserStore }> {
  const layout = spoolLayout(data.spool);
  const users = await UserStore.load(data.usersFile);
  const tls = data.tls ? { cert: Buffer.from(data.tls.cert), key: Buffer.from(data.tls.key) } : null;
  const server = await startWebServer(
    // The BlockList of trustedProxies arrives as one: Node clones it for the thread.
    { host: data.host, port: data.port, tls, hostnames: data.hostnames, trustedProxies: data.trustedProxies, maxConnections: data.maxConnections, idleTimeout: data.idleTimeout },
    {
      layout,
      users,
      logger,
      clock: systemClock,
      makeAdmin: (operator) => new QueueAdmin(layout, logger.child({ operator, via: 'web' }), procProcessTable(), newLeaseToken()),
      deliveryTotals: () => ask<OutcomeTotals>('deliveryTotals'),
      dkimStatus: () => ask<DkimDomainStatus[]>('dkimStatus'),
      sites: () => ask<SitesReport>('sites'),
      // mailparser (subjects) and its charsets are loaded only for an inbox: a tenth of a second of CPU otherwise.
      ...(data.inboxDir ? { inbox: new (await import('../inbox/inbox-store.js')).InboxStore(data.inboxDir) } : {}),
    },
  );
  return { server, users };
}

async function reload(users: UserStore, server: WebServer): Promise<void> {
  const count = await users.reload().catch((error: unknown) => {
    logger.error({ event: 'web-users-reload-failed', err: error }, 'web users file not reloaded; the previous one stays');
    return null;
  });
  if (count === null) return;
  server.usersReloaded();
  logger.info({ event: 'web-users-reloaded', users: count }, 'web users file reloaded');
}

const started = start();
port.on('message', (message: ToWebThread) => {
  if (message.kind === 'answer') {
    const question = waiting.get(message.id);
    waiting.delete(message.id);
    if (message.error !== undefined) question?.reject(new Error(message.error));
    else question?.resolve(message.value as never);
  } else if (message.kind === 'reload') {
    void started.then(({ server, users }) => reload(users, server));
  } else {
    // Once the server is closed nothing is left on this thread's loop, and the thread ends.
    void started.then(({ server }) => server.close()).finally(() => port.unref());
  }
});
started.then(
  ({ server }) => send({ kind: 'listening', host: server.host, port: server.port }),
  (error: Error) => {
    send({ kind: 'failed', message: error.message });
    port.unref();
  },
);
