import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { countReceivedHeaders, HOP_LIMIT, loopReply } from '../../src/delivery/hop-limit.js';
import { crlf, eventually, startQueueHarness, TransportDouble, type QueueHarness } from '../helpers/queue-harness.js';

let h: QueueHarness;
beforeEach(async () => (h = await startQueueHarness()));
afterEach(() => h.close());

test('messages waiting for a stalled destination hold no shared slot: mail for other domains goes on', async () => {
  const transport = new TransportDouble((domain) => (domain === 'stalled.test' ? 'hold' : { code: 250, enhanced: '2.0.0' }));
  for (let i = 0; i < 6; i++) await h.enqueueOwn([`s${i}@stalled.test`]);
  const runner = h.runner(transport, { concurrency: 2, maxConnectionsPerDestination: 1 });
  await runner.start({ watch: true });
  try {
    await transport.waitForCalls(1);
    const fresh = await h.enqueueOwn(['someone@fine.test']);
    await eventually(() => h.logs.events('completed').some((line) => line.queueId === fresh), 'the other domain is delivered while the stalled one holds its only connection');
    assert.equal(transport.calls.filter((call) => call.domain === 'stalled.test').length, 1, 'one connection to the stalled destination, as capped');
  } finally {
    for (const call of transport.calls) call.answer();
    await runner.close();
  }
});

test(`a message with more than ${HOP_LIMIT} Received headers is bounced 5.4.6 without being sent; ${HOP_LIMIT} is still delivered`, async () => {
  const transport = new TransportDouble();
  const hops = (n: number) => Array.from({ length: n }, (_, i) => `Received: from hop${i}.example by relay.example; Tue, 1 Dec 2026 10:00:00 +0000\n`).join('');
  const looping = await h.enqueueOwn(['x@far.test'], `${hops(HOP_LIMIT + 1)}From: app@shop.example\nSubject: loop\n\nbody\n`);
  const fine = await h.enqueueOwn(['y@far.test'], `${hops(HOP_LIMIT)}From: app@shop.example\nSubject: fine\n\nbody\n`);
  const runner = h.runner(transport);
  await runner.start({ watch: false });
  await runner.drain();
  await runner.close();
  assert.deepEqual(transport.calls.filter((call) => call.domain === 'far.test').map((call) => call.recipients.join()), ['y@far.test'], 'the looping one never reaches the wire');
  const bounced = h.logs.events('bounced').find((line) => line.queueId === looping);
  assert.equal(bounced?.enhanced, '5.4.6');
  assert.match(String(bounced?.reply), /mail loop: the message has 51 Received headers/);
  assert.ok(h.logs.events('bounce-queued').some((line) => line.bounceOf === looping), 'the sender hears of it');
  assert.ok(h.logs.events('completed').some((line) => line.queueId === fine));
});

test('hop counting reads the header block only, case-insensitively', () => {
  const cases: [string, number][] = [
    ['Received: a\nreceived: b\nRECEIVED: c\n\nReceived: in the body\n', 3],
    ['Subject: x\n\n', 0],
    ['X-Received: not one\nReceived: one\n\n', 1],
    ['Received: a\n  continued\nReceived: b\n', 2],
  ];
  for (const [text, expected] of cases) assert.equal(countReceivedHeaders(crlf(text)), expected, JSON.stringify(text));
  assert.equal(loopReply(HOP_LIMIT), null);
  assert.equal(loopReply(HOP_LIMIT + 1)?.enhanced, '5.4.6');
});
