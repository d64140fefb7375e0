import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthThrottle } from '../../src/intake/auth-throttle.js';

function throttleAt(start = 0) {
  const clock = { time: start, now: () => clock.time };
  return { clock, throttle: new AuthThrottle({ maxFailures: 5, window: 600_000, blockFor: 900_000 }, clock) };
}

test('the fifth failure within the window blocks the address for blockFor', () => {
  const { clock, throttle } = throttleAt();
  for (let i = 1; i <= 4; i++) {
    assert.equal(throttle.recordFailure('192.0.2.1'), false, `failure ${i}`);
    clock.time += 60_000;
  }
  assert.equal(throttle.recordFailure('192.0.2.1'), true);
  assert.equal(throttle.isBlocked('192.0.2.1'), true);
  assert.equal(throttle.isBlocked('192.0.2.2'), false, 'other addresses unaffected');
  clock.time += 899_999;
  assert.equal(throttle.isBlocked('192.0.2.1'), true);
  clock.time += 1;
  assert.equal(throttle.isBlocked('192.0.2.1'), false, 'unblocked after blockFor');
});

test('failures older than the window do not count', () => {
  const { clock, throttle } = throttleAt();
  for (let i = 0; i < 4; i++) throttle.recordFailure('192.0.2.1');
  clock.time += 600_001;
  assert.equal(throttle.recordFailure('192.0.2.1'), false);
});

test('a success clears the failure count', () => {
  const { throttle } = throttleAt();
  for (let i = 0; i < 4; i++) throttle.recordFailure('192.0.2.1');
  throttle.recordSuccess('192.0.2.1');
  assert.equal(throttle.recordFailure('192.0.2.1'), false);
});
