import { access } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { effectiveShaping } from '../config/effective-shaping.js';
import { DEFAULT_POLICY_FILE, PolicyError, readPolicyFile, shapingTable, type Policy, type ShapingSettings } from '../config/policy.js';
import { ConfigError, RelayError } from '../shared/errors.js';
import { formatAge } from '../shared/dates.js';
import { escapeForTerminal } from '../shared/terminal-escape.js';
import { BackoffStore, readBackoffsInForce, treatingCorruptAsNone } from '../spool/backoff-store.js';
import { FINAL_STATES } from '../spool/envelope.js';
import { spoolLayout, type SpoolLayout } from '../spool/layout.js';
import { QueueAdmin } from '../spool/queue-admin.js';
import { scanQueue, type SpoolItem } from '../spool/queue-listing.js';
import type { Logger } from '../shared/logger.js';
import { newLeaseToken, procProcessTable } from './process-table.js';
import { backoffLine, liftedLine } from './backoff-view.js';
import { auditLogger, openSpool } from './queue-admin-cli.js';
import { EXIT, envOption } from './run-cli.js';

/**
 * `mta-queue policy check | show | resume`: the policy file (shared/design/cli.md "Policy file") checked and shown as
 * the daemons read it, the built-in policy underneath, with the back-offs in force that the spool keeps. Problems
 * quote the file, and back-offs quote DNS and remote replies, so both are escaped for the terminal.
 */

interface PolicyFlags {
  policy?: string;
  json?: boolean;
  spool?: string;
}

/** `policy resume` found nothing to lift: one line, exit 1. */
class NoBackoffError extends RelayError {
  readonly code = 'ENOBACKOFF';
}

const DEFAULT_SPOOL = '/var/mailqueue';

const out = (line: string) => void process.stdout.write(line + '\n');

export function addPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('check and show the shaping policy (--policy FILE over the built-in one)');

  policy.command('check').description('exit 0 when the policy file is valid, else 2 and one line per problem').argument('[file]', `the file to check [--policy, or ${DEFAULT_POLICY_FILE}]`)
    .addOption(envOption('--policy <file>', `the policy file [${DEFAULT_POLICY_FILE}]`))
    .action(async (file: string | undefined, flags: PolicyFlags) => {
      try {
        const read = await readPolicyFile(file ?? flags.policy);
        out(read.file === null ? `no policy file at ${DEFAULT_POLICY_FILE}: the built-in policy applies` : `${escapeForTerminal(read.file)}: valid`);
      } catch (error) {
        if (!(error instanceof PolicyError)) throw error;
        for (const { line, message } of error.problems) process.stderr.write(`${escapeForTerminal(`${error.file}:${line}: ${message}`)}\n`);
        process.exitCode = EXIT.usage;
      }
    });

  policy.command('show').description('the shaping in force per provider and domain, the back-off rules, pools, sources and users')
    .addOption(envOption('--policy <file>', `the policy file [${DEFAULT_POLICY_FILE}]`))
    .addOption(envOption('--spool <dir>', `where the back-offs in force are kept [${DEFAULT_SPOOL}]`))
    .option('--json', 'exact, for scripts')
    .action(async (flags: PolicyFlags) => {
      const { policy: read, file } = await readPolicyFile(flags.policy);
      if (flags.spool === '') throw new ConfigError('--spool must not be empty');
      const layout = spoolLayout(flags.spool ?? DEFAULT_SPOOL);
      const now = Date.now();
      const backoffs = await readBackoffsInForce(layout, now, auditLogger());
      if (flags.json) return out(JSON.stringify({ ...policyJson(read, file), backoffs }));
      showPolicy(read, file);
      const spoolNote = (await access(layout.root).then(() => true, () => false)) ? '' : ` (no spool at ${escapeForTerminal(layout.root)})`;
      out(`back-offs in force now: ${backoffs.length === 0 ? `none${spoolNote}` : backoffs.length}`);
      for (const record of backoffs) out(backoffLine(record, now));
    });

  // --source reads no MTA_* variable, like the queue commands' selection flags: an exported MTA_SOURCE must not
  // quietly narrow what an operator means to lift.
  policy.command('resume').description('lift the back-offs of a site by hand (SITE as `policy show` names it); a running mta-queue sees it at its next poll')
    .argument('<site>', 'the site: its sorted MX host names joined by "," or relay:HOST:PORT')
    .addOption(new Option('--source <source>', 'only the back-off of this source (a pool address, or default)'))
    .addOption(envOption('--spool <dir>', `spool directory [${DEFAULT_SPOOL}]`))
    .action(async (site: string, flags: PolicyFlags & { source?: string }) => {
      if (site === '') throw new ConfigError('policy resume: SITE must not be empty');
      if (flags.source === '') throw new ConfigError('--source must not be empty');
      const layout = await openSpool(flags);
      const now = Date.now();
      const audit = auditLogger();
      const lifted = await treatingCorruptAsNone(() => new BackoffStore(layout).remove(site, flags.source, now), [], audit);
      if (lifted.length === 0) throw new NoBackoffError(`no back-off in force for ${escapeForTerminal(site)}${flags.source === undefined ? '' : ` from ${escapeForTerminal(flags.source)}`}`);
      for (const record of lifted) {
        audit.info({ event: 'backoff-lifted', site: record.site, source: record.source, rule: record.rule, until: record.until }, 'back-off lifted by hand');
        out(liftedLine(record, now));
      }
      const released = await releaseHeldBack(layout, site, flags.source, audit);
      if (released > 0) out(`${released} held-back message${released === 1 ? '' : 's'} for ${escapeForTerminal(site)} back in the queue, due now`);
    });
}

/**
 * The mail that a back-off of `site` held back goes back to incoming/ (a flush), rather than waiting for the time
 * the back-off would have ended: lifting it by hand means "send now".
 */
async function releaseHeldBack(layout: SpoolLayout, site: string, source: string | undefined, audit: Logger): Promise<number> {
  const heldHere = (item: SpoolItem) =>
    item.state === 'deferred' && (item.envelope?.recipients.some((r) => !FINAL_STATES.has(r.state) && r.heldBack?.site === site && (source === undefined || r.heldBack.source === source)) ?? false);
  const held = (await scanQueue(layout)).filter(heldHere);
  if (held.length === 0) return 0;
  const admin = new QueueAdmin(layout, audit, procProcessTable(), newLeaseToken());
  admin.plan(held);
  let released = 0;
  try {
    for (const item of held) if ((await admin.apply('flush', item)).done) released++;
  } finally {
    await admin.sync();
  }
  return released;
}

/** The effective policy as JSON: rates as written, durations in milliseconds, regexes as their source. */
export function policyJson(policy: Policy, file: string | null) {
  return {
    file,
    default: shapingTable(policy.default),
    providers: policy.providers.map((provider) => ({ name: provider.name, match: provider.match, shaping: shapingTable(effectiveShaping(policy, provider, null)) })),
    domains: [...policy.domains.keys()].map((domain) => ({ domain, shaping: shapingTable(effectiveShaping(policy, null, domain)) })),
    rules: policy.rules.map((rule) => ({
      name: rule.name,
      match: rule.match.source,
      action: rule.action,
      duration_ms: rule.durationMs,
      trigger: rule.trigger.kind === 'immediate' ? 'immediate' : `${rule.trigger.count}/hour`,
      shaping: shapingTable(rule.shaping),
    })),
    pools: Object.fromEntries(policy.pools),
    sources: Object.fromEntries([...policy.sources].map(([address, source]) => [address, {
      ehlo: source.ehlo ?? null,
      warmup_start: source.warmupStart === undefined ? null : new Date(source.warmupStart).toISOString().slice(0, 10),
      warmup: source.warmup ?? null,
    }])),
    users: Object.fromEntries([...policy.users].map(([name, user]) => [name, {
      senders: user.senders ?? null,
      quota: user.quota?.map((window) => `${window.count}/${window.windowMs === 86_400_000 ? 'day' : 'hour'}`).join(', ') ?? null,
      max_bounce_rate: user.maxBounceRate ?? null,
      bounce_window: user.bounceWindow ?? null,
      pool: user.pool ?? null,
    }])),
    senders: Object.fromEntries(policy.senders),
  };
}

function settingsText(settings: ShapingSettings): string {
  return Object.entries(settings)
    .map(([key, value]) => `${key}=${typeof value === 'object' ? value.text : key === 'connection_failure_delay' ? formatAge(value) : value}`)
    .join(' ');
}

function showPolicy(policy: Policy, file: string | null): void {
  const json = policyJson(policy, file);
  out(`policy: ${file === null ? 'built-in only' : `${escapeForTerminal(file)} over the built-in policy`}`);
  out(`default: ${settingsText(policy.default)}`);
  out('providers:');
  for (const provider of policy.providers) out(`  ${provider.name} (${provider.match.join(' ')}): ${settingsText(effectiveShaping(policy, provider, null))}`);
  if (policy.domains.size > 0) out('domains:');
  for (const domain of policy.domains.keys()) out(`  ${domain}: ${settingsText(effectiveShaping(policy, null, domain))}`);
  out('back-off rules (the first that matches a reply applies):');
  for (const rule of json.rules) {
    const settings = Object.entries(rule.shaping).map(([key, value]) => `${key}=${value}`).join(' ');
    out(`  ${rule.name}: /${escapeForTerminal(rule.match)}/ → ${rule.action} ${formatAge(rule.duration_ms)}${settings ? ` (${settings})` : ''}, trigger ${rule.trigger}`);
  }
  for (const [name, sources] of policy.pools) out(`pool ${escapeForTerminal(name)}: ${sources.join(', ')}`);
  for (const [address, source] of Object.entries(json.sources)) out(`source ${address}: ehlo=${source.ehlo ?? '(--hostname)'}${source.warmup ? ` warm-up from ${source.warmup_start}: ${source.warmup.join(',')}` : ''}`);
  for (const [name, user] of Object.entries(json.users)) {
    const parts = Object.entries(user).filter(([, value]) => value !== null).map(([key, value]) => `${key}=${Array.isArray(value) ? value.join(',') : value}`);
    out(`user ${escapeForTerminal(name)}: ${escapeForTerminal(parts.join(' ') || '(no settings)')}`);
  }
  for (const [domain, sender] of policy.senders) out(`sender ${domain}: pool=${escapeForTerminal(sender.pool)}`);
}
