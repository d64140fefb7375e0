/**
 * Delivered, deferred and bounced recipients per minute over the last hour, for the overview's chart. mta-queue
 * already counts them for Prometheus; this keeps the differences between samples of those totals, so the chart
 * costs the delivery path nothing.
 */

export const OUTCOMES = ['delivered', 'deferred', 'bounced'] as const;
export type ChartOutcome = (typeof OUTCOMES)[number];
export type OutcomeTotals = Record<ChartOutcome, number>;

const MINUTE = 60_000;
export const HISTORY_MINUTES = 60;

export interface OutcomeSeries {
  /** Start of each minute, epoch seconds (uPlot's x axis), oldest first, the current minute last. */
  minutes: number[];
  delivered: number[];
  deferred: number[];
  bounced: number[];
}

export class OutcomeHistory {
  private last: OutcomeTotals | null = null;
  private readonly buckets = new Map<number, OutcomeTotals>();

  /** Adds what happened since the previous sample to the minute of `now`. */
  record(totals: OutcomeTotals, now: number): void {
    const minute = Math.floor(now / MINUTE);
    if (this.last) {
      const bucket = this.buckets.get(minute) ?? { delivered: 0, deferred: 0, bounced: 0 };
      // A counter only grows; were it reset (a new registry), the new total is what happened since.
      for (const outcome of OUTCOMES) bucket[outcome] += totals[outcome] >= this.last[outcome] ? totals[outcome] - this.last[outcome] : totals[outcome];
      this.buckets.set(minute, bucket);
    }
    this.last = { ...totals };
    for (const key of this.buckets.keys()) if (key <= minute - HISTORY_MINUTES) this.buckets.delete(key);
  }

  series(now: number): OutcomeSeries {
    const current = Math.floor(now / MINUTE);
    const series: OutcomeSeries = { minutes: [], delivered: [], deferred: [], bounced: [] };
    for (let minute = current - HISTORY_MINUTES + 1; minute <= current; minute++) {
      series.minutes.push((minute * MINUTE) / 1000);
      const bucket = this.buckets.get(minute);
      for (const outcome of OUTCOMES) series[outcome].push(bucket?.[outcome] ?? 0);
    }
    return series;
  }
}
