import assert from 'node:assert/strict';
import { mkdir, rename, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deferredName } from '../../src/spool/entry-names.js';
import type { Envelope } from '../../src/spool/envelope.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { QueueIndex } from '../../src/spool/queue-index.js';
import { queueStats } from '../../src/spool/queue-inspect.js';
import { scanQueue } from '../../src/spool/queue-listing.js';
import { readQueuePage, type QueuePageRequest } from '../../src/spool/queue-page.js';
import { nodeSpoolFs, type SpoolFs } from '../../src/spool/spool-fs.js';
import { envelope, H, M, NOW, recipient } from '../helpers/spool-items.js';
import { putBatch } from '../helpers/spool-invariants.js';
import { tempDir } from '../helpers/temp.js';

/** The queue page and the census on a real spool: what they list, in which order, and what they read. */

/** Counts envelope reads (readFile of a .json), the cost the page promises to bound, and directory listings. */
function countingFs(): SpoolFs & { jsonReads: number; batchOpens: number; listings: string[] } {
  const fs = Object.create(nodeSpoolFs) as SpoolFs & { jsonReads: number; batchOpens: number; listings: string[] };
  fs.jsonReads = 0;
  fs.batchOpens = 0;
  fs.listings = [];
  fs.open = (file: string, flags: 'r' | 'wx') => {
    if (file.endsWith('.batch')) fs.batchOpens++;
    return nodeSpoolFs.open(file, flags);
  };
  fs.readFile = (file: string) => {
    if (file.endsWith('.json')) fs.jsonReads++;
    return nodeSpoolFs.readFile(file);
  };
  fs.readdir = (dir: string) => {
    fs.listings.push(path.basename(dir));
    return nodeSpoolFs.readdir(dir);
  };
  return fs;
}

/** A spool of a test's own on a counting file system: for a test that must see every read. */
async function countingSpool(prefix: string): Promise<{ fs: ReturnType<typeof countingFs>; layout: SpoolLayout; cleanup: () => Promise<void> }> {
  const temp = await tempDir(prefix);
  const fs = countingFs();
  const layout = spoolLayout(path.join(temp.dir, 'spool'), fs);
  await ensureSpool(layout);
  return { fs, layout, cleanup: temp.cleanup };
}

describe('the queue page', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  const ids: string[] = [];
  let bounceId: string;

  async function put(layout: SpoolLayout, dir: 'incoming' | 'deferred' | 'held', env: Envelope): Promise<void> {
    await writeFile(layout.messagePath(env.id), 'Subject: x\r\n\r\nbody\r\n');
    await writeFile(path.join(layout.dir(dir), dir === 'deferred' ? deferredName(env.id, NOW + H) : `${env.id}.json`), JSON.stringify(env));
  }

  before(async () => {
    const temp = await tempDir('mta-page-');
    cleanup = temp.cleanup;
    root = path.join(temp.dir, 'spool');
    const layout = spoolLayout(root);
    await ensureSpool(layout);
    await mkdir(layout.dir('held'), { recursive: true });
    // 30 messages, one a minute apart (ids sort by arrival), spread over three states; every 10th to rare.test.
    for (let index = 0; index < 30; index++) {
      const domain = index % 10 === 3 ? 'rare.test' : 'common.test';
      const env = envelope({ arrivedAt: NOW - (30 - index) * M, recipients: [recipient(`u${index}@${domain}`, 'deferred', `451 4.7.1 try later ${index}`)] });
      ids.push(env.id);
      await put(layout, index % 3 === 0 ? 'held' : index % 3 === 1 ? 'deferred' : 'incoming', env);
    }
    const bounce = envelope({ sender: '', arrivedAt: NOW - 45 * M, recipients: [recipient('news@shop.example', 'pending')] });
    bounceId = bounce.id;
    await put(layout, 'incoming', bounce);
  });
  after(() => cleanup());

  const page = (layout: SpoolLayout, request: Partial<QueuePageRequest>) => readQueuePage(new QueueIndex(layout), { filter: {}, limit: 7, scanLimit: 5000, ...request }, NOW);

  test('pages in arrival order, whatever the state; cursors neither skip nor repeat; next is null at the end', async () => {
    const layout = spoolLayout(root);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const result = await page(layout, { cursor });
      assert.ok(result.items.length <= 7);
      assert.equal(result.entries, 31);
      seen.push(...result.items.map((item) => item.id));
      cursor = result.next ?? undefined;
      pages++;
    } while (cursor && pages < 20);
    assert.equal(pages, 5);
    assert.deepEqual(seen, [bounceId, ...ids], 'every message once, oldest first');
  });

  test('a filter the names decide reads only the envelopes of the page shown', async () => {
    const fs = countingFs();
    const layout = spoolLayout(root, fs);
    const result = await page(layout, { filter: { state: 'held' }, limit: 4 });
    assert.deepEqual(result.items.map((item) => item.id), [ids[0], ids[3], ids[6], ids[9]]);
    assert.equal(result.entries, 10);
    assert.equal(fs.jsonReads, 4, 'four envelopes read for four rows, not the ten held');
    const old = await page(layout, { filter: { olderThan: 40 * M } });
    assert.deepEqual(old.items.map((item) => item.id), [bounceId], 'the age comes from the id');
  });

  test('a filter that needs envelopes reads at most scanLimit per page and hands back a cursor where it stopped', async () => {
    const fs = countingFs();
    const layout = spoolLayout(root, fs);
    const first = await page(layout, { filter: { domain: 'rare.test' }, limit: 10, scanLimit: 12 });
    assert.equal(fs.jsonReads, 12);
    assert.equal(first.examined, 12);
    // Entries 0..11 are the bounce and ids[0..10]: rare.test at index 3 only.
    assert.deepEqual(first.items.map((item) => item.id), [ids[3]]);
    assert.ok(first.next, 'more to look at');
    const rest = await page(layout, { filter: { domain: 'rare.test' }, limit: 10, cursor: first.next! });
    assert.deepEqual(rest.items.map((item) => item.id), [ids[13], ids[23]]);
    assert.equal(rest.next, null);
    const searched = await page(layout, { filter: { words: ['u23@'] } });
    assert.deepEqual(searched.items.map((item) => item.id), [ids[23]]);
  });

  test('a batch file brings each of its messages, and the census counts them like stats does', async () => {
    const { fs, layout, cleanup: remove } = await countingSpool('mta-page-batch-');
    try {
      const batch = await putBatch(layout, ['one', 'two', 'three']);
      const result = await page(layout, {});
      assert.deepEqual(result.items.map((item) => item.id), batch.ids);
      assert.equal(result.entries, 1, 'one file');
      const index = new QueueIndex(layout);
      const census = await index.census(NOW);
      assert.deepEqual(census.counts, queueStats(await scanQueue(layout), NOW).counts);
      assert.equal(census.counts.incoming, 3);
      // A group commit's batch is written once: counted once, read once for pages, kept without its message bytes.
      assert.equal((await readQueuePage(index, { filter: {}, limit: 10, scanLimit: 10 }, NOW)).items.length, 3);
      fs.batchOpens = 0;
      await index.census(NOW);
      assert.equal((await readQueuePage(index, { filter: {}, limit: 10, scanLimit: 10 }, NOW)).items.length, 3);
      assert.equal(fs.batchOpens, 0);
      assert.equal((await index.read((await index.entries())[0]!))[0]!.source, undefined);
    } finally {
      await remove();
    }
  });

  test('the census: the same figures as stats, and each deferred envelope read once', async () => {
    const fs = countingFs();
    const layout = spoolLayout(root, fs);
    const census = new QueueIndex(layout);
    const expected = queueStats(await scanQueue(spoolLayout(root)), NOW);
    assert.deepEqual(await census.census(NOW), expected);
    assert.equal(fs.jsonReads, 10, 'only the ten deferred envelopes');
    assert.equal(expected.deferredDomains[0]?.domain, 'common.test');
    assert.match(expected.deferredDomains[0]?.lastReply ?? '', /^451 4\.7\.1 try later/);
    fs.jsonReads = 0;
    assert.deepEqual(await census.census(NOW), expected);
    assert.equal(fs.jsonReads, 0, 'nothing new: nothing read');
    // Several tabs refreshing at once share one census: a fresh one read concurrently reads each envelope once.
    const fresh = new QueueIndex(layout);
    fs.jsonReads = 0;
    const [a, b] = await Promise.all([fresh.census(NOW), fresh.census(NOW)]);
    assert.deepEqual(a, expected);
    assert.equal(b, a);
    assert.equal(fs.jsonReads, 10);
  });

  test('a listing is reused while its directory is unchanged, and taken again once it changes or was too fresh to trust', async () => {
    const { fs, layout, cleanup: remove } = await countingSpool('mta-page-index-');
    try {
      const first = envelope({ arrivedAt: NOW - 2 * M, recipients: [recipient('a@x.test', 'deferred', '451 4.3.0 later')] });
      const second = envelope({ arrivedAt: NOW - M, recipients: [recipient('b@x.test', 'deferred', '451 4.3.0 later')] });
      await writeFile(path.join(layout.dir('deferred'), deferredName(first.id, NOW + H)), JSON.stringify(first));
      const index = new QueueIndex(layout);
      // Just written: the mtime is this tick's, a listing now could miss a change in the same tick.
      assert.deepEqual((await index.entries('deferred')).map((entry) => entry.id), [first.id]);
      assert.deepEqual((await index.entries('deferred')).map((entry) => entry.id), [first.id]);
      assert.deepEqual(fs.listings, ['deferred', 'deferred'], 'a fresh directory is listed every time');
      const past = new Date(Date.now() - 5000);
      await utimes(layout.dir('deferred'), past, past);
      fs.listings = [];
      await index.entries('deferred');
      await index.entries('deferred');
      await index.entries('deferred');
      assert.deepEqual(fs.listings, ['deferred'], 'unchanged for long enough: listed once');
      // A new entry changes the directory's mtime: the next look sees it.
      await writeFile(path.join(layout.dir('tmp'), 'x'), JSON.stringify(second));
      await rename(path.join(layout.dir('tmp'), 'x'), path.join(layout.dir('deferred'), deferredName(second.id, NOW + H)));
      assert.deepEqual((await index.entries('deferred')).map((entry) => entry.id), [first.id, second.id]);
      // And the deferred envelopes are read once each, whatever the listings.
      fs.jsonReads = 0;
      await index.census(NOW);
      await index.census(NOW);
      assert.equal(fs.jsonReads, 2);
    } finally {
      await remove();
    }
  });

  test('a malformed or foreign cursor simply starts after it in name order (the API refuses one that is not ours)', async () => {
    const layout = spoolLayout(root);
    const result = await page(layout, { cursor: 'zzzzzzzzzzzzzzzzzzzz/incoming/x.json' });
    assert.deepEqual(result.items, []);
    assert.equal(result.next, null);
  });
});
