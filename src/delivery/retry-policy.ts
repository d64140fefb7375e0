import { parseDuration } from '../config/units.js';
import { ConfigError } from '../shared/errors.js';

/**
 * When to try a deferred recipient again: the schedule is data (Haraka's `temp_fail_intervals`), the decision a
 * pure function of it, so the scheduler only stores the number it returns.
 */

const FLAG = '--retry-schedule';
/** The last step repeats for ever, so a longer list buys nothing; the cap keeps `1m*1000000000` from eating memory. */
const MAX_REPEAT = 1000;

/** `1m,5m*2,1h` → [60000, 300000, 300000, 3600000]. Every wait must be positive: a zero wait retries in a hot loop. */
export function parseRetrySchedule(text: string): number[] {
  const schedule: number[] = [];
  for (const item of text.split(',')) {
    const match = /^([^*]*?)\s*(?:\*\s*(\S*))?$/.exec(item.trim());
    const durationText = match?.[1] ?? '';
    if (durationText === '') throw new ConfigError(`${FLAG}: "${text}" has an empty item (use e.g. 1m,5m*2,1h)`);
    const wait = parseDuration(durationText, FLAG);
    if (wait <= 0) throw new ConfigError(`${FLAG}: "${durationText}" is not a positive wait`);
    const countText = match?.[2];
    const count = countText === undefined ? 1 : /^\d+$/.test(countText) ? Number(countText) : NaN;
    if (!(count >= 1 && count <= MAX_REPEAT)) throw new ConfigError(`${FLAG}: "${item.trim()}" repeats a step other than 1 to ${MAX_REPEAT} times`);
    for (let i = 0; i < count; i++) schedule.push(wait);
  }
  return schedule;
}

export interface RetryInput {
  /** Non-empty, as parseRetrySchedule returns it. */
  schedule: readonly number[];
  /** Attempts made so far, the one that just failed included (≥ 1). */
  attempts: number;
  /** When we accepted the message (epoch ms): its lifetime counts from here, not from the first attempt. */
  arrivedAt: number;
  now: number;
  maxQueueTime: number;
}

/**
 * Epoch ms of the next attempt, or null when the lifetime is over and the recipient expires. The wait after attempt
 * n is schedule[n-1], the last step repeating; the result is capped at the end of the lifetime so a long step
 * never skips the final attempt Postfix would make just before `maximal_queue_lifetime` runs out.
 */
export function nextAttemptAt(p: RetryInput): number | null {
  const expiresAt = p.arrivedAt + p.maxQueueTime;
  if (p.now >= expiresAt) return null;
  const step = Math.min(Math.max(p.attempts, 1), p.schedule.length) - 1;
  const wait = p.schedule[step] ?? 0;
  return Math.min(p.now + wait, expiresAt);
}
