import type { SourcePolicy } from './policy.js';

const DAY_MS = 86_400_000;

/** The start (00:00 UTC) of the UTC day `time` falls in: warm-up days and their counters turn over there. */
export function utcDayStart(time: number): number {
  return Math.floor(time / DAY_MS) * DAY_MS;
}

/** `2026-12-08`: how the counters file names its day. */
export function utcDayName(time: number): string {
  return new Date(utcDayStart(time)).toISOString().slice(0, 10);
}

/**
 * Today's warm-up cap of a source (recipients per provider), or null: none (no warm-up, or its list is over).
 * Day 1 is `warmup_start`; before it the address is treated as on day 1, the most careful cap.
 */
export function warmupCapOn(source: SourcePolicy | undefined, now: number): { cap: number; day: number; endsAt: number } | null {
  if (!source?.warmup || source.warmupStart === undefined) return null;
  const day = Math.max(1, Math.floor((utcDayStart(now) - utcDayStart(source.warmupStart)) / DAY_MS) + 1);
  if (day > source.warmup.length) return null;
  return { cap: source.warmup[day - 1]!, day, endsAt: utcDayStart(now) + DAY_MS };
}
