import assert from 'node:assert/strict';
import { watch } from 'node:fs';
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { newLeaseToken, procProcessTable } from '../../src/cli/process-table.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { serializeEnvelope } from '../../src/spool/envelope.js';
import { QueueAdmin } from '../../src/spool/queue-admin.js';
import { scanQueue } from '../../src/spool/queue-listing.js';
import { deferredName, parseDeferredName } from '../../src/spool/entry-names.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { readSpooled } from '../helpers/spool-reader.js';

const MX = { ok: 0, later: 1, reject: 2, silent: 3 } as const;
const H = 3_600_000;

const message = (seq: string) => `From: app@shop.example\nSubject: ${seq}\nX-Seq: ${seq}\n\nbody of ${seq}\n`;

/**
 * Messages committed together by mta-server share one batch file (docs/spool.md). Each must still be delivered,
 * deferred, bounced, given back and administered on its own, and never twice from the batch.
 */
describe('mta-queue and batch files', () => {
  let f: DeliveryFixture;
  const mx = (name: keyof typeof MX) => f.mx.mxes[MX[name]]!;
  const seqs = (name: keyof typeof MX) => mx(name).messages.map((mail) => /X-Seq: (\S+)/.exec(mail.raw.toString())?.[1]);
  const claimed = async () => (await readdir(f.layout.dir('active'))).length ? (await Promise.all((await readdir(f.layout.dir('active'))).map((owner) => readdir(path.join(f.layout.dir('active'), owner))))).flat() : [];

  before(async () => {
    f = await startDeliveryFixture(
      [{ name: 'mx.ok.test' }, { rcpt: [{ code: 451, message: 'Try later' }] }, { rcpt: [{ code: 550, message: 'No such user here' }] }, { greeting: 'silent' }],
      (hosts) => ({
        'ok.test': { a: [hosts[MX.ok]!] },
        'shop.example': { a: [hosts[MX.ok]!] },
        'later.test': { a: [hosts[MX.later]!] },
        'reject.test': { a: [hosts[MX.reject]!] },
        'silent.test': { a: [hosts[MX.silent]!] },
      }),
    );
  });
  afterEach(() => {
    f.clock.time = Date.now();
  });
  after(() => f.close());

  test('one batch, three outcomes: delivered, deferred into an entry of its own, bounced with a DSN quoting its headers', async () => {
    const [delivered, deferred, bounced] = await f.enqueueBatch([
      { sender: 'app@shop.example', recipients: ['a@ok.test'], message: message('b-ok') },
      { sender: 'app@shop.example', recipients: ['b@later.test'], message: message('b-later') },
      { sender: 'app@shop.example', recipients: ['c@reject.test'], message: message('b-reject') },
    ]);
    const deferredBytes = (await readSpooled(f.layout.root, deferred!)).message;
    await f.runOnce();
    assert.deepEqual(seqs('ok').filter((seq) => seq === 'b-ok'), ['b-ok'], 'delivered once');
    const dsn = mx('ok').messages.find((mail) => mail.from === '' && mail.raw.toString().includes(bounced!));
    assert.ok(dsn, 'DSN to the sender');
    assert.match(dsn.raw.toString(), /X-Seq: b-reject/, 'the DSN quotes the original header block, read from the batch');
    assert.equal(f.logs.lines().filter((line) => line.queueId === delivered && line.event === 'delivered').length, 1);

    // The deferred message now has the classic pair: its bytes in data/, its envelope under its due time.
    const [entry, ...others] = (await f.files('deferred')).map((name) => parseDeferredName(name)!);
    assert.deepEqual(others, []);
    assert.equal(entry!.id, deferred);
    assert.deepEqual(await readFile(f.layout.messagePath(deferred!)), deferredBytes, 'byte for byte');
    const state = JSON.parse(await readFile(path.join(f.layout.dir('deferred'), entry!.name), 'utf8'));
    assert.equal(state.recipients[0].state, 'deferred');
    assert.equal(state.recipients[0].lastReply.code, 451);
    assert.deepEqual([...(await f.files('incoming')), ...(await claimed())], [], 'the batch is gone once every message settled');

    // The retry reads the entry of its own, not the batch.
    f.clock.advance(2 * 60_000);
    await f.runOnce();
    const retried = JSON.parse(await readFile(path.join(f.layout.dir('deferred'), (await f.files('deferred'))[0]!), 'utf8'));
    assert.equal(retried.recipients[0].attempts, 2);
  });

  test('a batch recovered after a crash skips the message that already had an entry of its own: no second entry, no second delivery', async () => {
    const [detached, pending] = await f.enqueueBatch([
      { sender: 'app@shop.example', recipients: ['d@ok.test'], message: message('r-detached') },
      { sender: 'app@shop.example', recipients: ['e@ok.test'], message: message('r-pending') },
    ]);
    // What a process that died mid-batch leaves: its claim of the batch, and the message it had deferred.
    const { envelope } = await readSpooled(f.layout.root, detached!);
    const due = f.clock.now() + H;
    await writeFile(f.layout.messagePath(detached!), (await readSpooled(f.layout.root, detached!)).message);
    await writeFile(path.join(f.layout.dir('deferred'), deferredName(detached!, due)), serializeEnvelope({ ...envelope, nextAttemptAt: due }));
    const deadClaims = path.join(f.layout.dir('active'), '999999999');
    await mkdir(deadClaims, { recursive: true });
    await rename(path.join(f.layout.dir('incoming'), `${detached}.batch`), path.join(deadClaims, `${detached}.batch`));

    await f.runOnce();
    assert.deepEqual(seqs('ok').filter((seq) => seq?.startsWith('r-')), ['r-pending']);
    assert.deepEqual((await f.files('deferred')).filter((name) => name.includes(detached!)), [deferredName(detached!, due)], 'still exactly one entry');
    assert.equal(f.logs.lines().filter((line) => line.queueId === pending && line.event === 'delivered').length, 1);
    assert.deepEqual([...(await f.files('incoming')), ...(await claimed())], []);
  });

  test('at shutdown, messages of a claimed batch not delivered yet go back to the queue one by one: the one in flight to incoming/, those waiting for their site held back until now', async () => {
    const ids = await f.enqueueBatch(['s1', 's2', 's3'].map((seq) => ({ sender: 'app@shop.example', recipients: [`${seq}@silent.test`], message: message(seq) })));
    const runner = new QueueRunner({ ...f.config, concurrency: 1, shutdownTimeout: 300 }, f.deps());
    const sessions = mx('silent').sessions;
    await runner.start({ watch: false });
    void runner.drain();
    const deadline = Date.now() + 10_000;
    while (mx('silent').sessions === sessions && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await runner.close();
    const released = f.logs.events('stopped').at(-1)?.released as string[];
    assert.equal(released.length, 1, 'the transaction in flight is given back');
    const waited = ids.filter((id) => !released.includes(id));
    assert.deepEqual((await f.files('incoming')).filter((name) => ids.some((id) => name.includes(id))), [`${released[0]}.json`]);
    assert.deepEqual(f.logs.events('held-back').map((line) => line.queueId).sort(), [...waited].sort(), 'the two waiting for the one connection are held back, no attempt counted');
    for (const [index, id] of ids.entries()) assert.match(await readFile(f.layout.messagePath(id), 'utf8'), new RegExp(`X-Seq: s${index + 1}`));
    assert.deepEqual(await claimed(), [], 'the batch is gone');
    // The delivery still in flight at shutdown ends later; it must not give its message a second entry.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const entries = (await scanQueue(f.layout)).filter((entry) => ids.includes(entry.id));
    assert.deepEqual(entries.map((entry) => `${entry.id} ${entry.state}`).sort(), ids.map((id) => `${id} ${released.includes(id) ? 'incoming' : 'deferred'}`).sort());
    for (const entry of entries.filter((item) => item.state === 'deferred')) assert.deepEqual(entry.envelope?.recipients.map((r) => [r.attempts, r.heldBack?.reason]), [[0, 'held back: mta-queue is stopping']]);
    // Out of the way of the next test: the silent MX would hold them for good.
    for (const dir of ['incoming', 'deferred', 'data'] as const) for (const name of await f.files(dir)) if (ids.some((id) => name.includes(id))) await unlink(path.join(f.layout.dir(dir), name));
  });

  test('holding one message of a batch splits the batch: the others stay queued on their own and are delivered', async () => {
    const [keep1, held, keep2] = await f.enqueueBatch(['h-keep1', 'h-held', 'h-keep2'].map((seq) => ({ sender: 'app@shop.example', recipients: [`${seq}@ok.test`], message: message(seq) })));
    const admin = new QueueAdmin(f.layout, f.logs.logger, procProcessTable(), newLeaseToken());
    const item = (await scanQueue(f.layout)).find((entry) => entry.id === held)!;
    assert.ok(item.source, 'listed from inside its batch');
    assert.deepEqual(await admin.apply('hold', item), { done: true });
    await admin.sync();
    assert.deepEqual(await f.files('incoming'), [keep1, keep2].map((id) => `${id}.json`).sort());
    assert.deepEqual(await readdir(f.layout.dir('held')), [`${held}.json`]);
    assert.match((await readSpooled(f.layout.root, held!)).message.toString(), /X-Seq: h-held/);
    await f.runOnce();
    assert.deepEqual(seqs('ok').filter((seq) => seq?.startsWith('h-')).sort(), ['h-keep1', 'h-keep2']);
    assert.deepEqual(await readdir(f.layout.dir('held')), [`${held}.json`], 'held stays held');
  });

  test('a bulk command acting on several messages of one batch splits it once and acts on each', async () => {
    const ids = await f.enqueueBatch(['m-del1', 'm-keep', 'm-del2'].map((seq) => ({ sender: 'spam@shop.example', recipients: [`${seq}@ok.test`], message: message(seq) })));
    const [del1, keep, del2] = ids;
    const admin = new QueueAdmin(f.layout, f.logs.logger, procProcessTable(), newLeaseToken());
    const selected = (await scanQueue(f.layout)).filter((entry) => entry.id === del1 || entry.id === del2);
    admin.plan(selected);
    const before = f.logs.events('deleted').length;
    const seen = new Set<string>();
    const watcher = watch(f.layout.dir('incoming'), (_event, name) => name && seen.add(name));
    for (const entry of selected) assert.deepEqual(await admin.apply('delete', entry), { done: true });
    await admin.sync();
    await new Promise((resolve) => setTimeout(resolve, 100));
    watcher.close();
    assert.ok(![...seen].some((name) => name.startsWith(del2!)), 'the second selected message never got an entry of its own');
    assert.deepEqual(f.logs.events('deleted').slice(before).map((line) => line.queueId).sort(), [del1, del2].sort());
    assert.deepEqual(await f.files('incoming'), [`${keep}.json`], 'only the message not selected got an entry of its own');
    assert.deepEqual((await f.files('data')).filter((name) => ids.some((id) => name.startsWith(id!))), [`${keep}.eml`]);
    assert.deepEqual(await claimed(), []);
    assert.deepEqual(await readdir(f.layout.dir('tmp')), []);
    await f.runOnce();
    assert.deepEqual(seqs('ok').filter((seq) => seq?.startsWith('m-')), ['m-keep']);
  });

  test('a running mta-queue recovers the claim of a process that died meanwhile, without waiting for a restart', async () => {
    const runner = new QueueRunner({ ...f.config, pollInterval: 100 }, f.deps());
    await runner.start({ watch: true });
    try {
      // What an admin command (or another mta-queue) that died mid-batch leaves behind.
      const [id] = await f.enqueueBatch([{ sender: 'app@shop.example', recipients: ['late@ok.test'], message: message('w-recovered') }]);
      const deadClaims = path.join(f.layout.dir('active'), '999999998');
      await mkdir(deadClaims, { recursive: true });
      await rename(path.join(f.layout.dir('incoming'), `${id}.batch`), path.join(deadClaims, `${id}.batch`));
      const deadline = Date.now() + 10_000;
      while (!seqs('ok').includes('w-recovered') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(seqs('ok').includes('w-recovered'), 'delivered after recovery');
      assert.ok(f.logs.events('recovered').some((line) => (line.queueIds as string[]).includes(id!)));
      assert.deepEqual(await readdir(f.layout.dir('active')), [path.basename(runner.claimDirectory)], 'the claim directory of the dead process is gone');
    } finally {
      await runner.close();
    }
  });
});
