import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { DaemonProcess, runCli } from '../helpers/daemon-process.js';
import { newTestKey, setTestKeyState, verifyWithDkimpy, writeTestKey, type TestKey } from '../helpers/dkim-keys.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { scrape } from '../helpers/scrape.js';
import { toolAvailable, TOOLS } from '../helpers/external-clients.js';
import { tempDir } from '../helpers/temp.js';

/** The built mta-queue as operators run it: keys changed on disk while it runs are used without a restart. */
describe('mta-queue picks up DKIM key changes while it runs', () => {
  let f: DeliveryFixture;
  let work: { dir: string; cleanup: () => Promise<void> };
  let k1: TestKey;
  let k2: TestKey;
  const daemons: DaemonProcess[] = [];
  const start = (extra: string[]) => {
    const daemon = DaemonProcess.start('mta-queue', ['--spool', f.layout.root, '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s', ...extra]);
    daemons.push(daemon);
    return daemon;
  };

  before(async () => {
    f = await startDeliveryFixture([{}], (hosts) => ({ 'ok.test': { a: [hosts[0]!] } }));
    work = await tempDir('mta-dkim-live-');
    k1 = await newTestKey('live.example', 'k1', 'rsa');
    k2 = await newTestKey('live.example', 'k2', 'rsa');
  });
  afterEach(() => Promise.all(daemons.splice(0).map((daemon) => daemon.stop())));
  after(async () => {
    await f.close();
    await work.cleanup();
  });

  test('bad --dkim-default-domain: one line, exit 2', async () => {
    const result = await runCli('mta-queue', ['--dkim-default-domain', 'not a domain']);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr.trimEnd().split('\n').length, 1);
    assert.match(result.stderr, /--dkim-default-domain: "not a domain"/);
  });

  test('an unreadable --dkim-dir (here a file): one line, exit 2; a missing one is no error', async () => {
    const file = path.join(work.dir, 'not-a-dir');
    await writeFile(file, 'x');
    const result = await runCli('mta-queue', ['--spool', f.layout.root, '--dkim-dir', file, '--once']);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr.trimEnd().split('\n').length, 1);
    assert.match(result.stderr, /--dkim-dir .*not-a-dir: ENOTDIR/);
    const missing = await runCli('mta-queue', ['--spool', f.layout.root, '--dns-servers', f.dns.address, '--dkim-dir', path.join(work.dir, 'none'), '--once']);
    assert.equal(missing.code, 0, missing.stderr);
  });

  test('missing directory → unsigned; a key activated meanwhile signs within seconds; SIGHUP re-reads; the counter counts', async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const dkimDir = path.join(work.dir, 'dkim');
    const daemon = start(['--dkim-dir', dkimDir, '--metrics', '127.0.0.1:0']);
    const first = await daemon.waitForEvent('dkim-keys-loaded');
    assert.equal(first.missing, true);
    assert.equal(first.level, 30, 'an info line says mail goes unsigned');
    assert.match(String(first.msg), /unsigned/);
    const metrics = String((await daemon.waitForEvent('started')).metrics);

    await f.enqueue('news@live.example', ['a@ok.test'], 'From: news@live.example\nSubject: before\nX-Seq: live-1\n\nbody\n');
    const unsigned = await waitForSeq(f, 'live-1');
    assert.doesNotMatch(unsigned.toString(), /DKIM-Signature/);

    // keygen, then activate, as `mta-queue dkim` writes them from another process.
    await writeTestKey(dkimDir, k1, 'pending');
    await setTestKeyState(dkimDir, k1, 'active');
    const changedAt = Date.now();
    const loaded = await daemon.waitForLog((line) => line.event === 'dkim-keys-loaded' && line.active === 1, 6000);
    assert.equal(loaded.reason, 'changed');
    assert.deepEqual(loaded.signing, ['live.example/k1/rsa']);
    assert.ok(Date.now() - changedAt < 5000, `picked up after ${Date.now() - changedAt} ms`);

    await f.enqueue('news@live.example', ['b@ok.test'], 'From: news@live.example\nSubject: after\nX-Seq: live-2\n\nbody\n');
    assert.deepEqual((await verifyWithDkimpy(await waitForSeq(f, 'live-2'), [k1, k2])).map((r) => [r.s, r.ok]), [['k1', true]]);

    // Rotation while it runs, then SIGHUP: the new key signs, the retiring one no longer does.
    await writeTestKey(dkimDir, k2, 'pending');
    await setTestKeyState(dkimDir, k2, 'active');
    await setTestKeyState(dkimDir, k1, 'retiring');
    daemon.signal('SIGHUP');
    await daemon.waitForLog((line) => line.event === 'dkim-keys-loaded' && line.reason === 'sighup', 5000);
    await daemon.waitForLog((line) => line.event === 'dkim-keys-loaded' && JSON.stringify(line.signing) === '["live.example/k2/rsa"]', 5000);
    await f.enqueue('news@live.example', ['c@ok.test'], 'From: news@live.example\nSubject: rotated\nX-Seq: live-3\n\nbody\n');
    assert.deepEqual((await verifyWithDkimpy(await waitForSeq(f, 'live-3'), [k1, k2])).map((r) => [r.s, r.ok]), [['k2', true]]);

    const scraped = await scrape(metrics);
    assert.equal(scraped.value('mta_queue_dkim_signed_total', { result: 'signed' }), 2);
    assert.equal(scraped.value('mta_queue_dkim_signed_total', { result: 'unsigned' }), 1);
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  });
});

async function waitForSeq(f: DeliveryFixture, seq: string, timeoutMs = 10_000): Promise<Buffer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = f.mx.mxes[0]!.messages.find((m) => m.raw.includes(`X-Seq: ${seq}\r\n`));
    if (found) return found.raw;
    if (Date.now() > deadline) throw new Error(`${seq} not delivered within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
