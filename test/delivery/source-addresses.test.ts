import assert from 'node:assert/strict';
import { readdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parsePolicy, type Policy } from '../../src/config/policy.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { BackoffStore } from '../../src/spool/backoff-store.js';
import { DaemonProcess, runMtaQueue } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';

/**
 * Source addresses against a real MX on loopback (127.0.1.x can be bound on Linux without configuration): the
 * pool is chosen by AUTH user, then by sender domain; its addresses take turns, each binding its address and
 * saying its own EHLO name, and one backed off for the site is skipped.
 */
const POLICY = `
[pools.tenant]
sources = ["127.0.1.1", "127.0.1.2"]
[pools.shop]
sources = ["127.0.1.3"]
[sources."127.0.1.1"]
ehlo = "a.out.test"
[sources."127.0.1.2"]
ehlo = "b.out.test"
[users.alice]
pool = "tenant"
[senders."shop.example"]
pool = "shop"
`;
const MESSAGE = 'From: someone\nTo: someone\nSubject: sources\n\nbody\n';

describe('source addresses', () => {
  let f: DeliveryFixture;
  const policy: Policy = parsePolicy(POLICY, 'policy.toml');
  const runOnce = async () => {
    const runner = new QueueRunner({ ...f.config, concurrency: 1 }, f.deps({ policy: () => policy }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
  };
  const sent = async (count: number) => (await f.mx.mxes[0]!.waitForMessages(count)).slice(-count).map((mail) => `${mail.peer} ${mail.ehloName}`);
  const purge = async () => {
    for (const dir of ['incoming', 'deferred', 'data', 'state'] as const) for (const name of await readdir(f.layout.dir(dir))) await unlink(path.join(f.layout.dir(dir), name));
  };

  before(async () => {
    f = await startDeliveryFixture([{ name: 'mx.dest.test' }], (hosts) => ({
      'dest.test': { mx: [{ preference: 10, exchange: 'mx.dest.test' }] },
      'mx.dest.test': { a: [hosts[0]!] },
    }));
  });
  after(() => f.close());

  test("a user's mail leaves from its pool's addresses in turn, each with its EHLO name, on connections of its own", async () => {
    for (let i = 0; i < 4; i++) await f.enqueue('alice@tenant.example', [`r${i}@dest.test`], MESSAGE, { user: 'alice' });
    await runOnce();
    assert.deepEqual(await sent(4), ['127.0.1.1 a.out.test', '127.0.1.2 b.out.test', '127.0.1.1 a.out.test', '127.0.1.2 b.out.test']);
    await purge();
  });

  test("a sender domain's pool; without an ehlo its address says --hostname; a user's pool wins over the sender's", async () => {
    await f.enqueue('news@shop.example', ['s1@dest.test'], MESSAGE, { user: 'bob' });
    await runOnce();
    assert.deepEqual(await sent(1), ['127.0.1.3 relay.test']);
    await f.enqueue('news@shop.example', ['s2@dest.test'], MESSAGE, { user: 'alice' });
    await runOnce();
    assert.match((await sent(1))[0]!, /^127\.0\.1\.[12] [ab]\.out\.test$/);
    await f.enqueue('someone@elsewhere.example', ['s3@dest.test'], MESSAGE, { user: null });
    await runOnce();
    assert.deepEqual(await sent(1), ['127.0.0.1 relay.test'], 'outside every pool: the machine’s own address, as before');
    await purge();
  });

  test('an address backed off for the site is skipped for the next one of its pool', async () => {
    const now = f.clock.now();
    await new BackoffStore(f.layout).put({ site: 'mx.dest.test', source: '127.0.1.1', rule: 'file rule 1', action: 'suspend', since: now, until: now + 3_600_000, reply: '421 4.7.0 [TSS04] try later', shaping: {} }, now);
    for (let i = 0; i < 3; i++) await f.enqueue('alice@tenant.example', [`b${i}@dest.test`], MESSAGE, { user: 'alice' });
    await runOnce();
    assert.deepEqual(await sent(3), ['127.0.1.2 b.out.test', '127.0.1.2 b.out.test', '127.0.1.2 b.out.test']);
    assert.deepEqual(await f.files('deferred'), []);
    await purge();
  });

  test('a pool address not on this machine is skipped and logged; a pool with no local address is exit 2, one line', async () => {
    const file = path.join(f.layout.root, '..', 'nodes.toml');
    // 192.0.2.0/24 is TEST-NET-1: no machine has it.
    await writeFile(file, '[pools.bulk]\nsources = ["127.0.1.1", "192.0.2.10"]\n[users.alice]\npool = "bulk"\n');
    const started = await runMtaQueue(['--once', '--spool', f.layout.root, '--policy', file]);
    assert.equal(started.code, 0, started.stderr);
    const logged = started.stdout.split('\n').filter((line) => line.includes('pool-address-not-local')).map((line) => JSON.parse(line));
    assert.deepEqual(logged.map(({ pool, address }) => ({ pool, address })), [{ pool: 'bulk', address: '192.0.2.10' }]);

    await writeFile(file, '[pools.bulk]\nsources = ["192.0.2.10", "192.0.2.11"]\n');
    const refused = await runMtaQueue(['--once', '--spool', f.layout.root, '--policy', file]);
    assert.equal(refused.code, 2);
    assert.deepEqual(refused.errors, ['mta-queue: --policy: no address of pool "bulk" is local on this machine (192.0.2.10, 192.0.2.11)']);
  });

  test('on SIGHUP the check is made again: a new non-local address is logged, a pool with none local keeps the policy in force', async () => {
    const file = path.join(f.layout.root, '..', 'reload.toml');
    await writeFile(file, '[pools.bulk]\nsources = ["127.0.1.1"]\n');
    const queue = DaemonProcess.start('mta-queue', ['--spool', f.layout.root, '--policy', file, '--poll-interval', '1s']);
    try {
      await queue.waitForEvent('started');
      assert.equal(queue.logs.filter((line) => line.event === 'pool-address-not-local').length, 0);
      await writeFile(file, '[pools.bulk]\nsources = ["127.0.1.1", "192.0.2.20"]\n');
      queue.signal('SIGHUP');
      assert.equal((await queue.waitForEvent('pool-address-not-local')).address, '192.0.2.20');
      await writeFile(file, '[pools.bulk]\nsources = ["192.0.2.21"]\n');
      queue.signal('SIGHUP');
      assert.match(String((await queue.waitForEvent('policy-invalid')).msg), /no address of pool "bulk" is local on this machine \(192\.0\.2\.21\)/);
      queue.signal('SIGTERM');
      assert.equal((await queue.exit()).code, 0);
    } finally {
      if (queue.child.exitCode === null) queue.child.kill('SIGKILL');
    }
  });
});
