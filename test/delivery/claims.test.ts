import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { newLeaseToken, procProcessTable } from '../../src/cli/process-table.js';
import { LEASE_FILE, LEASE_TIMEOUT_MS } from '../../src/spool/claim-lease.js';
import { parseEnvelope } from '../../src/spool/envelope.js';
import { QueueAdmin } from '../../src/spool/queue-admin.js';
import { eventually, startQueueHarness, TransportDouble, type QueueHarness } from '../helpers/queue-harness.js';

let h: QueueHarness;
beforeEach(async () => (h = await startQueueHarness()));
afterEach(() => h.close());

const claimDirs = async () => (await readdir(h.layout.dir('active'))).sort();
const entriesIn = async (dir: string) => (await readdir(path.join(h.layout.dir('active'), dir))).filter((name) => name !== LEASE_FILE).sort();

describe('a late outcome after shutdown', () => {
  test('messages with entries of their own: a late 451 makes no second entry, a late 550 removes nothing and queues no DSN', async () => {
    const transport = new TransportDouble(() => 'hold');
    const grey = await h.enqueueOwn(['a@grey.test']);
    const gone = await h.enqueueOwn(['b@gone.test']);
    const runner = h.runner(transport);
    await runner.start({ watch: false });
    void runner.drain();
    await transport.waitForCalls(2);
    await runner.close(); // the 200 ms shutdown timeout passes with both deliveries in flight
    assert.deepEqual(await h.files('incoming'), [`${grey}.json`, `${gone}.json`].sort(), 'both given back');
    for (const call of transport.calls) call.answer(call.domain === 'grey.test' ? { code: 451, enhanced: '4.7.1', text: 'greylisted' } : { code: 550, enhanced: '5.1.1', text: 'no such user' });
    await eventually(() => h.logs.events('late-outcome').length === 2, 'both late outcomes logged');
    const items = await h.items();
    assert.deepEqual(items.map((item) => `${item.id} ${item.state}`).sort(), [`${grey} incoming`, `${gone} incoming`].sort(), 'one entry each, where it was given back');
    assert.deepEqual(await h.files('deferred'), [], 'the late 451 deferred nothing');
    assert.deepEqual(await h.files('data'), [`${grey}.eml`, `${gone}.eml`].sort(), 'the late 550 left the message of the handed-back envelope');
    assert.equal(h.logs.events('bounce-queued').length, 0, 'no DSN for a message that is still queued');
    for (const id of [grey, gone]) assert.ok(items.find((item) => item.id === id)!.envelope!.recipients.every((r) => r.state === 'pending'), `${id}: states as before the attempt`);
  });
});

describe('stranded claims', () => {
  test('a claimed batch that cannot be read now (EMFILE) stays claimed, is read again after the back-off and delivered', async () => {
    const transport = new TransportDouble();
    const [id] = await h.enqueueBatch([{ recipients: ['x@ok.test'] }]);
    h.fs.failWhen((call) => call.op === 'open-r' && call.path.includes(`${path.sep}active${path.sep}`) && call.path.endsWith(`${id}.batch`), 'EMFILE');
    const runner = h.runner(transport, { localErrorBackoff: 300 });
    await runner.start({ watch: true });
    try {
      await eventually(() => transport.calls.length === 1, 'delivered after the read error');
      await eventually(async () => (await entriesIn(path.basename(runner.claimDirectory))).length === 0, 'nothing left in the claim directory');
      assert.equal(h.logs.events('delivery-error').length, 1);
    } finally {
      await runner.close();
    }
  });

  test('a claimed batch still unreadable at shutdown goes back to incoming/', async () => {
    const [id] = await h.enqueueBatch([{ recipients: ['x@ok.test'] }]);
    h.fs.failWhen((call) => call.op === 'open-r' && call.path.endsWith(`${id}.batch`), 'EIO', 1000);
    const runner = h.runner(new TransportDouble());
    await runner.start({ watch: false });
    await eventually(() => h.logs.events('delivery-error').length === 1, 'the read error is logged');
    await runner.close();
    assert.deepEqual(await h.files('incoming'), [`${id}.recovered.batch`]);
    assert.deepEqual(await claimDirs(), [], 'the claim directory is gone');
  });

  test('a failed postpone keeps the message claimed and tries it again: with what the attempt achieved', async () => {
    let attempts = 0;
    const transport = new TransportDouble((domain) => (domain === 'grey.test' && ++attempts === 1 ? { code: 451, enhanced: '4.7.1', text: 'greylisted' } : { code: 250, enhanced: '2.0.0' }));
    const [id] = await h.enqueueBatch([{ recipients: ['a@ok.test', 'b@grey.test'] }]);
    // The defer's detach and then the postpone's both fail: the disk is full for a moment.
    h.fs.failWhen((call) => call.op === 'open-wx' && call.path.endsWith(`${id}.detach.eml`), 'ENOSPC', 2);
    const runner = h.runner(transport, { localErrorBackoff: 300 });
    await runner.start({ watch: false });
    await eventually(() => h.logs.events('spool-error').length === 1, 'the failed postpone is logged');
    assert.deepEqual(await h.files('deferred'), []);
    await eventually(() => h.logs.events('completed').some((line) => line.queueId === id), 'delivered on the next try', 5000);
    await runner.close();
    assert.deepEqual(transport.calls.map((call) => call.recipients.join()).sort(), ['a@ok.test', 'b@grey.test', 'b@grey.test'], 'the recipient delivered in the first attempt is not delivered again');
  });

  test('a deferral that got as far as the queue before its sync failed is postponed again, never delivered a second time', async () => {
    let greyAttempts = 0;
    const transport = new TransportDouble((domain) => (domain === 'grey.test' && ++greyAttempts === 1 ? { code: 451, enhanced: '4.7.1', text: 'greylisted' } : { code: 250, enhanced: '2.0.0' }));
    const [id] = await h.enqueueBatch([{ recipients: ['b@grey.test'] }]);
    // The defer's envelope is renamed into deferred/, then the sync of deferred/ fails; so does the postpone's.
    h.fs.failWhen((call) => call.op === 'syncDirectory' && call.path === h.layout.dir('deferred'), 'EIO', 2);
    const runner = h.runner(transport, { localErrorBackoff: 200 });
    await runner.start({ watch: false });
    await eventually(() => h.logs.events('spool-error').length === 1, 'the failed postpone is logged');
    await eventually(() => h.logs.events('delivery-error').length >= 2, 'the postpone is tried again after the back-off');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await runner.close();
    assert.equal(transport.calls.length, 1, 'one attempt: the retry only finished the postpone');
    const entries = (await h.files('deferred')).filter((name) => name.includes(id!));
    assert.equal(entries.length, 1, `one entry of its own: ${entries.join(', ')}`);
  });

  test('a failed defer of a batch member is postponed with the states the attempt reached', async () => {
    const transport = new TransportDouble((domain) => (domain === 'grey.test' ? { code: 451, enhanced: '4.7.1', text: 'greylisted' } : { code: 250, enhanced: '2.0.0' }));
    const [id] = await h.enqueueBatch([{ recipients: ['a@ok.test', 'b@grey.test'] }]);
    h.fs.failWhen((call) => call.op === 'open-wx' && call.path.endsWith(`${id}.detach.eml`), 'EIO');
    await h.runOnce(transport);
    const [name] = await h.files('deferred');
    assert.ok(name?.includes(id!), 'postponed to deferred/');
    const envelope = parseEnvelope(await readFile(path.join(h.layout.dir('deferred'), name!), 'utf8'), 'test');
    assert.deepEqual(envelope.recipients.map((r) => `${r.address} ${r.state}`), ['a@ok.test delivered', 'b@grey.test deferred']);
  });

  test('what is in our claim directory that no claim accounts for is counted and given back', async () => {
    const transport = new TransportDouble();
    const runner = h.runner(transport);
    await runner.start({ watch: true });
    try {
      const [id] = await h.enqueueBatch([{ recipients: ['s@ok.test'] }]);
      await eventually(() => transport.calls.length === 1, 'first delivery');
      // A claim this process lost track of (what a bug or a failure between two steps would leave).
      const [lost] = await h.enqueueBatch([{ recipients: ['lost@ok.test'] }]);
      await rename(path.join(h.layout.dir('incoming'), `${lost}.batch`), path.join(runner.claimDirectory, `${lost}.batch`));
      await eventually(() => h.logs.events('stranded').length > 0, 'counted as stranded');
      await eventually(() => transport.calls.some((call) => call.recipients.includes('lost@ok.test')), 'given back and delivered');
      assert.equal(h.logs.events('stranded')[0]!.count, 1);
      void id;
    } finally {
      await runner.close();
    }
  });
});

describe('claim ownership', () => {
  test('a dead mta-queue whose pid now belongs to a live process loses its claims: the lease names its start time', async () => {
    const self = procProcessTable().self;
    const [id] = await h.enqueueBatch([{ recipients: ['reused@ok.test'] }]);
    // Our own pid, but another process's start time: what a reused pid looks like.
    const dead = path.join(h.layout.dir('active'), `${self.pid}-deadbeef00`);
    await mkdir(dead);
    await writeFile(path.join(dead, LEASE_FILE), JSON.stringify({ ...self, startTime: `${self.startTime}0` }));
    await rename(path.join(h.layout.dir('incoming'), `${id}.batch`), path.join(dead, `${id}.batch`));
    const transport = new TransportDouble();
    await h.runOnce(transport);
    assert.deepEqual(transport.calls.map((call) => call.recipients.join()), ['reused@ok.test']);
    assert.ok(!(await claimDirs()).includes(path.basename(dead)), 'the dead lease is gone');
  });

  test('two processes with the same pid (other pid namespaces) keep their own claims; a lease seen from another namespace expires by age', async () => {
    const holding = new TransportDouble(() => 'hold');
    const [id] = await h.enqueueBatch([{ recipients: ['first@ok.test'] }]);
    const first = h.runner(holding);
    await first.start({ watch: false });
    void first.drain();
    await holding.waitForCalls(1);
    // A second mta-queue with the very same pid, as in another pid namespace sharing the spool.
    const second = h.runner(new TransportDouble(), {}, { leaseToken: newLeaseToken() });
    await second.start({ watch: false });
    await second.drain();
    await second.close();
    assert.deepEqual(await entriesIn(path.basename(first.claimDirectory)), [`${id}.batch`], "the second process left the first one's claim alone");
    holding.calls[0]!.answer();
    await first.close();

    // A lease from another namespace (its pid means nothing here) is trusted while fresh, recovered once stale.
    const [other] = await h.enqueueBatch([{ recipients: ['other@ok.test'] }]);
    const foreign = path.join(h.layout.dir('active'), '4242-abcdef0123');
    await mkdir(foreign);
    await writeFile(path.join(foreign, LEASE_FILE), JSON.stringify({ pid: 4242, bootId: 'another-boot', pidNamespace: 'pid:[1]', startTime: '7' }));
    await rename(path.join(h.layout.dir('incoming'), `${other}.batch`), path.join(foreign, `${other}.batch`));
    const third = new TransportDouble();
    await h.runOnce(third);
    assert.equal(third.calls.length, 0, 'a fresh foreign lease is not taken');
    const stale = new Date(Date.now() - LEASE_TIMEOUT_MS - 1000);
    await h.fs.touch(path.join(foreign, LEASE_FILE), stale);
    await h.runOnce(third);
    assert.deepEqual(third.calls.map((call) => call.recipients.join()), ['other@ok.test'], 'a stale one is');
  });
});

describe('batches', () => {
  test('drain() waits for the first message of a batch (the batch is named after it)', async () => {
    const transport = new TransportDouble(() => 'hold');
    await h.enqueueBatch([{ recipients: ['one@ok.test'] }, { recipients: ['two@ok.test'] }]);
    const runner = h.runner(transport);
    await runner.start({ watch: false });
    let drained = false;
    const draining = runner.drain().then(() => (drained = true));
    await transport.waitForCalls(2);
    const firstOfBatch = transport.calls.find((call) => call.recipients.includes('one@ok.test'))!;
    transport.calls.find((call) => call !== firstOfBatch)!.answer();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(drained, false, 'still delivering the message the batch is named after');
    firstOfBatch.answer();
    await draining;
    await runner.close();
  });

  test('the claim of a batch is durable before any of its messages is detached', async () => {
    const transport = new TransportDouble(() => ({ code: 451, enhanced: '4.7.1', text: 'later' }));
    const [id] = await h.enqueueBatch([{ recipients: ['later@grey.test'] }]);
    const runner = h.runner(transport);
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
    const steps = h.fs.calls.map((call) => `${call.op} ${call.path}`);
    const claimed = steps.findIndex((step) => step.startsWith('rename') && step.endsWith(path.join(path.basename(runner.claimDirectory), `${id}.batch`)));
    const synced = steps.findIndex((step, index) => index > claimed && step === `syncDirectory ${runner.claimDirectory}`);
    const detached = steps.findIndex((step) => step.includes(`${id}.detach.eml`));
    assert.ok(claimed >= 0 && synced > claimed && detached > synced, `claim ${claimed}, sync of the claim directory ${synced}, detach ${detached}`);
  });

  test('a message an operator deleted does not come back from its recovered batch', async () => {
    const transport = new TransportDouble((domain) => (domain === 'grey.test' ? { code: 451, enhanced: '4.7.1', text: 'later' } : 'hold'));
    const [deferredOne, stuck] = await h.enqueueBatch([{ recipients: ['d@grey.test'] }, { recipients: ['s@slow.test'] }]);
    const runner = h.runner(transport);
    await runner.start({ watch: false });
    void runner.drain();
    await eventually(async () => (await h.files('deferred')).some((name) => name.includes(deferredOne!)), 'the first one detached to deferred/');
    const deferredEnvelope = parseEnvelope(await readFile(path.join(h.layout.dir('deferred'), (await h.files('deferred'))[0]!), 'utf8'), 'test');
    assert.equal(deferredEnvelope.detachedFrom, deferredOne, 'the entry says which batch it left');
    const admin = new QueueAdmin(h.layout, h.logs.logger, procProcessTable(), newLeaseToken());
    const item = (await h.items()).find((entry) => entry.id === deferredOne)!;
    assert.deepEqual(await admin.apply('delete', item), { done: true });
    await admin.sync();
    // mta-queue dies now, with the batch still claimed for the other message.
    const claimDir = runner.claimDirectory;
    const orphan = path.join(h.layout.dir('active'), `999999990-${newLeaseToken()}`);
    await mkdir(orphan);
    await rename(path.join(claimDir, `${deferredOne}.batch`), path.join(orphan, `${deferredOne}.batch`));
    const next = new TransportDouble();
    await h.runOnce(next);
    assert.deepEqual(next.calls.map((call) => call.recipients.join()), ['s@slow.test'], 'only the message not deleted is delivered from the recovered batch');
    for (const call of transport.calls) call.answer();
    await runner.close();
    void stuck;
  });
});
