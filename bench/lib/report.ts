import type { CpuUse } from './cpu-meter.js';
import type { Environment } from './environment.js';
import type { RssLoadResult } from './rss-load.js';
import { formatMs, formatRate, formatRatio, median, percentile, renderTable, round } from './stats.js';

export type SeriesId = 'mta-client' | 'mta-smtp-source' | 'postfix-smtp-source' | 'postfix-client' | 'mta-tls-nodemailer';

export const SERIES_LABELS: Record<SeriesId, string> = {
  'mta-client': 'mta-server plain, bench client',
  'mta-smtp-source': 'mta-server plain, smtp-source',
  'postfix-smtp-source': 'Postfix hold, smtp-source',
  'postfix-client': 'Postfix hold, bench client',
  'mta-tls-nodemailer': 'mta-server STARTTLS+AUTH, nodemailer',
};

/** The Postfix series each mta-server series is compared with (same client where there is one). */
const BASELINE: Partial<Record<SeriesId, SeriesId>> = {
  'mta-client': 'postfix-client',
  'mta-smtp-source': 'postfix-smtp-source',
  'mta-tls-nodemailer': 'postfix-smtp-source',
};

/** One timed measurement. */
export interface Measurement {
  series: SeriesId;
  sessions: number;
  run: number;
  requested: number;
  /** Messages the client saw accepted. */
  sent: number;
  /** Messages found in the spool / hold queue afterwards (the durable count). */
  accepted: number;
  elapsedMs: number;
  msgsPerSec: number;
  latenciesMs: number[] | null;
  cpu: CpuUse;
  timedOut: boolean;
  errors: string[];
}

export interface SeriesSummary {
  series: SeriesId;
  label: string;
  sessions: number;
  runs: number;
  msgsPerSec: number;
  msgsPerSecRuns: number[];
  p50Ms: number | null;
  p99Ms: number | null;
  /** Median over runs of this run's msgs/s over the same run's Postfix msgs/s (paired: measured minutes apart). */
  vsPostfix: number | null;
  vsPostfixRuns: number[];
  /** Some run of this row, or of the Postfix row it is compared with, had other processes busy past the limit. */
  disturbed: boolean;
  serverCpuMsPerMsg: number | null;
  clientCpuMsPerMsg: number | null;
  machineBusyPercent: number;
  othersPercentOfCore: number;
  requested: number;
  accepted: number;
  errors: string[];
}

export interface BenchReport {
  environment: Environment & { server: string; postfix: string; smtpSource: boolean };
  options: Record<string, unknown>;
  summaries: SeriesSummary[];
  rss: (RssLoadResult & { targetMb: number }) | null;
  target: { sessions: number; wanted: number; measured: number | null; perRun: number[]; met: boolean | null; disturbed: boolean };
  notes: string[];
}

export function summarize(measurements: Measurement[], maxOthersPercent: number): SeriesSummary[] {
  const groups = new Map<string, Measurement[]>();
  for (const m of measurements) {
    const key = `${m.series}/${m.sessions}`;
    groups.set(key, [...(groups.get(key) ?? []), m]);
  }
  const summaries = [...groups.values()].map((group): SeriesSummary => {
    const first = group[0]!;
    const latencies = group.every((m) => m.latenciesMs) ? group.flatMap((m) => m.latenciesMs!) : null;
    const perMessage = (pick: (cpu: CpuUse) => number) => (group.every((m) => m.accepted > 0) ? median(group.map((m) => pick(m.cpu) / m.accepted)) : null);
    return {
      series: first.series,
      label: SERIES_LABELS[first.series],
      sessions: first.sessions,
      runs: group.length,
      msgsPerSec: median(group.map((m) => m.msgsPerSec)),
      msgsPerSecRuns: group.map((m) => round(m.msgsPerSec)),
      p50Ms: latencies && latencies.length ? percentile(latencies, 50) : null,
      p99Ms: latencies && latencies.length ? percentile(latencies, 99) : null,
      vsPostfix: null,
      vsPostfixRuns: [],
      disturbed: group.some((m) => m.cpu.othersPercentOfCore >= maxOthersPercent),
      serverCpuMsPerMsg: perMessage((cpu) => cpu.serverCpuMs),
      clientCpuMsPerMsg: perMessage((cpu) => cpu.clientCpuMs),
      machineBusyPercent: median(group.map((m) => m.cpu.machineBusyPercent)),
      othersPercentOfCore: median(group.map((m) => m.cpu.othersPercentOfCore)),
      requested: group.reduce((sum, m) => sum + m.requested, 0),
      accepted: group.reduce((sum, m) => sum + m.accepted, 0),
      errors: [...new Set(group.flatMap((m) => [...m.errors, ...(m.timedOut ? ['time limit reached'] : [])]))],
    };
  });
  for (const summary of summaries) {
    const baseline = BASELINE[summary.series];
    if (!baseline) continue;
    const ours = measurements.filter((m) => m.series === summary.series && m.sessions === summary.sessions);
    const theirs = measurements.filter((m) => m.series === baseline && m.sessions === summary.sessions);
    for (const mine of ours) {
      const paired = theirs.find((m) => m.run === mine.run);
      if (paired && paired.msgsPerSec > 0) summary.vsPostfixRuns.push(mine.msgsPerSec / paired.msgsPerSec);
    }
    if (summary.vsPostfixRuns.length) summary.vsPostfix = median(summary.vsPostfixRuns);
    if (theirs.some((m) => m.cpu.othersPercentOfCore >= maxOthersPercent)) summary.disturbed = true;
  }
  const order = Object.keys(SERIES_LABELS);
  return summaries.sort((a, b) => order.indexOf(a.series) - order.indexOf(b.series) || a.sessions - b.sessions);
}

export function renderReport(report: BenchReport): string {
  const env = report.environment;
  const lines = [
    '',
    `mta-server intake benchmark — ${env.date}, ${env.server} at commit ${env.commit}`,
    `machine: ${env.cpus} × ${env.cpuModel}, ${env.memoryGb} GiB, ${env.kernel}, node ${env.node}; load average at start ${env.loadAverage.join(' ')}`,
    `disk: one 4 KB write + fdatasync in ${env.tmpdir} ≈ ${env.fdatasyncMs} ms (median of 200); Postfix: ${env.postfix}; smtp-source: ${env.smtpSource ? 'yes' : 'not installed'}`,
    `workload: ${report.options.size}-byte messages, ${report.options.messages} per measurement (+${report.options.warmup} warm-up), persistent connections, runs: ${report.options.runs}`,
    '',
  ];
  const rows = report.summaries.map((s) => [
    s.label,
    String(s.sessions),
    formatRate(s.msgsPerSec),
    s.p50Ms === null ? '—' : formatMs(s.p50Ms),
    s.p99Ms === null ? '—' : formatMs(s.p99Ms),
    s.vsPostfix === null ? '—' : formatRatio(s.vsPostfix) + (s.series === 'mta-tls-nodemailer' ? '*' : '') + (s.disturbed ? '?' : ''),
    s.serverCpuMsPerMsg === null ? '—' : s.serverCpuMsPerMsg.toFixed(3),
    Number.isFinite(s.machineBusyPercent) ? `${Math.round(s.machineBusyPercent)}%` : '—',
    Number.isFinite(s.othersPercentOfCore) ? `${Math.round(s.othersPercentOfCore)}%` : '—',
    `${s.accepted}/${s.requested}`,
  ]);
  lines.push(renderTable(['scenario', 'sessions', 'msgs/s', 'p50 ms', 'p99 ms', 'vs Postfix', 'srv CPU ms/msg', 'machine busy', 'others', 'queued/asked'], rows));
  if (report.rss) {
    const r = report.rss;
    const verdict = r.peakHwmMb <= r.targetMb ? 'within' : 'OVER';
    lines.push(
      `mta-server RSS, ${r.sessions} sessions × ${(r.messageBytes / 2 ** 20).toFixed(0)} MiB at once: peak ${r.peakHwmMb.toFixed(0)} MB (VmHWM; sampled VmRSS peak ${r.peakSampledRssMb.toFixed(0)} MB, idle ${r.baselineRssMb.toFixed(0)} MB), ${verdict} the ${r.targetMb} MB target; ${r.sent}/${r.sessions} accepted in ${(r.elapsedMs / 1000).toFixed(1)} s`,
    );
  }
  lines.push('');
  lines.push('p50/p99: bench client = final DATA write → 250; nodemailer = whole sendMail (MAIL…250). smtp-source gives no latency.');
  lines.push('vs Postfix: over the Postfix row with the same client and session count, paired run by run in this process (median of runs).');
  lines.push('  * compared with Postfix plain smtp-source (Postfix gets no TLS/AUTH here). ? a machine too busy with other work during that row or its pair.');
  lines.push('srv CPU: user+system CPU of mta-server (or of Postfix master and its daemons) per queued message. machine busy: all cores, 100% = saturated.');
  lines.push('others: CPU used meanwhile by processes that are neither server nor client, in % of one core; above ~10% the row was measured on a busy machine.');
  const t = report.target;
  lines.push(
    t.measured === null
      ? `target (durable intake at ${t.sessions} sessions ≥ ${t.wanted}× Postfix): not measured`
      : `target (durable intake at ${t.sessions} sessions ≥ ${t.wanted}× Postfix, smtp-source both): measured ${formatRatio(t.measured)}` +
          (t.perRun.length > 1 ? ` (runs: ${t.perRun.map((ratio) => ratio.toFixed(2)).join(', ')})` : '') +
          ` — ${t.met ? 'met' : 'NOT met'}` +
          (t.disturbed ? ' (but measured on a busy machine: rerun)' : ''),
  );
  for (const summary of report.summaries) for (const error of summary.errors) lines.push(`! ${summary.label}, ${summary.sessions} sessions: ${error}`);
  for (const error of report.rss?.errors ?? []) lines.push(`! rss: ${error}`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

/** JSON without the raw latency arrays (they can hold a million numbers). */
export function reportJson(report: BenchReport): string {
  const rounded = report.summaries.map((s) => ({
    ...s,
    msgsPerSec: round(s.msgsPerSec, 1),
    p50Ms: s.p50Ms === null ? null : round(s.p50Ms, 3),
    p99Ms: s.p99Ms === null ? null : round(s.p99Ms, 3),
    vsPostfix: s.vsPostfix === null ? null : round(s.vsPostfix, 3),
    vsPostfixRuns: s.vsPostfixRuns.map((ratio) => round(ratio, 3)),
    serverCpuMsPerMsg: s.serverCpuMsPerMsg === null ? null : round(s.serverCpuMsPerMsg, 4),
    clientCpuMsPerMsg: s.clientCpuMsPerMsg === null ? null : round(s.clientCpuMsPerMsg, 4),
    machineBusyPercent: round(s.machineBusyPercent, 1),
    othersPercentOfCore: round(s.othersPercentOfCore, 1),
  }));
  const target = { ...report.target, perRun: report.target.perRun.map((ratio) => round(ratio, 3)) };
  return JSON.stringify({ ...report, summaries: rounded, target }, null, 2);
}
