import type { Rate } from '../config/policy-values.js';

/**
 * Rate limits that answer instead of blocking (shared/design/dispatch.md): `take` either takes the tokens or says
 * how long until it could. GCRA, as KumoMTA's `throttle` crate and redis-cell: one number per key (the
 * theoretical arrival time), no timers, no queue; the caller decides whether a wait is short enough to keep the
 * work in memory or long enough to defer it. The in-process backend; a Redis one fits the same interface.
 */
export type ThrottleAnswer = { ok: true } | { ok: false; retryAfterMs: number };

export interface Throttles {
  /** Takes `count` tokens of `rate` under `key` at `now`, or takes none and says when they would all be there. */
  take(key: string, rate: Rate, count: number, now: number): ThrottleAnswer;
  /** How many tokens `take` would give right now (0 to rate.burst). */
  available(key: string, rate: Rate, now: number): number;
}

/** Keys not touched for this long are forgotten: an idle key's state equals a fresh one's once its TAT has passed. */
const SWEEP_EVERY = 10_000;

export class LocalThrottles implements Throttles {
  /** Theoretical arrival time per key: when the bucket is empty again, as if every token had been spaced evenly. */
  private readonly arrivals = new Map<string, number>();
  private takes = 0;

  take(key: string, rate: Rate, count: number, now: number): ThrottleAnswer {
    const interval = rate.periodMs / rate.count;
    const tolerance = interval * rate.burst;
    const arrival = Math.max(this.arrivals.get(key) ?? now, now) + interval * count;
    // More than a burst at once can never fit: the caller splits to `available` first.
    if (arrival - now > tolerance) return { ok: false, retryAfterMs: Math.ceil(arrival - now - tolerance) };
    this.arrivals.set(key, arrival);
    if (++this.takes % SWEEP_EVERY === 0) this.sweep(now);
    return { ok: true };
  }

  available(key: string, rate: Rate, now: number): number {
    const interval = rate.periodMs / rate.count;
    const used = Math.max((this.arrivals.get(key) ?? now) - now, 0);
    return Math.max(0, Math.floor((interval * rate.burst - used) / interval + 1e-9));
  }

  private sweep(now: number): void {
    for (const [key, arrival] of this.arrivals) if (arrival <= now) this.arrivals.delete(key);
  }
}
