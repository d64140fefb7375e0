import assert from 'node:assert/strict';
import { after, before, describe, mock, test } from 'node:test';
import { FULL_RESCAN_MS } from '../../src/delivery/deferred-watch.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { systemClock } from '../../src/shared/clock.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { FaultyFs } from '../helpers/faulty-fs.js';

/**
 * deferred/ is watched, not re-read every minute: a million messages held for a suspended site cost nothing while
 * they wait, and what another mta-queue process on the spool defers is still seen (real MXes on loopback).
 */
const MESSAGE = 'From: news@shop.example\nTo: someone\nSubject: deferred\n\nbody\n';

describe('deferred/ watched', () => {
  let f: DeliveryFixture;
  before(async () => {
    f = await startDeliveryFixture([{ name: 'mx.grey.test', rcpt: [{ code: 451, message: 'greylisted, come back later', times: 1 }] }, { name: 'mx.later.test', rcpt: [{ code: 451, message: 'not now' }] }], (hosts) => ({
      'grey.test': { mx: [{ preference: 10, exchange: 'mx.grey.test' }] },
      'mx.grey.test': { a: [hosts[0]!] },
      'later.test': { mx: [{ preference: 10, exchange: 'mx.later.test' }] },
      'mx.later.test': { a: [hosts[1]!] },
    }));
  });
  after(() => f.close());

  test('an entry another mta-queue process defers is delivered when due, though it came after our last read of deferred/', async () => {
    const id = await f.enqueue('news@shop.example', ['r@grey.test'], MESSAGE);
    // The other process's deferral waits at its rename into deferred/ until this process has read the directory.
    const otherFs = new FaultyFs();
    const deferral = otherFs.holdWhen((call) => call.op === 'rename' && call.path.split(' -> ')[1]!.startsWith(f.layout.dir('deferred')));
    const other = new QueueRunner({ ...f.config, retrySchedule: [1_000] }, f.deps({ clock: systemClock, spoolFs: otherFs }));
    await other.start({ watch: false });
    const otherDone = other.drain();
    await deferral.reached;
    const ours = new QueueRunner(f.config, f.deps({ clock: systemClock }));
    await ours.start({ watch: true });
    try {
      deferral.release();
      await otherDone;
      await other.close(); // gone: only we can deliver it now
      assert.equal((await f.files('deferred')).filter((name) => name.includes(id)).length, 1, 'deferred by the other process');
      const [mail] = await f.mx.mxes[0]!.waitForMessages(1, 10_000);
      assert.deepEqual(mail!.to, ['r@grey.test']);
      assert.deepEqual(f.mx.mxes[0]!.rcptAttempts.map((attempt) => attempt.code), [451, 250], 'the other process got the 451, we delivered it');
      assert.deepEqual(await f.files('deferred'), []);
    } finally {
      await ours.close();
    }
  });

  test('while nothing changes deferred/ is not read again, however long the mail waits; a full re-read every 30 min is the fallback', async () => {
    await f.enqueue('news@shop.example', ['r@later.test'], MESSAGE);
    await f.runOnce();
    assert.equal((await f.files('deferred')).length, 1, 'one message waiting');
    const fs = new FaultyFs();
    const reads = () => fs.calls.filter((call) => call.op === 'readdir' && call.path === f.layout.dir('deferred')).length;
    mock.timers.enable({ apis: ['setInterval'] });
    const runner = new QueueRunner({ ...f.config, pollInterval: 10 * 60_000 }, f.deps({ spoolFs: fs }));
    try {
      await runner.start({ watch: true });
      assert.equal(reads(), 1, 'read once at start');
      // A rescan starts with its readdir, synchronously within the timer's callback: none may start here.
      mock.timers.tick(FULL_RESCAN_MS - 1);
      assert.equal(reads(), 1, 'not read again in the 30 minutes');
      mock.timers.tick(1);
      assert.equal(reads(), 2, 'the fallback re-read');
    } finally {
      await runner.close();
      mock.timers.reset();
    }
  });
});
