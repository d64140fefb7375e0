import { parseDuration } from './units.js';
import { ConfigError } from '../shared/errors.js';

/** `--retry-schedule`: the waits between attempts, as data for delivery/retry-policy. */
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
