import { parseArgs } from 'node:util';

export const SCENARIOS = ['plain', 'smtp-source', 'postfix', 'tls', 'rss'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface BenchOptions {
  messages: number;
  sessions: number[];
  runs: number;
  size: number;
  warmup: number;
  timeLimitMs: number;
  scenarios: Set<Scenario>;
  retries: number;
  maxOthersPercent: number;
  rssSessions: number;
  rssSize: number;
  json: boolean;
  /** Directory whose dist/cli/mta-server.js is measured; null = this checkout. */
  mtaRoot: string | null;
  cpuProfDir: string | null;
}

export const USAGE = `Usage: npm run bench:intake -- [options]

  --messages N        messages per measurement, over all sessions [5000]
  --sessions LIST     session counts to measure [1,10,50]
  --runs N            repeat every measurement N times; msgs/s is the median [1]
  --size BYTES        message size for the throughput scenarios [5000]
  --warmup N          unmeasured messages sent first in every measurement, same sessions [2000]
                      (a fresh mta-server needs ~2000 messages before V8 has compiled its hot paths)
  --time-limit SEC    longest one measurement may take; it then stops and says so [300]
  --retries N         measure again, at most N times, when other processes were busy meanwhile [1]
  --max-others PCT    "busy": other processes used at least PCT % of one core during a measurement [25]
  --scenarios LIST    any of ${SCENARIOS.join(',')} [all]
                        plain        mta-server, plain SMTP from 127.0.0.0/8, the benchmark's own client
                        smtp-source  mta-server driven by Postfix's smtp-source (if installed)
                        postfix      a private Postfix instance (queue on hold), same clients (needs root)
                        tls          mta-server, STARTTLS + AUTH, nodemailer pooled transport
                        rss          mta-server peak RSS while many sessions send one large message each
  --rss-sessions N    concurrent sessions in the rss scenario [50]
  --rss-size SIZE     message size in the rss scenario, bytes or 10m [10m]
  --mta-root DIR      measure DIR/dist/cli/mta-server.js instead of this checkout's (a built snapshot,
                      e.g. of HEAD, that nobody rebuilds while the benchmark runs)
  --cpu-prof DIR      run every mta-server with node --cpu-prof, profiles written to DIR
  --json              print the results as JSON on stdout (progress still goes to stderr)
  -h, --help          this text
`;

export class UsageError extends Error {}

/**
 * A benchmark's flags from the command line, or null once `--help` has printed the usage. A bad flag prints one
 * line and the usage on stderr and exits 2.
 */
export function commandLineOptions<T>(bench: string, parse: (argv: string[]) => T | 'help', usage: string): T | null {
  let options: T | 'help';
  try {
    options = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${bench}: ${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  if (options !== 'help') return options;
  process.stdout.write(usage);
  return null;
}

export function parseBenchOptions(argv: string[]): BenchOptions | 'help' {
  const values = parseFlags(argv, ['messages', 'sessions', 'runs', 'size', 'warmup', 'time-limit', 'scenarios', 'retries', 'max-others', 'rss-sessions', 'rss-size', 'cpu-prof', 'mta-root'], ['json']);
  if (values.help) return 'help';
  const messages = integer(values.messages ?? '5000', '--messages', 1, 10_000_000);
  const sessions = (values.sessions ?? '1,10,50').split(',').map((text) => integer(text, '--sessions', 1, 1000));
  const scenarios = scenarioSet(values.scenarios ?? SCENARIOS.join(','), SCENARIOS);
  return {
    messages,
    sessions,
    runs: integer(values.runs ?? '1', '--runs', 1, 100),
    size: size(values.size ?? '5000', '--size'),
    warmup: integer(values.warmup ?? '2000', '--warmup', 0, 10_000_000),
    timeLimitMs: integer(values['time-limit'] ?? '300', '--time-limit', 1, 86_400) * 1000,
    scenarios,
    retries: integer(values.retries ?? '1', '--retries', 0, 10),
    maxOthersPercent: integer(values['max-others'] ?? '25', '--max-others', 1, 10_000),
    rssSessions: integer(values['rss-sessions'] ?? '50', '--rss-sessions', 1, 1000),
    rssSize: size(values['rss-size'] ?? '10m', '--rss-size'),
    json: values.json ?? false,
    mtaRoot: values['mta-root'] ?? null,
    cpuProfDir: values['cpu-prof'] ?? null,
  };
}

/**
 * `--name VALUE` flags (`strings`), `--name` switches (`booleans`) and -h/--help, strictly: an unknown flag
 * throws. Shared by both benchmarks' command lines.
 */
export function parseFlags<S extends string, B extends string>(argv: string[], strings: readonly S[], booleans: readonly B[]): { [K in S]?: string } & { [K in B | 'help']?: boolean } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const name of strings) options[name] = { type: 'string' };
  for (const name of booleans) options[name] = { type: 'boolean' };
  options.help = { type: 'boolean', short: 'h' };
  return parseArgs({ args: argv, options, strict: true }).values as { [K in S]?: string } & { [K in B | 'help']?: boolean };
}

/** The comma-separated LIST of --scenarios, every name one of `known`. */
export function scenarioSet<T extends string>(text: string, known: readonly T[]): Set<T> {
  const scenarios = new Set(text.split(',').map((name) => name.trim()));
  for (const name of scenarios) if (!(known as readonly string[]).includes(name)) throw new UsageError(`--scenarios: unknown "${name}" (use ${known.join(', ')})`);
  return scenarios as Set<T>;
}

/** A whole number from `min` to `max`, given as `flag`'s value. */
export function integer(text: string, flag: string, min: number, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`${flag}: "${text}" is not a whole number from ${min} to ${max}`);
  return value;
}

function size(text: string, flag: string): number {
  const match = /^(\d+)([km]?)$/i.exec(text.trim());
  if (!match) throw new UsageError(`${flag}: "${text}" is not a size (bytes, 64k or 10m)`);
  const bytes = Number(match[1]) * ({ '': 1, k: 1024, m: 1024 ** 2 } as Record<string, number>)[match[2]!.toLowerCase()]!;
  if (bytes < 300 || bytes > 20 * 1024 ** 2) throw new UsageError(`${flag}: ${bytes} bytes is outside 300 bytes .. 20m`);
  return bytes;
}
