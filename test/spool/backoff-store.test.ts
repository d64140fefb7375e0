import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { BackoffFileCorruptError, BackoffLimitError, BackoffStore, MAX_BACKOFFS, type BackoffRecord } from '../../src/spool/backoff-store.js';
import { BackoffRecordError, serializeBackoffFile } from '../../src/spool/backoff-record.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { walkFailurePoints } from '../helpers/fault-walk.js';
import { tempDir } from '../helpers/temp.js';

const NOW = Date.UTC(2026, 11, 10, 12, 0, 0);
const H = 3_600_000;
const YAHOO = 'mta5.am0.yahoodns.net,mta6.am0.yahoodns.net,mta7.am0.yahoodns.net';
const OUTLOOK = 'hotmail-com.olc.protection.outlook.com';

const backoff = (fields: Partial<BackoffRecord> = {}): BackoffRecord => ({
  site: YAHOO,
  source: 'default',
  rule: 'built-in rule 1',
  action: 'suspend',
  since: NOW,
  until: NOW + 2 * H,
  reply: '421 4.7.0 [TSS04] Messages from 203.0.113.10 temporarily deferred due to unexpected volume or user complaints',
  shaping: {},
  ...fields,
});
const throttle = backoff({ site: OUTLOOK, rule: 'built-in rule 3', action: 'throttle', until: NOW + 90 * 60_000, reply: '451 4.7.650 The mail server [203.0.113.10] has been temporarily rate limited due to IP reputation', shaping: { max_message_rate: '1/min', connection_limit: 1 } });

async function withSpool(run: (layout: SpoolLayout) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir('mta-backoff-');
  try {
    const layout = spoolLayout(path.join(dir, 'spool'));
    await ensureSpool(layout);
    await run(layout);
  } finally {
    await cleanup();
  }
}

const onDisk = async (layout: SpoolLayout) => JSON.parse(await readFile(path.join(layout.dir('state'), 'backoffs.json'), 'utf8')) as { version: number; backoffs: BackoffRecord[] };

test('a back-off put is read back by another store (another process), exactly, from state/backoffs.json 0600', () =>
  withSpool(async (layout) => {
    assert.deepEqual(await new BackoffStore(layout).read(NOW), [], 'no file: none');
    const store = new BackoffStore(layout);
    await store.put(backoff(), NOW);
    await store.put(throttle, NOW);
    assert.deepEqual(await new BackoffStore(layout).read(NOW + 1), [backoff(), throttle]);
    assert.deepEqual(await onDisk(layout), { version: 1, backoffs: [backoff(), throttle] });
    assert.equal((await stat(path.join(layout.dir('state'), 'backoffs.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(layout.dir('state'))).mode & 0o777, 0o700);
    assert.deepEqual((await readdir(layout.dir('tmp'))), [], 'no temp file left');

    await store.put(backoff({ until: NOW + 5 * H, reply: '421 4.7.0 [TS04] again' }), NOW + 60_000);
    const again = await store.read(NOW + 60_000);
    assert.equal(again.length, 2, 'one record per (site, source): replaced, not added');
    assert.equal(again.find((record) => record.site === YAHOO)!.until, NOW + 5 * H);
  }));

test('the same site from another source is a record of its own', () =>
  withSpool(async (layout) => {
    const store = new BackoffStore(layout);
    await store.put(backoff(), NOW);
    await store.put(backoff({ source: '203.0.113.11' }), NOW);
    assert.deepEqual((await store.read(NOW)).map((record) => record.source), ['default', '203.0.113.11']);
  }));

test('ended back-offs are left out of read and dropped from the file at the next write', () =>
  withSpool(async (layout) => {
    const store = new BackoffStore(layout);
    await store.put(backoff({ until: NOW + H }), NOW);
    await store.put(throttle, NOW);
    assert.deepEqual(await store.read(NOW + H), [throttle], 'until is exclusive: ended at NOW + 1h');
    assert.equal((await onDisk(layout)).backoffs.length, 2, 'reading changes nothing');
    await store.put(backoff({ site: 'mx.other.example', until: NOW + 3 * H }), NOW + H);
    assert.deepEqual((await onDisk(layout)).backoffs.map((record) => record.site), [OUTLOOK, 'mx.other.example']);
    await store.put(backoff({ until: NOW }), NOW + 1);
    assert.ok(!(await store.read(NOW + 1)).some((record) => record.site === YAHOO), 'a record already ended is not kept');
  }));

test('put merges with what another store wrote since its own last read; a resume is not undone by a stale daemon', () =>
  withSpool(async (layout) => {
    const daemon = new BackoffStore(layout);
    const other = new BackoffStore(layout);
    const admin = new BackoffStore(layout);
    await daemon.put(backoff(), NOW);
    assert.equal((await daemon.read(NOW)).length, 1);
    await other.put(throttle, NOW);
    await daemon.put(backoff({ site: 'mx.third.example' }), NOW);
    assert.deepEqual((await admin.read(NOW)).map((record) => record.site), [YAHOO, OUTLOOK, 'mx.third.example']);

    assert.deepEqual(await admin.remove(YAHOO, undefined, NOW), [backoff()]);
    await daemon.put(backoff({ site: 'mx.fourth.example' }), NOW);
    assert.deepEqual((await admin.read(NOW)).map((record) => record.site), [OUTLOOK, 'mx.third.example', 'mx.fourth.example'], 'the lifted back-off stays lifted');
  }));

test('changes through one store run one at a time: none is lost', () =>
  withSpool(async (layout) => {
    const store = new BackoffStore(layout);
    await Promise.all(Array.from({ length: 20 }, (_, index) => store.put(backoff({ site: `mx${index}.example` }), NOW)));
    assert.equal((await new BackoffStore(layout).read(NOW)).length, 20);
  }));

test('remove lifts a site (all sources, or one), returns what it lifted, and nothing when there was none', () =>
  withSpool(async (layout) => {
    const store = new BackoffStore(layout);
    await store.put(backoff(), NOW);
    await store.put(backoff({ source: '203.0.113.11' }), NOW);
    await store.put(throttle, NOW);
    assert.deepEqual(await store.remove(YAHOO, '203.0.113.11', NOW), [backoff({ source: '203.0.113.11' })]);
    assert.deepEqual(await store.remove('mx.unknown.example', undefined, NOW), []);
    assert.deepEqual(await store.remove(YAHOO, undefined, NOW), [backoff()]);
    assert.deepEqual(await store.read(NOW), [throttle]);
    assert.deepEqual(await store.remove(OUTLOOK, undefined, NOW + 2 * H), [], 'an ended back-off is not lifted');
  }));

test('a corrupt file is moved to corrupt/ with a typed error; the next call finds none', () =>
  withSpool(async (layout) => {
    const file = path.join(layout.dir('state'), 'backoffs.json');
    for (const text of ['{"version":1,"backoffs":[{"site":', '{"version":2,"backoffs":[]}', JSON.stringify({ version: 1, backoffs: [{ ...backoff(), reply: 'x'.repeat(301) }] })]) {
      await writeFile(file, text);
      const store = new BackoffStore(layout);
      const error = await store.read(NOW).then(() => assert.fail('read a corrupt file'), (caught: unknown) => caught);
      assert.ok(error instanceof BackoffFileCorruptError, String(error));
      assert.equal(error.code, 'EBACKOFFSCORRUPT');
      assert.equal(path.dirname(error.movedTo), layout.dir('corrupt'));
      assert.equal(await readFile(error.movedTo, 'utf8'), text, 'kept as it was, for the operator');
      assert.deepEqual(await store.read(NOW), []);
    }
    await writeFile(file, 'garbage');
    const store = new BackoffStore(layout);
    await assert.rejects(store.put(backoff(), NOW), BackoffFileCorruptError, 'put does not write over what it could not read');
    await store.put(backoff(), NOW);
    assert.deepEqual(await store.read(NOW), [backoff()]);
  }));

test('records are bounded: the reply is cut to 300 characters, a bad or oversized record is refused, and so is record 10,001', () =>
  withSpool(async (layout) => {
    const store = new BackoffStore(layout);
    await store.put(backoff({ reply: `421 ${'y'.repeat(5000)}` }), NOW);
    assert.equal((await store.read(NOW))[0]!.reply.length, 300);
    await assert.rejects(store.put(backoff({ site: '' }), NOW), BackoffRecordError);
    await assert.rejects(store.put(backoff({ source: 's'.repeat(65) }), NOW), BackoffRecordError);
    await assert.rejects(store.put(backoff({ shaping: { connection_limit: Number.NaN } }), NOW), BackoffRecordError);
    await assert.rejects(store.put(backoff({ site: 'x'.repeat(4097) }), NOW), BackoffRecordError);
    await assert.rejects(store.put(backoff({ site: '\x01'.repeat(2000) }), NOW), { code: 'EBACKOFFRECORD', message: /bytes as JSON, over 8192/ }, 'escapes count');

    const full = Array.from({ length: MAX_BACKOFFS }, (_, index) => backoff({ site: `mx${index}.example` }));
    await writeFile(path.join(layout.dir('state'), 'backoffs.json'), serializeBackoffFile(full));
    await assert.rejects(store.put(backoff({ site: 'mx.new.example' }), NOW), BackoffLimitError);
    await store.put(backoff({ site: 'mx7.example', until: NOW + 9 * H }), NOW);
    assert.equal((await store.read(NOW)).length, MAX_BACKOFFS, 'replacing one is still allowed');
  }));

test('changed(): false after this store read or wrote the file, true once another store (or a hand) changed it', () =>
  withSpool(async (layout) => {
    const daemon = new BackoffStore(layout);
    const admin = new BackoffStore(layout);
    assert.equal(await daemon.changed(), true, 'never read: changed');
    await daemon.read(NOW);
    assert.equal(await daemon.changed(), false, 'no file, still none');
    await admin.put(backoff(), NOW);
    assert.equal(await daemon.changed(), true, 'a file appeared');
    await daemon.read(NOW);
    assert.equal(await daemon.changed(), false);
    await daemon.put(throttle, NOW);
    assert.equal(await daemon.changed(), false, 'its own write');
    await admin.remove(OUTLOOK, undefined, NOW);
    assert.equal(await daemon.changed(), true, 'a resume by the admin command');
    await daemon.read(NOW);
    await writeFile(path.join(layout.dir('state'), 'backoffs.json'), serializeBackoffFile([backoff({ reply: 'edited in place' })]));
    assert.equal(await daemon.changed(), true, 'rewritten in place');
  }));

test('a spool made before state/ existed gets it at the first put', () =>
  withSpool(async (layout) => {
    const { rmdir } = await import('node:fs/promises');
    await rmdir(layout.dir('state'));
    const store = new BackoffStore(layout);
    assert.deepEqual(await store.read(NOW), []);
    assert.equal(await store.changed(), false);
    await store.put(backoff(), NOW);
    assert.deepEqual(await store.read(NOW), [backoff()]);
  }));

/** Whatever call of a put or remove fails, the file is the one before or the one after, whole; no temp file stays. */
for (const operation of ['put', 'remove'] as const) {
  test(`a failure at any step of a ${operation} leaves the previous file or the new one, never half, and no temp file`, async (t) => {
    const before = [backoff(), throttle];
    const after = operation === 'put' ? [...before, backoff({ site: 'mx.new.example' })] : [throttle];
    const walk = await walkFailurePoints({
      async setup(layout) {
        await writeFile(path.join(layout.dir('state'), 'backoffs.json'), serializeBackoffFile(before));
        return { store: new BackoffStore(layout), layout };
      },
      async operate({ store }) {
        if (operation === 'put') await store.put(backoff({ site: 'mx.new.example' }), NOW);
        else await store.remove(YAHOO, undefined, NOW);
      },
      async check({ layout }, outcome) {
        const found = (await onDisk(layout)).backoffs;
        if (outcome.ok) assert.deepEqual(found, after);
        else assert.ok([JSON.stringify(before), JSON.stringify(after)].includes(JSON.stringify(found)), `half a change: ${JSON.stringify(found)}`);
        assert.deepEqual(await readdir(layout.dir('tmp')), [], 'a temp file left behind');
        if (!outcome.ok) assert.deepEqual(await new BackoffStore(layout).read(NOW), found, 'readable by the next store');
      },
    });
    t.diagnostic(walk.steps.join(' | '));
  });
}
