import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthThrottle, throttleKey } from '../../src/shared/auth-throttle.js';

function throttleAt(start = 0) {
  const clock = { time: start, now: () => clock.time };
  return { clock, throttle: new AuthThrottle({ maxFailures: 5, window: 600_000, blockFor: 900_000 }, clock) };
}

async function fail(throttle: AuthThrottle, address: string): Promise<boolean> {
  const attempt = await throttle.begin(address);
  assert.ok(attempt, `${address} may try`);
  return attempt.failed();
}

test('the fifth failure within the window blocks the address for blockFor', async () => {
  const { clock, throttle } = throttleAt();
  for (let i = 1; i <= 4; i++) {
    assert.equal(await fail(throttle, '192.0.2.1'), false, `failure ${i}`);
    clock.time += 60_000;
  }
  assert.equal(await fail(throttle, '192.0.2.1'), true);
  assert.equal(throttle.isBlocked('192.0.2.1'), true);
  assert.equal(await throttle.begin('192.0.2.1'), null, 'a blocked address gets no attempt');
  assert.equal(throttle.isBlocked('192.0.2.2'), false, 'other addresses unaffected');
  clock.time += 899_999;
  assert.equal(throttle.isBlocked('192.0.2.1'), true);
  clock.time += 1;
  assert.equal(throttle.isBlocked('192.0.2.1'), false, 'unblocked after blockFor');
});

test('failures older than the window do not count', async () => {
  const { clock, throttle } = throttleAt();
  for (let i = 0; i < 4; i++) await fail(throttle, '192.0.2.1');
  clock.time += 600_001;
  assert.equal(await fail(throttle, '192.0.2.1'), false);
});

test('a success between failures clears nothing: the fifth failure in the window still blocks', async () => {
  const { throttle } = throttleAt();
  for (let i = 0; i < 4; i++) await fail(throttle, '192.0.2.1');
  (await throttle.begin('192.0.2.1'))!.succeeded();
  assert.equal(await fail(throttle, '192.0.2.1'), true);
});

test('attempts in flight count: the sixth parallel attempt waits, and is refused once the first five failed', async () => {
  const { throttle } = throttleAt();
  const running = await Promise.all(Array.from({ length: 5 }, () => throttle.begin('192.0.2.1')));
  let sixth: unknown = 'pending';
  void throttle.begin('192.0.2.1').then((attempt) => (sixth = attempt));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(sixth, 'pending', 'no sixth check starts while five are in flight');
  const blocked = running.map((attempt) => attempt!.failed());
  assert.deepEqual(blocked, [false, false, false, false, true]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(sixth, null, 'the waiting attempt is refused: the address is blocked');
});

test('a waiting attempt gets its place when one in flight succeeds', async () => {
  const { throttle } = throttleAt();
  const running = await Promise.all(Array.from({ length: 5 }, () => throttle.begin('192.0.2.1')));
  const waiting = throttle.begin('192.0.2.1');
  running[0]!.succeeded();
  assert.ok(await waiting);
});

test('IPv6 clients are counted per /64: addresses of one prefix share a budget, another prefix has its own', async () => {
  assert.equal(throttleKey('2001:db8:1:2::1'), throttleKey('2001:0db8:0001:0002:ffff:1:2:3'));
  assert.notEqual(throttleKey('2001:db8:1:2::1'), throttleKey('2001:db8:1:3::1'));
  assert.equal(throttleKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(throttleKey('192.0.2.7'), '192.0.2.7');
  const { throttle } = throttleAt();
  for (let i = 1; i <= 4; i++) await fail(throttle, `2001:db8:1:2::${i}`);
  assert.equal(await fail(throttle, '2001:db8:1:2:abcd:ef01:2345:6789'), true, 'the fifth address of the /64 blocks it');
  assert.equal(throttle.isBlocked('2001:db8:1:2::99'), true, 'the whole /64 is blocked');
  assert.equal(throttle.isBlocked('2001:db8:1:3::1'), false, 'the next /64 is not');
});
