import { integer, parseFlags, scenarioSet, UsageError } from './options.js';

export { UsageError as WebUsageError } from './options.js';

export const WEB_SCENARIOS = ['latency', 'drain', 'drain-idle'] as const;
export type WebScenario = (typeof WEB_SCENARIOS)[number];
const DEFAULT_SCENARIOS: WebScenario[] = ['latency', 'drain'];
export const SINK_KINDS = ['auto', 'smtp-sink', 'node'] as const;
export type SinkKind = (typeof SINK_KINDS)[number];

export interface WebBenchOptions {
  /** Messages per drain. */
  messages: number;
  /** Deferred messages queued for the latency scenario. */
  queued: number;
  /** Measured requests per latency row. */
  requests: number;
  runs: number;
  scenarios: Set<WebScenario>;
  concurrency: number;
  /** --max-connections-per-destination (= concurrency, as bench:delivery's default). */
  perDestination: number | null;
  size: number;
  timeLimitMs: number;
  /** Latency: the request time one row may spend before it stops short of `requests`. */
  rowTimeLimitMs: number;
  sink: SinkKind;
  /** A checkout whose dist/cli/mta-queue.js is measured; null: this repo. */
  mtaRoot: string | null;
  cpuProfDir: string | null;
  json: boolean;
}

export const WEB_USAGE = `Usage: npm run bench:web -- [options]

  --queued N            latency: deferred messages in the queue the web UI lists [100000]
  --requests N          latency: measured requests per row, one client, sequential [200]
  --messages N          drain: messages each drain delivers [20000]
  --runs N              drain: pairs of drains (plain, polled; order alternated); medians reported [5]
  --scenarios LIST      any of ${WEB_SCENARIOS.join(',')} [${DEFAULT_SCENARIOS.join(',')}]
                          latency     one mta-queue --web with --queued deferred messages: p50/p95/max of
                                      the queue page and API (first page, deep cursor, filters, search)
                          drain       bench:delivery's drain, plain (no --web) and with --web and a
                                      browser-like poller (GET /, /queue, /api/stats every second)
                          drain-idle  adds a third drain per run: --web on, nobody polling
  --concurrency N       mta-queue --concurrency and --max-connections-per-destination in the drains [20]
  --size BYTES          drain message size [5000]
  --time-limit SEC      longest one drain may take; it then stops and says so [300]
  --row-time-limit SEC  latency: request time one row may spend; it then stops short of --requests [120]
  --sink KIND           auto (smtp-sink if installed, else node), smtp-sink or node [auto]
  --mta-root DIR        measure DIR/dist/cli/mta-queue.js (another checkout, built) instead of this repo's
  --cpu-prof DIR        run the drains' mta-queue processes with node --cpu-prof, profiles written to DIR
  --json                print the results as JSON on stdout (progress still goes to stderr)
  -h, --help            this text
`;

export function parseWebOptions(argv: string[]): WebBenchOptions | 'help' {
  const values = parseFlags(argv, ['messages', 'queued', 'requests', 'runs', 'scenarios', 'concurrency', 'size', 'time-limit', 'row-time-limit', 'sink', 'mta-root', 'cpu-prof'], ['json']);
  if (values.help) return 'help';
  const sink = values.sink ?? 'auto';
  if (!(SINK_KINDS as readonly string[]).includes(sink)) throw new UsageError(`--sink: "${sink}" is not one of ${SINK_KINDS.join(', ')}`);
  const concurrency = integer(values.concurrency ?? '20', '--concurrency', 1, 1000);
  return {
    messages: integer(values.messages ?? '20000', '--messages', 1, 1_000_000),
    queued: integer(values.queued ?? '100000', '--queued', 1, 2_000_000),
    requests: integer(values.requests ?? '200', '--requests', 1, 10_000),
    runs: integer(values.runs ?? '5', '--runs', 1, 20),
    scenarios: scenarioSet(values.scenarios ?? DEFAULT_SCENARIOS.join(','), WEB_SCENARIOS),
    concurrency,
    perDestination: concurrency,
    size: integer(values.size ?? '5000', '--size', 300, 10 * 1024 * 1024),
    timeLimitMs: integer(values['time-limit'] ?? '300', '--time-limit', 1, 3600) * 1000,
    rowTimeLimitMs: integer(values['row-time-limit'] ?? '120', '--row-time-limit', 1, 3600) * 1000,
    sink: sink as SinkKind,
    mtaRoot: values['mta-root'] ?? null,
    cpuProfDir: values['cpu-prof'] ?? null,
    json: values.json ?? false,
  };
}
