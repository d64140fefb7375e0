import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parsePolicy } from '../../src/config/policy.js';
import { utcDayStart, warmupCapOn } from '../../src/config/warmup-day.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { runMtaQueue } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';

const DAY = 86_400_000;

test('warmupCapOn: day N of the list from warmup_start, in UTC days; day 1 before it; no cap after it', () => {
  const start = Date.UTC(2026, 11, 1);
  const source = { warmupStart: start, warmup: [50, 100, 500] };
  const table: [number, { cap: number; day: number; endsAt: number } | null][] = [
    [start - 5 * DAY, { cap: 50, day: 1, endsAt: start - 4 * DAY }],
    [start, { cap: 50, day: 1, endsAt: start + DAY }],
    [start + DAY - 1, { cap: 50, day: 1, endsAt: start + DAY }],
    [start + DAY, { cap: 100, day: 2, endsAt: start + 2 * DAY }],
    [start + 2 * DAY + 3_600_000, { cap: 500, day: 3, endsAt: start + 3 * DAY }],
    [start + 3 * DAY, null],
  ];
  for (const [now, expected] of table) assert.deepEqual(warmupCapOn(source, now), expected, new Date(now).toISOString());
  assert.equal(warmupCapOn({ ehlo: 'a.test' }, start), null);
  assert.equal(warmupCapOn(undefined, start), null);
});

describe('warm-up caps', () => {
  let f: DeliveryFixture;
  const today = () => new Date(f.clock.now()).toISOString().slice(0, 10);
  const policy = () => parsePolicy(`[pools.new]\nsources = ["127.0.1.4"]\n[sources."127.0.1.4"]\nehlo = "new.out.test"\nwarmup_start = "${today()}"\nwarmup = "2,3"\n[users.alice]\npool = "new"\n`, 'policy.toml');
  const runOnce = async () => {
    const current = policy();
    const runner = new QueueRunner({ ...f.config, maxQueueTime: 5 * DAY }, f.deps({ policy: () => current }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
  };

  before(async () => {
    f = await startDeliveryFixture([{ name: 'mx.dest.test' }], (hosts) => ({
      'dest.test': { mx: [{ preference: 10, exchange: 'mx.dest.test' }] },
      'mx.dest.test': { a: [hosts[0]!] },
    }));
  });
  after(() => f.close());

  test('past the cap the rest waits for the next UTC midnight, no attempt counted; the count survives a restart; list and show say why', async () => {
    const mx = f.mx.mxes[0]!;
    const midnight = new Date(utcDayStart(f.clock.now()) + DAY).toISOString().replace('.000Z', 'Z');
    const first = await f.enqueue('alice@tenant.example', ['a1@dest.test', 'a2@dest.test', 'a3@dest.test'], 'Subject: warm\n\nbody\n', { user: 'alice' });
    await runOnce();
    assert.deepEqual(mx.messages.map((mail) => [mail.peer, mail.to]), [['127.0.1.4', ['a1@dest.test', 'a2@dest.test']]]);
    const reason = `held back: warm-up cap of 127.0.1.4 for mx.dest.test (2/day, day 1) until ${midnight}`;
    assert.deepEqual(f.logs.events('held-back').map((line) => [line.queueId, line.recipients, line.reason]), [[first, ['a3@dest.test'], reason]]);
    assert.deepEqual(JSON.parse(await readFile(path.join(f.layout.dir('state'), 'warmup.json'), 'utf8')), { version: 1, day: today(), counts: { '127.0.1.4 mx.dest.test': 2 } });

    // A restart: the day's count is read back from the spool, so nothing more goes today.
    const second = await f.enqueue('alice@tenant.example', ['b1@dest.test'], 'Subject: warm\n\nbody\n', { user: 'alice' });
    await runOnce();
    assert.equal(mx.messages.length, 1, 'the cap still holds after a restart');
    const shown = await runMtaQueue(['show', second, '--spool', f.layout.root]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /b1@dest\.test\tdeferred\tattempts 0\t/);
    assert.ok(shown.stdout.includes(`    ${reason} (until ${midnight})`), shown.stdout);
    const listed = await runMtaQueue(['list', '--spool', f.layout.root]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(listed.stdout.split('\n').some((line) => line.startsWith(first) && line.endsWith(reason)), listed.stdout);

    // Day 2: a cap of 3, the two that waited go.
    f.clock.advance(utcDayStart(f.clock.now()) + DAY - f.clock.now() + 1_000);
    await runOnce();
    assert.deepEqual(mx.messages.slice(1).flatMap((mail) => mail.to).sort(), ['a3@dest.test', 'b1@dest.test']);
    assert.deepEqual(await f.files('deferred'), []);
  });

  test('an address at its cap is skipped for the next one of its pool', async () => {
    const mx = f.mx.mxes[0]!;
    const sent = mx.messages.length;
    const pool = parsePolicy(`[pools.pair]\nsources = ["127.0.1.5", "127.0.1.6"]\n[sources."127.0.1.5"]\nwarmup_start = "${today()}"\nwarmup = "1"\n[users.bob]\npool = "pair"\n`, 'policy.toml');
    for (let i = 0; i < 3; i++) await f.enqueue('bob@tenant.example', [`c${i}@dest.test`], 'Subject: warm\n\nbody\n', { user: 'bob' });
    const runner = new QueueRunner({ ...f.config, concurrency: 1 }, f.deps({ policy: () => pool }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
    assert.deepEqual(mx.messages.slice(sent).map((mail) => mail.peer), ['127.0.1.5', '127.0.1.6', '127.0.1.6']);
    assert.deepEqual(await f.files('deferred'), []);
  });
});
