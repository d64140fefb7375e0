import { stat } from 'node:fs/promises';
import os from 'node:os';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { pino } from 'pino';
import { parsePositiveInteger } from '../config/units.js';
import { ConfigError, RelayError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { escapeForTerminal } from '../shared/terminal-escape.js';
import { formatAge, isoTime } from '../shared/dates.js';
import { FINAL_STATES, formatReply } from '../spool/envelope.js';
import { spoolLayout, type SpoolLayout } from '../spool/layout.js';
import { ADMIN_ACTIONS, QueueAdmin, type AdminAction } from '../spool/queue-admin.js';
import { checkQueueId, NoSuchMessageError, refusedText, runAdminCommand } from '../spool/admin-command.js';
import { hasCriteria, matchesFilter, parseQueueFilter as parseFilterFields, type FilterFields, type QueueFilter } from '../spool/queue-filter.js';
import { newLeaseToken, procProcessTable } from './process-table.js';
import { openFirstSource } from '../spool/message-source.js';
import { detailsJson, inspectMessage, messageFiles, queueStats, type HeaderBlock, type QueueStats } from '../spool/queue-inspect.js';
import { describeItem, FILTER_STATES, findQueueItem, scanQueue, type QueueEntry, type SpoolItem } from '../spool/queue-listing.js';
import { envOption } from './run-cli.js';
import { backoffStatsLines } from './backoff-view.js';
import { backoffSummary, readBackoffsInForce } from '../spool/backoff-store.js';

/**
 * `mta-queue list | show | cat | stats | flush | hold | release | delete`: queue administration, safe while the
 * daemons run (src/spool/queue-admin.ts has the rules). Results for humans go to stdout; every message changed
 * gets one JSON log line on stderr (event flushed, held, released or deleted), so stdout stays readable and the
 * audit lines can be sent to the journal or a file on their own. Human output passes every string that came from
 * a client, a remote MTA or a message through escapeForTerminal (no raw control character reaches the terminal);
 * `--json` and `cat` are exact.
 */

/** An unknown id, or an action refused for the one message named: one line on stderr, exit 1. */
class QueueAdminError extends RelayError {
  readonly code = 'EQUEUEADMIN';
}

interface SpoolFlags {
  spool?: string;
}

interface FilterFlags {
  state?: string;
  domain?: string;
  sender?: string;
  olderThan?: string;
  reply?: string;
}

interface ActionFlags extends SpoolFlags, FilterFlags {
  all?: boolean;
  dryRun?: boolean;
}

const out = (text: string) => void process.stdout.write(text);

// Selection flags read no MTA_* variable: an exported MTA_ALL or MTA_DOMAIN must never widen a delete.
function addFilterOptions(command: Command, verb: string): Command {
  return command
    .addOption(new Option('--state <state>', `only messages in this state: ${FILTER_STATES.join(', ')}`))
    .addOption(new Option('--domain <domain>', `only messages with a pending recipient at this domain`))
    .addOption(new Option('--sender <address>', `only messages from this envelope sender (<> for bounces)`))
    .addOption(new Option('--older-than <dur>', `only messages that arrived at least this long ago (30m, 2h, 5d)`))
    .addOption(new Option('--reply <text>', `only messages where a pending recipient's last reply contains this text (any case)`))
    .addOption(envOption('--spool <dir>', 'spool directory [/var/mailqueue]'))
    .addHelpText('after', `\nFilters combine (all must match). ${verb}`);
}

const FLAG_NAMES: Record<keyof FilterFields, string> = { state: '--state', domain: '--domain', sender: '--sender', olderThan: '--older-than', reply: '--reply', q: '--q' };

export function parseQueueFilter(flags: FilterFlags): QueueFilter {
  return parseFilterFields(flags, (field) => FLAG_NAMES[field]);
}

export async function openSpool(flags: SpoolFlags): Promise<SpoolLayout> {
  const root = flags.spool ?? '/var/mailqueue';
  if (root === '') throw new ConfigError('--spool must not be empty');
  const layout = spoolLayout(root);
  try {
    if (!(await stat(layout.dir('incoming'))).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(code === 'ENOENT' || code === 'ENOTDIR' ? `--spool: ${layout.root} is not a spool (no incoming/ directory)` : `--spool: ${layout.root}: ${code ?? (error as Error).message}`);
  }
  return layout;
}

export function auditLogger(): Logger {
  let operator: string;
  try {
    operator = os.userInfo().username;
  } catch {
    operator = `uid ${process.getuid?.() ?? '?'}`;
  }
  const sudoUser = process.env.SUDO_USER;
  return createLogger({ level: 'info', destination: pino.destination({ dest: 2, sync: true }) }).child({ operator, ...(sudoUser && { sudoUser }) });
}

export function addQueueAdminCommands(program: Command): void {
  addFilterOptions(
    program
      .command('list')
      .description('one line per message: id, state, sender, pending recipients, attempts, next attempt, last error')
      .option('--json', 'one JSON array instead of a table'),
    'Without filters, every message.',
  ).action(async (flags: SpoolFlags & FilterFlags & { json?: boolean }) => {
    const filter = parseQueueFilter(flags);
    const layout = await openSpool(flags);
    const now = Date.now();
    const entries = (await scanQueue(layout))
      .filter((item) => matchesFilter(item, filter, now))
      .map(describeItem)
      .sort((a, b) => a.id.localeCompare(b.id));
    out(flags.json ? JSON.stringify(entries, null, 2) + '\n' : formatTable(entries));
  });

  program
    .command('show')
    .description("one message: its envelope, each recipient's state and last reply, and the message's header block")
    .argument('<id>', 'queue id')
    .option('--json', 'one JSON object instead of text')
    .addOption(envOption('--spool <dir>', 'spool directory [/var/mailqueue]'))
    .action(async (id: string, flags: SpoolFlags & { json?: boolean }) => {
      checkQueueId(id);
      const layout = await openSpool(flags);
      const details = await inspectMessage(layout, id);
      if (!details) throw new NoSuchMessageError(id);
      out(flags.json ? JSON.stringify(detailsJson(details), null, 2) + '\n' : formatShow(details.item, details.file, details.headers));
    });

  program
    .command('cat')
    .description('the message exactly as it will be sent, byte for byte, on stdout (like postcat -q); for piping, not escaped')
    .argument('<id>', 'queue id')
    .addOption(envOption('--spool <dir>', 'spool directory [/var/mailqueue]'))
    .action(async (id: string, flags: SpoolFlags) => {
      checkQueueId(id);
      const layout = await openSpool(flags);
      const item = await findQueueItem(layout, id);
      if (!item) throw new NoSuchMessageError(id);
      await writeMessage(id, messageFiles(layout, item));
    });

  program
    .command('stats')
    .description('messages by state, the oldest one, the destination domains with the most deferred recipients, and the back-offs in force')
    .option('--json', 'one JSON object instead of text')
    .addOption(new Option('--top <n>', 'how many domains (and back-offs) to list [10]'))
    .addOption(envOption('--spool <dir>', 'spool directory [/var/mailqueue]'))
    .action(async (flags: SpoolFlags & { json?: boolean; top?: string }) => {
      const top = parsePositiveInteger(flags.top ?? '10', '--top', 10_000);
      const layout = await openSpool(flags);
      const now = Date.now();
      const stats = queueStats(await scanQueue(layout), now, top);
      const backoffs = await readBackoffsInForce(layout, now, auditLogger());
      out(flags.json ? JSON.stringify({ ...stats, backoffs: backoffSummary(backoffs) }, null, 2) + '\n' : formatStats(stats, top) + backoffStatsLines(backoffs, now, top).join('\n') + '\n');
    });

  const actions: Record<AdminAction, string> = {
    flush: 'make deferred messages due now (deferred/ → incoming/); a running mta-queue delivers them at once',
    hold: 'keep queued messages (incoming/, deferred/) out of delivery until released (→ held/)',
    release: 'give held messages back to delivery, due now (held/ → incoming/)',
    delete: 'remove queued, held or failed messages from the spool; never one being delivered',
  };
  for (const [action, description] of Object.entries(actions) as [AdminAction, string][]) {
    addFilterOptions(
      program
        .command(action)
        .description(description)
        .argument('[id]', 'one message by queue id, instead of filters')
        .option('--all', 'every message the command applies to (needed when no id and no filter is given)')
        .option('--dry-run', 'print which messages would be touched, touch nothing'),
      `Without an id, a filter or --all is required.`,
    ).action((id: string | undefined, flags: ActionFlags) => runAction(action, id, flags));
  }
}

/**
 * Streams the first of a message's sources that exists to stdout: the same bytes, from the same range, that delivery
 * streams (deliver-message.ts). A missing file fails at open, before anything is written, so the next one is tried.
 */
async function writeMessage(id: string, sources: ReturnType<typeof messageFiles>): Promise<void> {
  const stream = await openFirstSource(sources);
  if (!stream) throw new QueueAdminError(`${id}: message file missing`);
  try {
    await pipeline(stream, process.stdout, { end: false });
  } catch (error) {
    // `mta-queue cat ID | head`: the reader has what it wanted.
    if ((error as NodeJS.ErrnoException).code !== 'EPIPE') throw error;
  }
}

async function runAction(action: AdminAction, id: string | undefined, flags: ActionFlags): Promise<void> {
  const filter = parseQueueFilter(flags);
  const done = ADMIN_ACTIONS[action].event;
  if (id !== undefined) {
    checkQueueId(id);
    if (hasCriteria(filter) || flags.all) throw new ConfigError(`${action}: give an id or filters, not both`);
  }
  const layout = await openSpool(flags);
  const target = id !== undefined ? { id } : { filter, all: flags.all ?? false };
  const makeAdmin = () => new QueueAdmin(layout, auditLogger(), procProcessTable(), newLeaseToken());
  const result = await runAdminCommand(layout, { action, target, dryRun: flags.dryRun ?? false }, makeAdmin, Date.now());
  if (result.kind === 'unchanged') return out(`${result.id}: ${result.reason}, nothing to do\n`);
  if (result.kind === 'refused') throw new QueueAdminError(refusedText(action, result.id, result.reason));
  const { changed, skipped } = result;
  if (result.dryRun) {
    for (const item of changed) out(`would ${action} ${item.id} (${describeItem(item).state})\n`);
    for (const { item, reason } of skipped) out(`would skip ${item.id}: ${reason}\n`);
    return out(`dry run: ${changed.length} message(s) would be ${done}, ${skipped.length} skipped; nothing changed\n`);
  }
  if (id !== undefined) return out(`${done} ${id} (was ${describeItem(changed[0]!).state})\n`);
  for (const { item, reason } of skipped) out(`skipped ${item.id}: ${reason}\n`);
  out(`${done} ${changed.length} message(s)${skipped.length ? `, skipped ${skipped.length}` : ''}\n`);
}

/** A string from a client, a remote MTA or a message, for one line of human output (a column, a field). */
const shown = (text: string) => escapeForTerminal(text);

function formatTable(entries: QueueEntry[]): string {
  const lines = entries.map((entry) =>
    [entry.id, entry.state, entry.sender || '<>', entry.pending.join(',') || '-', String(entry.attempts), isoTime(entry.nextAttemptAt), entry.lastError ?? '-'].map(shown).join('\t'),
  );
  return ['ID\tSTATE\tSENDER\tPENDING\tATTEMPTS\tNEXT\tLAST ERROR', ...lines, `${entries.length} message(s)`].join('\n') + '\n';
}

function formatShow(item: SpoolItem, file: string, headers: HeaderBlock | null): string {
  const lines: string[] = [];
  const field = (name: string, value: string) => lines.push(`${name.padEnd(11)}${value}`);
  const state = describeItem(item).state;
  const envelope = item.envelope;
  field('id', item.id);
  field('state', state === 'deferred' && envelope ? `deferred, next attempt ${isoTime(envelope.nextAttemptAt)}` : state);
  field('file', file);
  if (!envelope) {
    lines.push('envelope   unreadable (left in corrupt/ by mta-queue)');
  } else {
    field('sender', shown(envelope.sender || '<>'));
    field('arrived', `${isoTime(envelope.arrivedAt)} (${formatAge(Date.now() - envelope.arrivedAt)} ago)`);
    field('size', `${envelope.size} bytes, ${envelope.bodyType}${envelope.smtpUtf8 ? ', SMTPUTF8' : ''}`);
    field('user', shown(envelope.user ?? '-'));
    const client = envelope.client;
    field('client', shown(`${client.address}${client.hostname ? ` (${client.hostname})` : ''}, helo ${client.helo ?? '-'}, ${client.tls ? `${client.tls.version} ${client.tls.cipher}` : 'no TLS'}`));
    if (envelope.bounceOf) field('bounce of', shown(envelope.bounceOf));
    const pending = envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state)).length;
    lines.push(`recipients ${envelope.recipients.length}, ${pending} pending`);
    for (const recipient of envelope.recipients) {
      const reply = recipient.lastReply ? formatReply(recipient.lastReply) : 'no reply yet';
      const via = recipient.remoteMta ? ` (${recipient.remoteMta})` : '';
      lines.push(`  ${shown(recipient.address)}\t${recipient.state}\tattempts ${recipient.attempts}\tlast ${isoTime(recipient.lastAttemptAt)}\t${shown(reply + via)}`);
      if (recipient.heldBack) lines.push(`    ${shown(recipient.heldBack.reason)} (until ${isoTime(recipient.heldBack.until)})`);
    }
  }
  if (!headers) {
    lines.push('headers    message file missing');
  } else {
    lines.push(`headers${headers.truncated ? ' (first 64 KiB only)' : ''}`);
    // Folded lines start with a tab or spaces: tabs stay, so the continuation reads as one.
    for (const line of headers.text.split('\r\n')) lines.push(`  ${escapeForTerminal(line, { keepTabs: true })}`);
  }
  return lines.join('\n') + '\n';
}

function formatStats(stats: QueueStats, top: number): string {
  const lines = FILTER_STATES.map((state) => `${state.padEnd(10)}${stats.counts[state]}`);
  lines.push(`${'total'.padEnd(10)}${stats.total}`);
  lines.push(`${'oldest'.padEnd(10)}${stats.oldest ? `${stats.oldest.id} (${stats.oldest.state}), arrived ${isoTime(stats.oldest.arrivedAt)}, ${formatAge(stats.oldest.ageMs)} ago` : '-'}`);
  lines.push(`deferred recipients by domain (top ${top}):`);
  for (const { domain, recipients, messages, lastReply } of stats.deferredDomains) lines.push(`  ${shown(domain)}\t${recipients} recipient(s) in ${messages} message(s)\tlast reply: ${shown(lastReply ?? '-')}`);
  if (stats.deferredDomains.length === 0) lines.push('  -');
  return lines.join('\n') + '\n';
}
