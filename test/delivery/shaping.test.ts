import assert from 'node:assert/strict';
import { readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parsePolicy } from '../../src/config/policy.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { systemClock } from '../../src/shared/clock.js';
import { groupBy } from '../../src/shared/collections.js';
import { scanQueue } from '../../src/spool/queue-listing.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { FakeMx } from '../helpers/mx-server.js';
import { runMtaQueue } from '../helpers/daemon-process.js';
import { eventually } from '../helpers/queue-harness.js';

/**
 * Delivery shaped per site (shared/design/dispatch.md) against real MXes on loopback: no head-of-line blocking,
 * back-offs from what a provider answers, the connection breaker, limits per MX address and per provider, rates
 * and the per-connection cap.
 */
const MX = { slow: 0, idle: 1, yahoo: 2, refuse: 3, tarpit: 4, good: 5, count: 6, google: 7 } as const;
const MESSAGE = 'From: news@shop.example\nTo: someone\nSubject: shaping\n\nbody\n';
const TSS04 = '[TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints';

describe('delivery shaping', () => {
  let f: DeliveryFixture;
  const mx = (name: keyof typeof MX): FakeMx => f.mx.mxes[MX[name]]!;
  const enqueue = async (domain: string, count: number) => {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push(await f.enqueue('news@shop.example', [`r${i}@${domain}`], MESSAGE));
    return ids;
  };
  /** Out of the way of the next test: held-back and deferred leftovers would be tried again there. */
  const purge = async () => {
    for (const dir of ['incoming', 'deferred', 'data', 'state'] as const) for (const name of await readdir(f.layout.dir(dir))) await unlink(path.join(f.layout.dir(dir), name));
  };

  before(async () => {
    f = await startDeliveryFixture(
      [
        { name: 'mx.slow.test', dataDelayMs: 1_500 },
        { name: 'mx.idle.test' },
        { name: 'mta5.am0.yahoodns.net', data: { code: 421, message: TSS04 } },
        { greeting: { code: 421, message: 'mx.refuse.test busy, try later' } },
        { name: 'tarpit.test', dataDelayMs: 4_000 },
        { name: 'mx.good.test' },
        { name: 'mx.count.test' },
        { name: 'aspmx.l.google.com', dataDelayMs: 400 },
      ],
      (hosts) => ({
        'slow.test': { mx: [{ preference: 10, exchange: 'mx.slow.test' }] },
        'mx.slow.test': { a: [hosts[MX.slow]!] },
        'idle.test': { mx: [{ preference: 10, exchange: 'mx.idle.test' }] },
        'mx.idle.test': { a: [hosts[MX.idle]!] },
        'yahoo.test': { mx: [{ preference: 1, exchange: 'mta5.am0.yahoodns.net' }] },
        'mta5.am0.yahoodns.net': { a: [hosts[MX.yahoo]!] },
        'refuse.test': { mx: [{ preference: 10, exchange: 'mx.refuse.test' }] },
        'mx.refuse.test': { a: [hosts[MX.refuse]!] },
        // Two names an attacker made up, on one address.
        'evil1.test': { mx: [{ preference: 10, exchange: 'mx.evil1.test' }] },
        'evil2.test': { mx: [{ preference: 10, exchange: 'mx.evil2.test' }] },
        'mx.evil1.test': { a: [hosts[MX.tarpit]!] },
        'mx.evil2.test': { a: [hosts[MX.tarpit]!] },
        'good.test': { mx: [{ preference: 10, exchange: 'mx.good.test' }] },
        'mx.good.test': { a: [hosts[MX.good]!] },
        'count.test': { mx: [{ preference: 10, exchange: 'mx.count.test' }] },
        'mx.count.test': { a: [hosts[MX.count]!] },
        'g1.test': { mx: [{ preference: 10, exchange: 'aspmx.l.google.com' }] },
        'g2.test': { mx: [{ preference: 10, exchange: 'alt1.aspmx.l.google.com' }] },
        'g3.test': { mx: [{ preference: 10, exchange: 'alt2.aspmx.l.google.com' }] },
        'aspmx.l.google.com': { a: [hosts[MX.google]!] },
        'alt1.aspmx.l.google.com': { a: [hosts[MX.google]!] },
        'alt2.aspmx.l.google.com': { a: [hosts[MX.google]!] },
      }),
    );
  });
  after(() => f.close());

  test('no head-of-line blocking: a message to an idle domain goes while 30 to a slow one wait for its only connection', async () => {
    await enqueue('slow.test', 30);
    const runner = new QueueRunner({ ...f.config, concurrency: 2, maxConnectionsPerDestination: 1, shutdownTimeout: 200 }, f.deps());
    await runner.start({ watch: true });
    try {
      await eventually(() => mx('slow').sessions > 0, 'the slow MX is busy');
      const [idle] = await enqueue('idle.test', 1);
      await eventually(() => f.logs.events('completed').some((line) => line.queueId === idle), 'the idle domain is delivered', 5_000);
      assert.ok(mx('slow').messages.length < 5, `the slow site still has most of its mail (${mx('slow').messages.length} of 30 delivered)`);
      assert.equal(mx('slow').peakSessions, 1, 'the slow site got its one connection, no more');
    } finally {
      await runner.close();
      await purge();
    }
  });

  test("a provider's [TSS04] suspends its site: one connection, not one per message per retry; the rest held back with the reason, no attempt counted", async () => {
    const ids = await enqueue('yahoo.test', 10);
    const runner = new QueueRunner({ ...f.config, concurrency: 5, maxConnectionsPerDestination: 1, retrySchedule: [1_000], maxQueueTime: 5 * 86_400_000, shutdownTimeout: 200 }, f.deps({ clock: systemClock }));
    await runner.start({ watch: true });
    try {
      await eventually(() => f.logs.events("held-back").filter((line) => ids.includes(String(line.queueId))).length >= 9, "the others are held back");
      // Long enough for the retry schedule (1 s) to have brought the first message back twice over.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      assert.equal(mx('yahoo').sessions, 1, 'one connection in all');
      const started = f.logs.events('backoff-started');
      assert.equal(started.length, 1);
      assert.deepEqual([started[0]!.site, started[0]!.rule, started[0]!.action], ['mta5.am0.yahoodns.net', 'built-in rule 1', 'suspend']);
    } finally {
      await runner.close();
    }
    const held = (await scanQueue(f.layout)).filter((item) => ids.includes(item.id) && item.envelope?.recipients[0]?.attempts === 0);
    assert.equal(held.length, 9);
    for (const item of held) {
      const recipient = item.envelope!.recipients[0]!;
      assert.equal(recipient.state, 'deferred');
      assert.match(recipient.heldBack?.reason ?? '', /^held back: mta5\.am0\.yahoodns\.net suspended until .* by built-in rule 1 \(421 .*\[TSS04\]/);
      assert.ok(recipient.dueAt! > Date.now() + 3_600_000, 'until the suspension ends');
      assert.equal(item.envelope!.nextAttemptAt, recipient.dueAt);
    }
    const shown = await runMtaQueue(['show', held[0]!.id, '--spool', f.layout.root]);
    assert.match(shown.stdout, /^    held back: mta5\.am0\.yahoodns\.net suspended until .* by built-in rule 1 \(421 .*\[TSS04\].*\) \(until .*\)$/m, 'show says why it waits');
    await purge();
  });

  test('a recipient whose queue lifetime ends before the back-off does expires now, 4.4.7 naming the back-off, and its sender hears of it', async () => {
    const ids = await enqueue('yahoo.test', 3);
    const runner = new QueueRunner({ ...f.config, concurrency: 5, maxConnectionsPerDestination: 1, maxQueueTime: 3_600_000 }, f.deps());
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
    const expired = f.logs.events('expired').filter((line) => ids.includes(String(line.queueId)));
    assert.equal(expired.length, 2, 'the two after the first reply: suspended for 2 h, past the 1 h lifetime');
    assert.equal(expired[0]!.enhanced, '4.4.7');
    assert.match(String(expired[0]!.reply), /^message expired while held back: mta5\.am0\.yahoodns\.net suspended until .* by built-in rule 1/);
    assert.equal(f.logs.events('bounce-queued').filter((line) => ids.includes(String(line.bounceOf))).length, 2);
    await purge();
  });

  test('a back-off survives a restart; policy resume lifts it and sends what it held back at once', async () => {
    // One connection at a time, so the suspension is in force before a second transaction could start.
    const runOnce = async () => {
      const runner = new QueueRunner({ ...f.config, maxConnectionsPerDestination: 1, maxQueueTime: 5 * 86_400_000 }, f.deps());
      await runner.start({ watch: false });
      await runner.drain();
      await runner.close();
    };
    await enqueue('yahoo.test', 3);
    const sessions = mx('yahoo').sessions;
    await runOnce();
    assert.equal(mx('yahoo').sessions, sessions + 1);
    await enqueue('yahoo.test', 1);
    await runOnce();
    assert.equal(mx('yahoo').sessions, sessions + 1, 'after a restart the suspension still holds: no connection');
    const resumed = await runMtaQueue(['policy', 'resume', 'mta5.am0.yahoodns.net', '--spool', f.layout.root]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /^lifted .*mta5\.am0\.yahoodns\.net/m);
    assert.match(resumed.stdout, /^3 held-back messages for mta5\.am0\.yahoodns\.net back in the queue, due now$/m);
    assert.equal((await f.files('incoming')).length, 3, (await f.files('incoming')).join(' '));
    await runOnce();
    assert.equal(mx('yahoo').sessions, sessions + 2, 'the released mail goes at once (and meets the provider again)');
    await purge();
  });

  test('a site whose MX refuses every greeting costs 10 connections, then the whole site waits (the breaker), not one per message', async () => {
    const ids = await enqueue('refuse.test', 15);
    const runner = new QueueRunner({ ...f.config, concurrency: 5, maxConnectionsPerDestination: 1 }, f.deps());
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
    assert.equal(mx('refuse').sessions, 10);
    assert.deepEqual(f.logs.events('backoff-started').filter((line) => line.site === 'mx.refuse.test').map((line) => line.rule), ['connection-failures']);
    const heldBack = f.logs.events('held-back').filter((line) => ids.includes(String(line.queueId)));
    assert.equal(heldBack.length, 5);
    assert.match(String(heldBack[0]!.reason), /suspended until .* by connection-failures \(421 .*busy, try later\)/);
    await purge();
  });

  test('two MX names on one tarpit address share its connection limit: good mail is not stalled behind them', async () => {
    await enqueue('evil1.test', 4);
    await enqueue('evil2.test', 4);
    const runner = new QueueRunner({ ...f.config, concurrency: 4, maxConnectionsPerDestination: 2, shutdownTimeout: 200 }, f.deps());
    await runner.start({ watch: true });
    try {
      await eventually(() => mx('tarpit').sessions >= 2, 'the tarpit holds its connections');
      const [good] = await enqueue('good.test', 1);
      await eventually(() => f.logs.events('completed').some((line) => line.queueId === good), 'good mail is delivered', 3_000);
      assert.equal(mx('tarpit').messages.length, 0, 'while the tarpit still holds its first transactions');
      assert.equal(mx('tarpit').peakSessions, 2, 'two connections to the address in all, not two per name');
    } finally {
      await runner.close();
      await purge();
    }
  });

  test('the policy shapes a domain: max_deliveries_per_connection and max_message_rate', async () => {
    const policy = parsePolicy('[shaping.domain."count.test"]\nmax_deliveries_per_connection = 2\nmax_message_rate = "5/sec"\n', 'policy.toml');
    await enqueue('count.test', 6);
    const runner = new QueueRunner({ ...f.config, concurrency: 1 }, f.deps({ clock: systemClock, policy: () => policy }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
    const messages = mx('count').messages;
    assert.equal(messages.length, 6);
    const perSession = [...groupBy(messages, (message) => message.session).values()].map((group) => group.length);
    assert.deepEqual(perSession, [2, 2, 2], 'QUIT after two transactions');
    // 5/sec with a burst of 1: a token every 200 ms, so six grants span a second (arrivals a little less: the
    // first waited for its connection); unshaped, the six take a few tens of milliseconds.
    assert.ok(messages.at(-1)!.at - messages[0]!.at >= 700, `spread over ${messages.at(-1)!.at - messages[0]!.at} ms`);
    await purge();
  });

  test("provider_connection_limit holds across the provider's sites", async () => {
    const policy = parsePolicy('[shaping.provider.google]\nprovider_connection_limit = 2\n', 'policy.toml');
    for (const domain of ['g1.test', 'g2.test', 'g3.test']) await enqueue(domain, 2);
    const runner = new QueueRunner({ ...f.config, concurrency: 10 }, f.deps({ policy: () => policy }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
    assert.equal(mx('google').messages.length, 6);
    assert.equal(mx('google').peakSessions, 2);
    await purge();
  });
});
