import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Registry, type LabelValues } from 'prom-client';

export type { Registry };

/** Where `--metrics` serves: loopback unless the operator wrote another address. */
export interface MetricsAddress {
  host: string;
  port: number;
}

/**
 * A daemon's own registry, never prom-client's global one, so several daemons (or tests) can share a process.
 * Carries the process metrics every Prometheus exporter has (CPU, memory, event-loop lag, GC, handles).
 */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** One series of a TallyCounter: what the hot path holds and increments. */
export class Tally {
  n = 0;
  inc(by = 1): void {
    this.n += by;
  }
}

/**
 * A Prometheus counter counted as plain numbers and handed to prom-client when scraped. prom-client's own `inc`,
 * even on a child bound with `.labels(...)`, hashes and validates the label set on every call (~300 ns, and
 * garbage); a Tally's is one addition. Series are bound once, up front or on first use, and start at 0.
 */
export class TallyCounter<L extends string = string> {
  private readonly series: { labels: LabelValues<L>; tally: Tally; exported: number }[] = [];
  private readonly counter: Counter<L>;

  constructor(config: { name: string; help: string; labelNames?: readonly L[]; registry: Registry }) {
    const series = this.series;
    this.counter = new Counter<L>({
      name: config.name,
      help: config.help,
      labelNames: config.labelNames ?? [],
      registers: [config.registry],
      collect() {
        for (const entry of series) {
          if (entry.tally.n === entry.exported) continue;
          this.inc(entry.labels, entry.tally.n - entry.exported);
          entry.exported = entry.tally.n;
        }
      },
    });
  }

  bind(labels = {} as LabelValues<L>): Tally {
    const tally = new Tally();
    this.series.push({ labels, tally, exported: 0 });
    this.counter.inc(labels, 0);
    return tally;
  }
}

export interface MetricsServer {
  /** `127.0.0.1:9587` or `[::1]:9587`, with the bound port (useful when port 0 was asked for). */
  address: string;
  close(): Promise<void>;
}

export function formatAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function isLoopback(host: string): boolean {
  return net.isIPv4(host) ? host.startsWith('127.') : host === '::1' || /^::ffff:127\./i.test(host);
}

/**
 * `GET /metrics`: Prometheus text from the registry, gathered at scrape time. `GET /healthz`: `200 ok` while
 * `healthy()` says so, `503 stopping` once the daemon is shutting down. Anything else is 404.
 */
export async function startMetricsServer(
  registry: Registry,
  address: MetricsAddress,
  hooks: { healthy(): boolean; onError(error: Error): void },
): Promise<MetricsServer> {
  const { healthy } = hooks;
  const server = http.createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') return reply(response, 405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') return healthy() ? reply(response, 200, 'text/plain', 'ok\n') : reply(response, 503, 'text/plain', 'stopping\n');
    if (path !== '/metrics') return reply(response, 404, 'text/plain', 'not found: try /metrics or /healthz\n');
    registry.metrics().then(
      (text) => reply(response, 200, registry.contentType, text),
      (error: Error) => reply(response, 500, 'text/plain', `collecting metrics failed: ${error.message}\n`),
    );
  });
  // A scraper that keeps its connection open must not hold up the daemon's shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error) => reject(new Error(`--metrics ${formatAddress(address.host, address.port)}: ${error.message}`));
    server.once('error', failed);
    server.listen(address.port, address.host, () => {
      server.removeListener('error', failed);
      resolve();
    });
  });
  server.on('error', hooks.onError);
  const bound = server.address() as AddressInfo;
  return {
    address: formatAddress(address.host, bound.port),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function reply(response: http.ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  response.end(body);
}
