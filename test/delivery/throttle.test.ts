import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRate } from '../../src/config/policy-values.js';
import { LocalThrottles } from '../../src/delivery/throttle.js';

const rate = (text: string) => {
  const parsed = parseRate(text);
  assert.ok(parsed.ok);
  return parsed.value;
};

test('GCRA: tokens evenly spaced at burst 1; a take that does not fit takes nothing and says when it would', () => {
  const throttles = new LocalThrottles();
  const perSecond = rate('2/sec');
  const steps: [number, number, boolean | number][] = [
    // [time, tokens, ok or retryAfterMs]
    [0, 1, true],
    [0, 1, 500],
    [499, 1, 1],
    [500, 1, true],
    [700, 1, 300],
    [1000, 1, true],
    [5000, 2, 500],
    [5000, 1, true],
  ];
  for (const [now, count, expected] of steps) {
    const answer = throttles.take('k', perSecond, count, now);
    assert.deepEqual(answer, expected === true ? { ok: true } : { ok: false, retryAfterMs: expected }, `t=${now} n=${count}`);
  }
});

test('GCRA: a burst is usable at once after a quiet period, then refills one interval per token', () => {
  const throttles = new LocalThrottles();
  const bursty = rate('60/min, max_burst=5');
  assert.equal(throttles.available('k', bursty, 0), 5);
  assert.deepEqual(throttles.take('k', bursty, 5, 0), { ok: true });
  assert.equal(throttles.available('k', bursty, 0), 0);
  assert.deepEqual(throttles.take('k', bursty, 1, 0), { ok: false, retryAfterMs: 1000 });
  assert.equal(throttles.available('k', bursty, 2000), 2);
  assert.equal(throttles.available('k', bursty, 60_000), 5, 'never more than the burst');
  assert.deepEqual(throttles.take('k', bursty, 6, 60_000), { ok: false, retryAfterMs: 1000 }, 'more than a burst never fits: the caller splits');
  assert.equal(throttles.available('other', bursty, 0), 5, 'keys are independent');
});

test('GCRA over a day: 20000/day is one token every 4.32 s', () => {
  const throttles = new LocalThrottles();
  const daily = rate('20000/day');
  assert.deepEqual(throttles.take('k', daily, 1, 0), { ok: true });
  assert.deepEqual(throttles.take('k', daily, 1, 1000), { ok: false, retryAfterMs: 3320 });
  assert.deepEqual(throttles.take('k', daily, 1, 4320), { ok: true });
});
