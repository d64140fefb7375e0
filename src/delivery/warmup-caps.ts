import type { Policy } from '../config/policy.js';
import { utcDayName, warmupCapOn } from '../config/warmup-day.js';
import type { Logger } from '../shared/logger.js';
import type { WarmupStore } from '../spool/warmup-store.js';
import type { Route } from './router.js';

/** Today's cap of a (source, provider) and what is left of it. */
export interface WarmupAllowance {
  cap: number;
  day: number;
  left: number;
  endsAt: number;
  /** The provider, or the site when no provider matches it (a site of its own, for warm-up caps). */
  provider: string;
}

/**
 * Warm-up caps (shared/design/cli.md "Counting"): a new source address sends each provider at most `warmup[day]`
 * recipients per UTC day. Recipients count when a transaction is granted them, whatever the MX then answers: a
 * receiver judges a new address by what it is offered. The counters live in the spool (WarmupStore), so a restart
 * keeps the day's count; written after each grant, one write at a time, re-read when another process changed them.
 */
export class WarmupCaps {
  private day = '';
  private counts = new Map<string, number>();
  private pending = new Map<string, number>();
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: WarmupStore | null,
    private readonly policy: () => Policy,
    private readonly logger: Logger,
  ) {}

  /** Today's allowance of (source, the route's provider or site); null: no cap applies. */
  allowance(source: string, route: Pick<Route, 'provider' | 'site'>, now: number): WarmupAllowance | null {
    const today = warmupCapOn(this.policy().sources.get(source), now);
    if (!today) return null;
    this.turnDay(now);
    const provider = route.provider ?? route.site;
    const key = `${source} ${provider}`;
    const used = (this.counts.get(key) ?? 0) + (this.pending.get(key) ?? 0);
    return { ...today, left: Math.max(0, today.cap - used), provider };
  }

  /** Until when `source` may send the route's provider nothing more today, or null. */
  cappedUntil(source: string, route: Pick<Route, 'provider' | 'site'>, now: number): number | null {
    const allowance = this.allowance(source, route, now);
    return allowance && allowance.left === 0 ? allowance.endsAt : null;
  }

  /** `recipients` granted under `allowance`: counted now, written to the spool in the background. */
  count(source: string, allowance: WarmupAllowance, recipients: number): void {
    const key = `${source} ${allowance.provider}`;
    this.pending.set(key, (this.pending.get(key) ?? 0) + recipients);
    this.writing = this.writing.then(() => this.save());
  }

  /** Reads the spool's counters (at start, and when another process changed them). */
  async load(now: number): Promise<void> {
    if (!this.store) return;
    this.turnDay(now);
    this.counts = await this.store.read(this.day);
  }

  async refresh(now: number): Promise<void> {
    if (this.store && (await this.store.changed())) await this.load(now);
  }

  /** Resolves once every count so far is in the spool (at shutdown). */
  flush(): Promise<void> {
    return this.writing;
  }

  private turnDay(now: number): void {
    const day = utcDayName(now);
    if (day === this.day) return;
    this.day = day;
    this.counts = new Map();
    this.pending = new Map();
  }

  private async save(): Promise<void> {
    if (!this.store || this.pending.size === 0) return;
    const day = this.day;
    const deltas = this.pending;
    this.pending = new Map();
    // Counted meanwhile as well, so no grant slips through while the file is written.
    const counts = this.counts;
    for (const [key, delta] of deltas) counts.set(key, (counts.get(key) ?? 0) + delta);
    try {
      const summed = await this.store.add(day, deltas);
      if (this.counts === counts) this.counts = summed;
    } catch (error) {
      // Still counted here; only a restart before the next successful write would forget these recipients.
      this.logger.error({ event: 'warmup-not-saved', err: error }, 'the warm-up counters could not be written to the spool');
    }
  }
}
