import type { CampaignSystem } from './campaign-options.js';
import type { CampaignMeasurement, ProviderOutcome } from './campaign-run.js';
import type { Environment } from './environment.js';
import { formatRatio, median, renderTable } from './stats.js';

/** bench:campaign's figures: one table per campaign, the issue's two targets, JSON. */

/** Issue 23: the campaign completes within this many times the minimum its limits allow… */
export const COMPLETION_TARGET = 1.15;
/** …and at most this share of transactions draws a provider's limit 4xx. */
export const THROTTLE_SHARE_TARGET = 0.01;

export interface CampaignTotals {
  requested: number;
  delivered: number;
  completionSeconds: number | null;
  minimumSeconds: number | null;
  transactions: number;
  throttled: number;
  connections: number;
}

export interface SystemSummary {
  system: CampaignSystem;
  label: string;
  runs: number;
  /** Median over runs of completion ÷ minimum (null when a run did not complete or no limit gives a minimum). */
  completionRatio: number | null;
  completionRatioRuns: (number | null)[];
  throttleShare: number;
  throttleShareRuns: number[];
  deliveredRuns: number[];
}

export interface CampaignReport {
  environment: Environment & { mtaQueue: string; postfix: string; policy: string };
  options: Record<string, unknown>;
  policyText: string;
  /** Whether mta-queue ran with --policy (else its figures are the unshaped "before"). */
  policyApplied: boolean;
  measurements: (CampaignMeasurement & { label: string; totals: CampaignTotals })[];
  summaries: SystemSummary[];
  notes: string[];
}

export function campaignTotals(measurement: CampaignMeasurement): CampaignTotals {
  const sum = (pick: (outcome: ProviderOutcome) => number) => measurement.providers.reduce((total, outcome) => total + pick(outcome), 0);
  const minimums = measurement.providers.map((outcome) => outcome.minimumSeconds).filter((value): value is number => value !== null);
  return {
    requested: sum((outcome) => outcome.requested),
    delivered: sum((outcome) => outcome.counts.delivered),
    completionSeconds: measurement.complete ? Math.max(...measurement.providers.map((outcome) => outcome.completionSeconds!)) : null,
    minimumSeconds: minimums.length ? Math.max(...minimums) : null,
    transactions: sum((outcome) => outcome.counts.transactions),
    throttled: sum((outcome) => throttledOf(outcome)),
    connections: sum((outcome) => outcome.counts.connections),
  };
}

function throttledOf(outcome: ProviderOutcome): number {
  return outcome.counts.throttled.rate + outcome.counts.throttled['per-connection'];
}

function ratio(completion: number | null, minimum: number | null): number | null {
  return completion === null || minimum === null || minimum <= 0 ? null : completion / minimum;
}

const share = (part: number, whole: number) => (whole > 0 ? part / whole : 0);
const percent = (value: number) => `${(value * 100).toFixed(1)} %`;
const seconds = (value: number | null) => (value === null ? '—' : value.toFixed(1));

export function summarizeSystems(measurements: CampaignReport['measurements']): SystemSummary[] {
  const systems = [...new Set(measurements.map((measurement) => measurement.system))];
  return systems.map((system) => {
    const mine = measurements.filter((measurement) => measurement.system === system);
    const ratios = mine.map((measurement) => ratio(measurement.totals.completionSeconds, measurement.totals.minimumSeconds));
    const shares = mine.map((measurement) => share(measurement.totals.throttled, measurement.totals.transactions));
    return {
      system,
      label: mine[0]!.label,
      runs: mine.length,
      // A run that did not finish has no ratio: the median is then of none, or the summary says "not complete".
      completionRatio: ratios.every((value) => value !== null) ? median(ratios as number[]) : null,
      completionRatioRuns: ratios,
      throttleShare: median(shares),
      throttleShareRuns: shares,
      deliveredRuns: mine.map((measurement) => measurement.totals.delivered),
    };
  });
}

function measurementTable(measurement: CampaignReport['measurements'][number]): string {
  const rows = measurement.providers.map((outcome) => {
    const throttled = throttledOf(outcome);
    return [
      outcome.label,
      `${outcome.counts.delivered}/${outcome.requested}`,
      seconds(outcome.completionSeconds),
      seconds(outcome.minimumSeconds),
      formatRatio(ratio(outcome.completionSeconds, outcome.minimumSeconds) ?? NaN),
      String(outcome.counts.transactions),
      String(throttled),
      percent(share(throttled, outcome.counts.transactions)),
      `${outcome.counts.throttled.rate} / ${outcome.counts.throttled['per-connection']}`,
      String(outcome.counts.connections),
      String(outcome.counts.peakConcurrent),
      String(Object.keys(outcome.counts.senders).length),
    ];
  });
  const t = measurement.totals;
  rows.push([
    'total',
    `${t.delivered}/${t.requested}`,
    seconds(t.completionSeconds),
    seconds(t.minimumSeconds),
    formatRatio(ratio(t.completionSeconds, t.minimumSeconds) ?? NaN),
    String(t.transactions),
    String(t.throttled),
    percent(share(t.throttled, t.transactions)),
    '',
    String(t.connections),
    '',
    '',
  ]);
  return renderTable(['provider', 'delivered', 'done s', 'min s', 'vs min', 'transactions', 'throttled', 'share', 'rate / per-conn', 'connections', 'peak', 'senders'], rows);
}

function targetLines(summary: SystemSummary, policyApplied: boolean): string[] {
  const runs = (values: (number | null)[], format: (value: number) => string) => (values.length > 1 ? ` (runs: ${values.map((value) => (value === null ? 'not complete' : format(value))).join(', ')})` : '');
  const ratioText = summary.completionRatio === null ? 'not complete in the time limit (or no rate limit to compare with)' : `${formatRatio(summary.completionRatio)} the minimum`;
  // The issue's targets are for mta-relay shaped by the policy; the other rows are the figures they are read against.
  const judged = summary.system === 'mta-relay';
  const target = (text: string, met: boolean) => (judged ? `; target ${text}${policyApplied ? ` — ${met ? 'met' : 'NOT met'}` : ''}` : '');
  return [
    `${summary.label}: completion ${ratioText}${runs(summary.completionRatioRuns, formatRatio)}${target(`≤ ${COMPLETION_TARGET}×`, summary.completionRatio !== null && summary.completionRatio <= COMPLETION_TARGET)}`,
    `${summary.label}: ${percent(summary.throttleShare)} of transactions throttled${runs(summary.throttleShareRuns, percent)}${target(`≤ ${percent(THROTTLE_SHARE_TARGET)}`, summary.throttleShare <= THROTTLE_SHARE_TARGET)}`,
  ];
}

export function renderCampaignReport(report: CampaignReport): string {
  const env = report.environment;
  const lines = [
    '',
    `campaign benchmark — ${env.date}, ${env.mtaQueue} at commit ${env.commit}; Postfix: ${env.postfix}`,
    `machine: ${env.cpus} × ${env.cpuModel}, ${env.memoryGb} GiB, node ${env.node}; load average at start ${env.loadAverage.join(' ')}`,
    `mta-relay policy: ${env.policy}`,
  ];
  for (const measurement of report.measurements) {
    const t = measurement.totals;
    const end = measurement.complete ? `all ${t.requested} delivered in ${seconds(t.completionSeconds)} s` : `${t.delivered}/${t.requested} delivered when it stopped after ${measurement.elapsedSeconds.toFixed(1)} s`;
    lines.push('', `${measurement.label}, run ${measurement.run}: ${end}`, measurementTable(measurement));
    for (const error of measurement.errors) lines.push(`! ${error}`);
    for (const note of measurement.notes) lines.push(`note: ${note}`);
  }
  lines.push('');
  for (const summary of report.summaries) lines.push(...targetLines(summary, report.policyApplied));
  if (!report.policyApplied && report.summaries.some((summary) => summary.system === 'mta-relay')) {
    lines.push('(this mta-queue has no --policy: its figures are the unshaped "before"; the targets are judged once it has)');
  }
  lines.push(
    'done s: start (mta-queue spawned / Postfix queue released) → the provider accepted its last message; min s: the least time its limits allow.',
    'throttled: MAIL commands the provider answered with its limit 4xx (rate / per-connection); share: of all its transactions.',
  );
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}
