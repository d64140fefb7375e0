import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRetrySchedule } from '../../src/config/retry-schedule.js';
import { nextAttemptAt } from '../../src/delivery/retry-policy.js';
import { ConfigError } from '../../src/shared/errors.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

test('retry schedule: durations, repeats and whitespace', () => {
  for (const [text, expected] of [
    ['1m,5m,15m,30m,1h,2h,4h', [M, 5 * M, 15 * M, 30 * M, H, 2 * H, 4 * H]],
    ['1m,5m*2,1h', [M, 5 * M, 5 * M, H]],
    ['5m*3', [5 * M, 5 * M, 5 * M]],
    [' 30s , 5m * 2 ,\t1h ', [30 * S, 5 * M, 5 * M, H]],
    ['2h', [2 * H]],
    ['1d*1', [D]],
  ] as const) assert.deepEqual(parseRetrySchedule(text), expected, text);
});

test('retry schedule: bad input is a ConfigError naming the flag', () => {
  for (const bad of ['', ' ', '1m,,5m', '1m,', ',1m', '5m*0', '5m*', '*3', '5m*-1', '5m*1.5', '5m*x', '5m*2*2', '5x', '1 m', '0m', '5m*1001']) {
    assert.throws(
      () => parseRetrySchedule(bad),
      (error: unknown) => error instanceof ConfigError && error.message.startsWith('--retry-schedule:'),
      JSON.stringify(bad),
    );
  }
});

test('next attempt: schedule step per attempt, last step repeats, capped at the end of the lifetime', () => {
  const schedule = [M, 5 * M, H];
  const arrivedAt = 1_000_000_000_000;
  const maxQueueTime = 5 * D;
  const end = arrivedAt + maxQueueTime;
  const cases: Array<{ name: string; attempts: number; now: number; expected: number | null }> = [
    { name: 'first failure waits the first step', attempts: 1, now: arrivedAt, expected: arrivedAt + M },
    { name: 'second failure waits the second step', attempts: 2, now: arrivedAt + 2 * M, expected: arrivedAt + 7 * M },
    { name: 'third failure waits the last step', attempts: 3, now: arrivedAt + 10 * M, expected: arrivedAt + 70 * M },
    { name: 'the last step repeats', attempts: 4, now: arrivedAt + 2 * H, expected: arrivedAt + 3 * H },
    { name: 'and repeats for ever', attempts: 500, now: arrivedAt + 3 * D, expected: arrivedAt + 3 * D + H },
    { name: 'a step past the end is cut to one last attempt at the end', attempts: 9, now: end - 10 * M, expected: end },
    { name: 'just before the end: one last attempt right at the end', attempts: 9, now: end - 1, expected: end },
    { name: 'a step landing exactly on the end is kept', attempts: 9, now: end - H, expected: end },
    { name: 'exactly at the lifetime: expire', attempts: 9, now: end, expected: null },
    { name: 'past the lifetime: expire', attempts: 9, now: end + H, expected: null },
    { name: 'attempts below 1 count as the first', attempts: 0, now: arrivedAt, expected: arrivedAt + M },
  ];
  for (const c of cases) {
    assert.equal(nextAttemptAt({ schedule, attempts: c.attempts, arrivedAt, now: c.now, maxQueueTime }), c.expected, c.name);
  }
});

test('next attempt: a one-step schedule and a lifetime shorter than the first step', () => {
  assert.equal(nextAttemptAt({ schedule: [10 * M], attempts: 1, arrivedAt: 0, now: 0, maxQueueTime: H }), 10 * M);
  assert.equal(nextAttemptAt({ schedule: [10 * M], attempts: 7, arrivedAt: 0, now: 55 * M, maxQueueTime: H }), H);
  assert.equal(nextAttemptAt({ schedule: [H], attempts: 1, arrivedAt: 0, now: 30 * S, maxQueueTime: M }), M);
  assert.equal(nextAttemptAt({ schedule: [H], attempts: 2, arrivedAt: 0, now: M, maxQueueTime: M }), null);
});
