import { parseRetrySchedule } from '../../src/config/retry-schedule.js';
import type { ProviderKey } from './campaign-plan.js';
import { integer, parseFlags, scenarioSet, UsageError } from './options.js';
import type { ProviderLimits, WindowLimit } from './provider-mx.js';

export { UsageError as CampaignUsageError } from './options.js';

export const CAMPAIGN_SYSTEMS = ['mta-relay', 'postfix'] as const;
export type CampaignSystem = (typeof CAMPAIGN_SYSTEMS)[number];

export interface CampaignOptions {
  providers: Record<ProviderKey, { limits: ProviderLimits; messages: number }>;
  systems: Set<CampaignSystem>;
  runs: number;
  size: number;
  timeLimitMs: number;
  retrySchedule: string;
  /** A checkout whose dist/cli/mta-queue.js runs (another build, before/after); null: this repo. */
  mtaRoot: string | null;
  json: boolean;
}

/** shared/design/peers.md's campaign: A 20 per 10 s and 20 per connection, B 10 per 10 s, C 50 per connection. */
const DEFAULTS: Record<ProviderKey, { rate: string; perConnection: string; messages: string }> = {
  a: { rate: '20/10s', perConnection: '20', messages: '200' },
  b: { rate: '10/10s', perConnection: 'none', messages: '100' },
  c: { rate: 'none', perConnection: '50', messages: '400' },
};

export const CAMPAIGN_USAGE = `Usage: npm run bench:campaign -- [options]

  --messages A,B,C          messages to providers A, B and C [${DEFAULTS.a.messages},${DEFAULTS.b.messages},${DEFAULTS.c.messages}]
  --a-rate N/Ws|none        provider A (Yahoo-like): per sending address, N at once, refilled at N per W s [${DEFAULTS.a.rate}]
  --a-per-connection N|none provider A: transactions per connection, then 421 and close [${DEFAULTS.a.perConnection}]
  --b-rate, --b-per-connection   provider B (Microsoft-like) [${DEFAULTS.b.rate}, ${DEFAULTS.b.perConnection}]
  --c-rate, --c-per-connection   provider C (Gmail-like) [${DEFAULTS.c.rate}, ${DEFAULTS.c.perConnection}]
  --scenarios LIST          any of ${CAMPAIGN_SYSTEMS.join(',')} [both]
                              mta-relay  mta-queue on a spool holding the campaign, with --policy FILE stating the
                                         limits when this build has --policy
                              postfix    a private Postfix 3.7, default settings, transport map to the same MXes
                                         (needs root and the Debian postfix package)
  --runs N                  repeat the campaign N times per system, the order alternating [1]
  --size BYTES              message size [5000]
  --time-limit SEC          longest one campaign may take; it then stops and reports what arrived [300]
  --retry-schedule LIST     mta-queue --retry-schedule (Postfix keeps its own defaults) [3s]
  --mta-root DIR            measure DIR/dist/cli/mta-queue.js (another checkout, built) instead of this repo's
  --json                    print the results as JSON on stdout (progress still goes to stderr)
  -h, --help                this text
`;

/** `20/10s` → 20 per 10,000 ms; `none` → null. */
function windowLimit(text: string, flag: string): WindowLimit | null {
  if (text === 'none') return null;
  const match = /^(\d{1,6})\/(\d{1,5})s$/.exec(text.trim());
  const count = Number(match?.[1]);
  const seconds = Number(match?.[2]);
  if (!match || count < 1 || seconds < 1) throw new UsageError(`${flag}: "${text}" is not a limit like 20/10s (N transactions per W seconds, both ≥ 1) or none`);
  return { count, windowMs: seconds * 1000 };
}

function perConnection(text: string, flag: string): number | null {
  return text === 'none' ? null : integer(text, flag, 1, 100_000);
}

export function parseCampaignOptions(argv: string[]): CampaignOptions | 'help' {
  const keys = ['a', 'b', 'c'] as const;
  const values = parseFlags(
    argv,
    ['messages', 'scenarios', 'runs', 'size', 'time-limit', 'retry-schedule', 'mta-root', ...keys.flatMap((key) => [`${key}-rate`, `${key}-per-connection`] as const)],
    ['json'],
  );
  if (values.help) return 'help';
  const counts = (values.messages ?? keys.map((key) => DEFAULTS[key].messages).join(',')).split(',');
  if (counts.length !== keys.length) throw new UsageError(`--messages: "${values.messages}" is not three counts (A,B,C)`);
  const providers = Object.fromEntries(
    keys.map((key, index) => [
      key,
      {
        messages: integer(counts[index]!, '--messages', 1, 100_000),
        limits: {
          rate: windowLimit(values[`${key}-rate`] ?? DEFAULTS[key].rate, `--${key}-rate`),
          perConnection: perConnection(values[`${key}-per-connection`] ?? DEFAULTS[key].perConnection, `--${key}-per-connection`),
        },
      },
    ]),
  ) as CampaignOptions['providers'];
  const retrySchedule = values['retry-schedule'] ?? '3s';
  // mta-queue's own check, here: a typo must not surface only after a whole Postfix campaign.
  try {
    parseRetrySchedule(retrySchedule);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return {
    providers,
    systems: scenarioSet(values.scenarios ?? CAMPAIGN_SYSTEMS.join(','), CAMPAIGN_SYSTEMS),
    runs: integer(values.runs ?? '1', '--runs', 1, 20),
    size: integer(values.size ?? '5000', '--size', 300, 1024 * 1024 - 1024),
    timeLimitMs: integer(values['time-limit'] ?? '300', '--time-limit', 1, 3600) * 1000,
    retrySchedule,
    mtaRoot: values['mta-root'] ?? null,
    json: values.json ?? false,
  };
}
