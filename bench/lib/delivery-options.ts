import { integer, parseFlags, scenarioSet, UsageError } from './options.js';

/** The same class as intake's UsageError: thrown for a bad command line (message only, no stack). */
export { UsageError as DeliveryUsageError } from './options.js';

export const DELIVERY_SCENARIOS = ['drain', 'drain-rsa', 'drain-ed25519', 'drain-both', 'postfix', 'deferred', 'suspended', 'literal', 'e2e'] as const;
/** The drains mta-queue runs with DKIM keys, and which keys (bench/lib/dkim-keys.ts). */
export const SIGNED_DRAINS = { 'drain-rsa': 'rsa', 'drain-ed25519': 'ed25519', 'drain-both': 'both' } as const;
/** What runs without --scenarios: `literal` is a diagnostic; the signed drains, e2e and `suspended` (a million files) are asked for by name. */
const DEFAULT_SCENARIOS = ['drain', 'postfix', 'deferred'];
export type DeliveryScenario = (typeof DELIVERY_SCENARIOS)[number];
export const SINK_KINDS = ['auto', 'smtp-sink', 'node'] as const;
export type SinkKind = (typeof SINK_KINDS)[number];

export interface DeliveryBenchOptions {
  messages: number;
  runs: number;
  processes: number[];
  concurrency: number;
  /** --max-connections-per-destination for mta-queue; null leaves mta-queue's own default. */
  perDestination: number | null;
  size: number;
  timeLimitMs: number;
  scenarios: Set<DeliveryScenario>;
  sink: SinkKind;
  /** Waiting messages of the deferred and suspended scenarios, and their idle window; null: each scenario's own. */
  deferred: number | null;
  idleSeconds: number | null;
  latencyMessages: number;
  postfixLog: boolean;
  /** e2e: messages smtp-source sends per measurement, its sessions, and unmeasured messages sent first. */
  e2eMessages: number;
  e2eSessions: number;
  warmup: number;
  /** Messages per measurement routed to the capturing sink to have their DKIM signatures verified. */
  checkMessages: number;
  cpuProfDir: string | null;
  /** --policy FILE for the drains' mta-queue processes (drain, literal, the signed drains); null: none. */
  policy: string | null;
  /** A checkout whose dist/cli/mta-queue.js is measured (another build, for before/after); null: this repo. */
  mtaRoot: string | null;
  json: boolean;
}

export const DELIVERY_USAGE = `Usage: npm run bench:delivery -- [options]

  --messages N          messages each drain delivers [20000]
  --runs N              repeat every drain N times; msgs/s is the median [1]
  --processes LIST      mta-queue process counts to measure, all on one spool [1,2]
  --concurrency N       mta-queue --concurrency per process; also Postfix's destination concurrency limit [20]
  --per-destination N   mta-queue --max-connections-per-destination; "default" leaves mta-queue's own [= --concurrency]
  --size BYTES          message size [5000]
  --time-limit SEC      longest one drain may take; it then stops and says so [300]
  --scenarios LIST      any of ${DELIVERY_SCENARIOS.join(',')} [${DEFAULT_SCENARIOS.join(',')}]
                          drain     mta-queue drains N spooled messages to the sink MX
                          postfix   a private Postfix instance drains N held messages to the same sink (needs root)
                          deferred  one mta-queue with --deferred messages due in 1 h: start-up, idle CPU, latency
                          suspended one mta-queue with --deferred messages held back for a suspended site (a
                                    [TSS04] back-off): idle CPU over a minute, latency of new mail to the sink, RSS
                          literal   one mta-queue drains N messages to b@[127.0.0.2]: no DNS look-ups (like Postfix's
                                    [relayhost]), to see what DNS costs
                          drain-rsa, drain-ed25519, drain-both
                                    the drain with mta-queue DKIM-signing every message (From: bench.test) with an
                                    rsa-2048 key, an ed25519 key, or both; compared with the unsigned drain
                          e2e       end to end with signing: smtp-source → mta-server → mta-queue (rsa-2048) → sink,
                                    against Postfix with the OpenDKIM milter (rsa-2048) in the same run (needs root,
                                    the postfix and opendkim packages)
  --sink KIND           auto (smtp-sink if installed, else node), smtp-sink or node [auto]
  --deferred N          waiting messages in the deferred and suspended scenarios [100000; suspended: 1000000]
  --idle-seconds SEC    how long idle CPU is measured in those scenarios [10; suspended: 60]
  --latency-messages N  new messages put in one at a time while the daemon idles [5]
  --policy FILE         run the drains' mta-queue with --policy FILE (e.g. bench/drain-policy.toml: limits that do
                          not bind), checked first with that mta-queue's policy check
  --e2e-messages N      e2e: messages smtp-source sends per measurement [10000]
  --e2e-sessions N      e2e: smtp-source sessions [10]
  --warmup N            e2e: unmeasured messages sent through each system first [1000]
  --check-messages N    messages per signed measurement sent to a capturing sink and DKIM-verified [5]
  --postfix-log         let the Postfix instance log to a file (maillog_file; off by default, like --log-level warn)
  --cpu-prof DIR        run the drain's mta-queue processes with node --cpu-prof, profiles written to DIR
  --mta-root DIR        measure DIR/dist/cli/mta-queue.js (another checkout, built) instead of this repo's
  --json                print the results as JSON on stdout (progress still goes to stderr)
  -h, --help            this text
`;

export function parseDeliveryOptions(argv: string[]): DeliveryBenchOptions | 'help' {
  const values = parseFlags(
    argv,
    [
      'messages', 'runs', 'processes', 'concurrency', 'per-destination', 'size', 'time-limit', 'scenarios', 'sink', 'deferred', 'idle-seconds', 'latency-messages', 'cpu-prof', 'mta-root', 'policy',
      'e2e-messages', 'e2e-sessions', 'warmup', 'check-messages',
    ],
    ['postfix-log', 'json'],
  );
  if (values.help) return 'help';
  const concurrency = integer(values.concurrency ?? '20', '--concurrency', 1, 1000);
  const scenarios = scenarioSet(values.scenarios ?? DEFAULT_SCENARIOS.join(','), DELIVERY_SCENARIOS);
  const sink = values.sink ?? 'auto';
  if (!(SINK_KINDS as readonly string[]).includes(sink)) throw new UsageError(`--sink: "${sink}" is not one of ${SINK_KINDS.join(', ')}`);
  const perDestination = values['per-destination'] ?? String(concurrency);
  const size = integer(values.size ?? '5000', '--size', 300, 10 * 1024 * 1024);
  return {
    messages: integer(values.messages ?? '20000', '--messages', 1, 1_000_000),
    runs: integer(values.runs ?? '1', '--runs', 1, 20),
    processes: (values.processes ?? '1,2').split(',').map((text) => integer(text, '--processes', 1, 16)),
    concurrency,
    perDestination: perDestination === 'default' ? null : integer(perDestination, '--per-destination', 1, 1000),
    size,
    timeLimitMs: integer(values['time-limit'] ?? '300', '--time-limit', 1, 3600) * 1000,
    scenarios,
    sink: sink as SinkKind,
    deferred: values.deferred === undefined ? null : integer(values.deferred, '--deferred', 0, 2_000_000),
    idleSeconds: values['idle-seconds'] === undefined ? null : integer(values['idle-seconds'], '--idle-seconds', 1, 600),
    latencyMessages: integer(values['latency-messages'] ?? '5', '--latency-messages', 1, 100),
    postfixLog: values['postfix-log'] ?? false,
    e2eMessages: integer(values['e2e-messages'] ?? '10000', '--e2e-messages', 1, 1_000_000),
    e2eSessions: integer(values['e2e-sessions'] ?? '10', '--e2e-sessions', 1, 500),
    warmup: integer(values.warmup ?? '1000', '--warmup', 0, 100_000),
    checkMessages: integer(values['check-messages'] ?? '5', '--check-messages', 1, 100),
    cpuProfDir: values['cpu-prof'] ?? null,
    mtaRoot: values['mta-root'] ?? null,
    policy: values.policy ?? null,
    json: values.json ?? false,
  };
}
