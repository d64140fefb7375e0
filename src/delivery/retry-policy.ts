/**
 * When to try a deferred recipient again: the schedule is data (Haraka's `temp_fail_intervals`), the decision a
 * pure function of it, so the scheduler only stores the number it returns.
 */
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
