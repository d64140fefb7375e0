import assert from 'node:assert/strict';
import { test } from 'node:test';
import { builtInPolicy, parsePolicy } from '../../src/config/policy.js';
import { Backoffs } from '../../src/delivery/backoffs.js';
import type { RecordedReply } from '../../src/spool/envelope.js';
import { LogCapture } from '../helpers/log-capture.js';

const HOUR = 3_600_000;
const reply = (code: number, enhanced: string, text: string): RecordedReply => ({ code, enhanced, text });

test('the built-in rules, as a table: which reply starts which back-off, for how long', async () => {
  const rules = builtInPolicy().rules;
  const cases: [RecordedReply, string | null, 'suspend' | 'throttle' | null, number | null][] = [
    [reply(421, '4.7.0', '[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints'), 'built-in rule 1', 'suspend', 2 * HOUR],
    [reply(421, '4.7.0', '[TS04] Messages from 192.0.2.1 temporarily deferred'), 'built-in rule 1', 'suspend', 2 * HOUR],
    [reply(421, '4.7.0', '[TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints'), 'built-in rule 2', 'throttle', 1.5 * HOUR],
    [reply(451, '4.7.650', 'The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.'), 'built-in rule 2', 'throttle', 1.5 * HOUR],
    [reply(550, '5.7.1', 'Unfortunately, messages from [192.0.2.1] weren\'t sent. (S3150)'), 'built-in rule 2', 'throttle', 1.5 * HOUR],
    [reply(421, '4.7.28', 'Our system has detected an unusual rate of unsolicited mail originating from your IP address.'), 'built-in rule 3', 'throttle', HOUR],
    [reply(421, '4.7.0', 'Too many concurrent connections from this IP'), 'built-in rule 4', 'throttle', 0.5 * HOUR],
    [reply(451, '4.7.1', 'Greylisted, try again in 5 minutes'), null, null, null],
    [reply(550, '5.1.1', 'No such user'), null, null, null],
    [reply(250, '2.0.0', 'Ok [TSS04] in a success is no back-off'), null, null, null],
  ];
  for (const [given, rule, action, duration] of cases) {
    const backoffs = new Backoffs(null, new LogCapture().logger);
    await backoffs.observeReply('site.example', 'default', given, rules, 0, 'q');
    const found = backoffs.find('site.example', 'default', 0);
    assert.deepEqual([found?.rule ?? null, found?.action ?? null, found ? found.until : null], [rule, action, duration], given.text);
  }
});

test('a file rule comes before the built-in ones; a throttle imposes its settings', async () => {
  const policy = parsePolicy('[[shaping.rule]]\nmatch = "TSS04"\naction = "throttle"\nmax_message_rate = "1/min"\nduration = "10m"\n', 'p');
  const backoffs = new Backoffs(null, new LogCapture().logger);
  await backoffs.observeReply('s', 'default', reply(421, '4.7.0', '[TSS04] deferred'), policy.rules, 0, 'q');
  const found = backoffs.find('s', 'default', 0)!;
  assert.deepEqual([found.rule, found.action, found.until, found.shaping.max_message_rate?.text], ['file rule 1', 'throttle', 600_000, '1/min']);
});

test('trigger "N/hour": the Nth match within an hour starts the back-off, matches older than an hour do not count', async () => {
  const policy = parsePolicy('[[shaping.rule]]\nmatch = "slow down"\naction = "suspend"\nduration = "1h"\ntrigger = "3/hour"\n', 'p');
  const backoffs = new Backoffs(null, new LogCapture().logger);
  const slowDown = reply(451, '4.7.1', 'please slow down');
  for (const [at, suspended] of [[0, false], [10 * 60_000, false], [HOUR + 5 * 60_000, false], [HOUR + 6 * 60_000, true]] as const) {
    await backoffs.observeReply('s', 'default', slowDown, policy.rules, at, 'q');
    assert.equal(backoffs.find('s', 'default', at) !== undefined, suspended, `at ${at / 60_000} min`);
  }
  assert.equal(backoffs.find('s', 'other-source', HOUR + 6 * 60_000), undefined, 'per source');
});

test('a suspension is not shortened or weakened by a throttle that matches meanwhile; it ends by itself', async () => {
  const rules = builtInPolicy().rules;
  const logs = new LogCapture();
  const backoffs = new Backoffs(null, logs.logger);
  await backoffs.observeReply('s', 'default', reply(421, '4.7.0', '[TSS04] deferred'), rules, 0, 'q');
  await backoffs.observeReply('s', 'default', reply(451, '4.7.650', 'rate limited due to IP reputation'), rules, 60_000, 'q');
  assert.deepEqual([backoffs.find('s', 'default', 60_000)?.action, backoffs.find('s', 'default', 60_000)?.until], ['suspend', 2 * HOUR]);
  assert.equal(backoffs.find('s', 'default', 2 * HOUR), undefined);
  assert.deepEqual(logs.events('backoff-ended').map((line) => line.site), ['s']);
});

test('the breaker: consecutive transactions that reached no MX, reset by one that did', async () => {
  const backoffs = new Backoffs(null, new LogCapture().logger);
  const shaping = { consecutive_connection_failures_before_delay: 3, connection_failure_delay: 60_000 };
  const refused = reply(421, '4.3.2', 'busy');
  for (const reachable of [false, false, true, false, false]) await backoffs.observeConnection('s', 'default', reachable, shaping, refused, 0, 'q');
  assert.equal(backoffs.find('s', 'default', 0), undefined, 'two in a row, twice: no delay');
  await backoffs.observeConnection('s', 'default', false, shaping, refused, 0, 'q');
  const delayed = backoffs.find('s', 'default', 0)!;
  assert.deepEqual([delayed.rule, delayed.action, delayed.until], ['connection-failures', 'suspend', 60_000]);
});
