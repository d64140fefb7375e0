import { formatAge, isoTime } from '../shared/dates.js';
import { escapeForTerminal } from '../shared/terminal-escape.js';
import type { BackoffRecord } from '../spool/backoff-store.js';

/**
 * The back-offs in force as `policy show`, `policy resume` and `stats` print them. The site comes from DNS and the
 * reply from a remote server, so every field goes through escapeForTerminal; `--json` prints the records as stored.
 */

const until = (record: BackoffRecord, now: number) => `until ${isoTime(record.until)} (in ${formatAge(record.until - now)})`;
const siteAndSource = (record: BackoffRecord) => escapeForTerminal(`${record.site} from ${record.source}`);

function actionText(record: BackoffRecord): string {
  const settings = Object.entries(record.shaping).map(([key, value]) => `${key}=${value}`).join(' ');
  return escapeForTerminal(settings ? `${record.action} (${settings})` : record.action);
}

/** `policy show`: everything about one back-off on one line. */
export function backoffLine(record: BackoffRecord, now: number): string {
  return `  ${siteAndSource(record)}: ${escapeForTerminal(record.rule)} → ${actionText(record)} ${until(record, now)}; reply: ${escapeForTerminal(record.reply || '-')}`;
}

/** `policy resume`: what was lifted. */
export function liftedLine(record: BackoffRecord, now: number): string {
  return `lifted ${siteAndSource(record)}: ${escapeForTerminal(record.rule)} ${actionText(record)}, was ${until(record, now)}`;
}

/** `stats`: the count, then the first `top` sites by the time they end. */
export function backoffStatsLines(records: readonly BackoffRecord[], now: number, top: number): string[] {
  const lines = [`${'back-offs'.padEnd(10)}${records.length} in force`];
  const soonest = [...records].sort((a, b) => a.until - b.until);
  for (const record of soonest.slice(0, top)) lines.push(`  ${siteAndSource(record)}\t${escapeForTerminal(record.action)} ${until(record, now)}`);
  if (soonest.length > top) lines.push(`  … and ${soonest.length - top} more (--json lists them all)`);
  return lines;
}
