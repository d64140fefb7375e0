/**
 * Campaign benchmark (issue 23, "Send the way big providers accept"): one campaign to three simulated providers
 * on loopback, each enforcing its limits, through mta-queue (with --policy stating those limits, once the daemon
 * takes it) and through Postfix with its default settings, in the same run. bench/README.md says how to read it.
 */
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDnsServer } from '../test/helpers/dns-server.js';
import { BenchRun } from './lib/bench-run.js';
import { CAMPAIGN_USAGE, CampaignUsageError, parseCampaignOptions, type CampaignSystem } from './lib/campaign-options.js';
import { campaignMessages, campaignPolicy, campaignProviders, campaignZone } from './lib/campaign-plan.js';
import { campaignTotals, renderCampaignReport, summarizeSystems, type CampaignReport } from './lib/campaign-report.js';
import { measureCampaign, type CampaignContext } from './lib/campaign-run.js';
import { describeEnvironment } from './lib/environment.js';
import { buildMessage } from './lib/message.js';
import { mtaQueueHasFlag, policyProblem } from './lib/mta-drain.js';
import { commandLineOptions } from './lib/options.js';
import { detectPostfix } from './lib/private-postfix.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const progress = (text: string) => process.stderr.write(`${text}\n`);
const benchRun = new BenchRun(progress);
const { cleanups, checkInterrupted } = benchRun;

async function main(): Promise<void> {
  const options = commandLineOptions('bench:campaign', parseCampaignOptions, CAMPAIGN_USAGE);
  if (!options) return;
  const mtaRoot = path.resolve(options.mtaRoot ?? REPO_ROOT);
  const mtaQueue = path.join(mtaRoot, 'dist/cli/mta-queue.js');
  try {
    await access(mtaQueue);
  } catch {
    process.stderr.write(`bench:campaign: ${mtaQueue} is missing: run \`npm run build\` (npm run bench:campaign does)\n`);
    process.exit(2);
  }
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'mta-bench-campaign-'));
  cleanups.add(() => rm(workDir, { recursive: true, force: true }));
  const notes: string[] = [];

  const providers = campaignProviders(options.providers);
  const messages = campaignMessages(providers);
  const policyText = campaignPolicy(providers);
  const policyPath = path.join(workDir, 'policy.toml');
  await writeFile(policyPath, policyText, { mode: 0o600 });
  const policy = await policyFor(mtaRoot, policyPath);

  const postfix = options.systems.has('postfix') ? await detectPostfix() : { ok: false as const, reason: 'not asked for (--scenarios)' };
  const systems = [...options.systems].filter((system) => system !== 'postfix' || postfix.ok);
  if (!postfix.ok && options.systems.has('postfix')) notes.push(`Postfix not measured: ${postfix.reason}`);
  if (systems.length === 0) throw new CampaignUsageError('nothing to measure (no Postfix here, and --scenarios postfix only)');

  const dns = await startDnsServer(campaignZone(providers));
  cleanups.add(() => dns.close());
  const context: CampaignContext = {
    mtaRoot,
    workDir,
    dns,
    providers,
    messages,
    message: buildMessage(options.size, 'mta-relay campaign benchmark'),
    timeLimitMs: options.timeLimitMs,
    retrySchedule: options.retrySchedule,
    policyFile: policy.file,
    cleanups,
    progress,
    checkInterrupted,
  };
  const labels: Record<CampaignSystem, string> = {
    'mta-relay': policy.file ? 'mta-relay (mta-queue --policy)' : 'mta-relay (mta-queue, no --policy)',
    postfix: postfix.ok ? `Postfix ${postfix.version} (defaults)` : 'Postfix',
  };
  progress(`campaign: ${providers.map((provider) => `${provider.label} ${provider.messages}`).join(', ')}; time limit ${options.timeLimitMs / 1000} s; runs ${options.runs}`);
  progress(`DNS ${dns.address}; providers on ${providers.map((provider) => provider.host).join(', ')}; mta-relay policy: ${policy.description}`);

  const measurements: CampaignReport['measurements'] = [];
  for (let run = 1; run <= options.runs; run++) {
    // Odd runs mta-relay first, even runs last: neither system always gets the quieter minutes.
    const order = run % 2 === 1 ? systems : [...systems].reverse();
    for (const system of order) {
      checkInterrupted();
      progress(`[run ${run}/${options.runs}] ${labels[system]}: queueing ${messages.length} messages, then delivering`);
      const measurement = await measureCampaign(context, system, run);
      const totals = campaignTotals(measurement);
      measurements.push({ ...measurement, label: labels[system], totals });
      progress(`  ${totals.delivered}/${totals.requested} delivered in ${measurement.elapsedSeconds.toFixed(1)} s, ${totals.throttled} of ${totals.transactions} transactions throttled${measurement.errors.length ? ` — ${measurement.errors.join('; ')}` : ''}`);
    }
  }

  const report: CampaignReport = {
    environment: { ...(await describeEnvironment(mtaRoot)), mtaQueue, postfix: postfix.ok ? postfix.version : `not measured (${postfix.reason})`, policy: policy.description },
    options: {
      providers: Object.fromEntries(providers.map((provider) => [provider.key, { label: provider.label, messages: provider.messages, domains: provider.domains, mx: provider.mxNames, host: provider.host, limits: provider.limits }])),
      runs: options.runs,
      size: options.size,
      timeLimitMs: options.timeLimitMs,
      retrySchedule: options.retrySchedule,
      systems,
    },
    policyText,
    policyApplied: policy.file !== null,
    measurements,
    summaries: summarizeSystems(measurements),
    notes,
  };
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderCampaignReport(report)}\n`);
}

/**
 * The campaign policy, checked by this mta-queue's own `policy check` where it has one, and whether the daemon
 * takes --policy (until the shaping work lands it does not: the bench then measures the unshaped "before").
 */
async function policyFor(mtaRoot: string, policyPath: string): Promise<{ file: string | null; description: string }> {
  if (await mtaQueueHasFlag(mtaRoot, 'policy')) {
    const problem = await policyProblem(mtaRoot, policyPath);
    if (problem) throw new CampaignUsageError(`mta-queue policy check refused the campaign policy: ${problem}`);
  }
  if (!(await mtaQueueHasFlag(mtaRoot, '--policy'))) return { file: null, description: 'none (this mta-queue --help lists no --policy: unshaped, the "before" figures)' };
  return { file: policyPath, description: `--policy ${policyPath} (the providers' limits; built-in rules unchanged)` };
}

await benchRun.run('bench:campaign', 'mta-queue, Postfix and the provider MXes', (error) => error instanceof CampaignUsageError, main);
