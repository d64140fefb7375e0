import assert from 'node:assert/strict';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../../src/shared/errors.js';
import type { Envelope } from '../../src/spool/envelope.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { checkBulkState, judgeAction, QueueAdmin, selectForAction, type AdminAction } from '../../src/spool/queue-admin.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { readHeaderBlock, queueStats } from '../../src/spool/queue-inspect.js';
import { findQueueItem, scanQueue, type QueueState } from '../../src/spool/queue-listing.js';
import { deferredName } from '../../src/spool/entry-names.js';
import { LogCapture } from '../helpers/log-capture.js';
import { tempDir } from '../helpers/temp.js';
import { wholeFileSource } from '../../src/spool/message-source.js';
import { nodeSpoolFs } from '../../src/spool/spool-fs.js';
import { newLeaseToken, procProcessTable } from '../../src/cli/process-table.js';
import { envelope, H, item, M, NOW, recipient } from '../helpers/spool-items.js';

describe('what each action does where', () => {
  test('the verdict table: change, no-op or refusal, active never touched', () => {
    const expected: Record<AdminAction, Record<QueueState, string>> = {
      flush: { incoming: 'unchanged:already due', deferred: 'change', held: 'refused:held', active: 'refused:being delivered', corrupt: 'refused:failed' },
      hold: { incoming: 'change', deferred: 'change', held: 'unchanged:already held', active: 'refused:being delivered', corrupt: 'refused:failed' },
      release: { incoming: 'refused:not held', deferred: 'refused:not held', held: 'change', active: 'refused:being delivered', corrupt: 'refused:failed' },
      delete: { incoming: 'change', deferred: 'change', held: 'change', active: 'refused:being delivered', corrupt: 'change' },
    };
    for (const [action, byState] of Object.entries(expected) as [AdminAction, Record<QueueState, string>][]) {
      for (const [state, want] of Object.entries(byState) as [QueueState, string][]) {
        const verdict = judgeAction(action, item(state, null, 'x'.repeat(20)));
        const [kind, reason] = want.split(':');
        assert.equal(verdict.kind, kind, `${action} on ${state}`);
        if (reason) assert.match((verdict as { reason: string }).reason, new RegExp(`^${reason}`), `${action} on ${state}`);
      }
    }
    assert.match((judgeAction('delete', item('active', null, 'y'.repeat(20))) as { reason: string }).reason, /pid 4242/);
  });

  test('bulk selection: only what the action applies to, with matching active messages reported', () => {
    const at = (domain: string) => envelope({ recipients: [recipient(`u@${domain}`, 'deferred', '451 4.3.0 later')] });
    const items = [
      item('incoming', at('a.test')),
      item('deferred', at('a.test')),
      item('held', at('a.test')),
      item('active', at('a.test')),
      item('deferred', at('b.test')),
      item('corrupt', null),
    ];
    const ids = (selection: ReturnType<typeof selectForAction>) => ({
      change: selection.change.map((entry) => entry.state),
      refused: selection.refused.map(({ item: entry }) => entry.state),
    });
    assert.deepEqual(ids(selectForAction(items, 'flush', { domain: 'a.test' }, NOW)), { change: ['deferred'], refused: ['active'] });
    assert.deepEqual(ids(selectForAction(items, 'hold', { domain: 'a.test' }, NOW)), { change: ['incoming', 'deferred'], refused: ['active'] });
    assert.deepEqual(ids(selectForAction(items, 'release', {}, NOW)), { change: ['held'], refused: [] });
    assert.deepEqual(ids(selectForAction(items, 'delete', {}, NOW)), { change: ['incoming', 'deferred', 'held', 'deferred', 'corrupt'], refused: ['active'] });
    assert.deepEqual(ids(selectForAction(items, 'delete', { domain: 'a.test' }, NOW)), { change: ['incoming', 'deferred', 'held'], refused: ['active'] });
    assert.deepEqual(ids(selectForAction(items, 'delete', { state: 'failed' }, NOW)), { change: ['corrupt'], refused: [] });
  });

  test('--state a bulk command does not act on is a usage error', () => {
    for (const [action, state] of [['flush', 'held'], ['flush', 'incoming'], ['release', 'deferred'], ['hold', 'failed'], ['release', 'active']] as const) {
      assert.throws(() => checkBulkState(action, state), ConfigError, `${action} --state ${state}`);
    }
    for (const [action, state] of [['flush', 'deferred'], ['hold', 'incoming'], ['release', 'held'], ['delete', 'failed'], ['delete', 'active'], ['delete', undefined]] as const) {
      assert.doesNotThrow(() => checkBulkState(action, state), `${action} --state ${state}`);
    }
  });
});

test('stats: counts by state, the oldest queued message, deferred recipients by domain (deferred/ only) with the latest reply', () => {
  const items = [
    item('incoming', envelope({ arrivedAt: NOW - M, recipients: [recipient('a@x.test', 'pending')] })),
    item('deferred', envelope({ arrivedAt: NOW - 2 * H, recipients: [recipient('a@x.test', 'deferred', '451 4.3.0 a'), { ...recipient('b@x.test', 'deferred', '451 4.3.0 b'), lastAttemptAt: NOW - M }, recipient('c@y.test', 'deferred', '451 4.3.0 c')] })),
    item('deferred', envelope({ arrivedAt: NOW - H, recipients: [recipient('d@y.test', 'deferred', '451 4.3.0 d'), recipient('e@z.test', 'delivered', '250 2.0.0 ok')] })),
    item('held', envelope({ arrivedAt: NOW - 30 * M, recipients: [recipient('f@x.test', 'deferred', '451 4.3.0 f')] })),
    item('corrupt', null, newQueueId(NOW - 9 * H)),
  ];
  const stats = queueStats(items, NOW, 2);
  assert.deepEqual(stats.counts, { incoming: 1, deferred: 2, held: 1, active: 0, failed: 1 });
  assert.equal(stats.total, 5);
  assert.deepEqual(stats.oldest, { id: items[1]!.id, state: 'deferred', arrivedAt: NOW - 2 * H, ageMs: 2 * H }, 'corrupt/ is out of the queue');
  assert.deepEqual(stats.deferredDomains, [
    { domain: 'x.test', recipients: 2, messages: 1, lastReply: '451 4.3.0 b' },
    { domain: 'y.test', recipients: 2, messages: 2, lastReply: '451 4.3.0 c' },
  ]);
  assert.equal(queueStats([], NOW).oldest, null);
});

describe('on a spool', () => {
  let layout: SpoolLayout;
  let cleanup: () => Promise<void>;
  const logs = new LogCapture();

  before(async () => {
    const temp = await tempDir('mta-admin-');
    cleanup = temp.cleanup;
    layout = spoolLayout(path.join(temp.dir, 'spool'));
    await ensureSpool(layout);
  });
  after(() => cleanup());

  async function put(dir: 'incoming' | 'deferred' | 'held', env: Envelope, body = 'Subject: hi\r\n\r\nbody\r\n'): Promise<string> {
    await writeFile(layout.messagePath(env.id), body);
    const name = dir === 'deferred' ? deferredName(env.id, env.nextAttemptAt) : `${env.id}.json`;
    await writeFile(path.join(layout.dir(dir), name), JSON.stringify(env));
    return path.join(layout.dir(dir), name);
  }

  test('a claim that wins the race is never touched: the admin rename gets ENOENT and reports where it went', async () => {
    const env = envelope({ recipients: [recipient('u@race.test', 'deferred', '451 4.3.0 later')] });
    await put('deferred', env);
    const [seen] = (await scanQueue(layout)).filter((entry) => entry.id === env.id);
    assert.equal(seen?.state, 'deferred');
    // mta-queue claims it between our listing and our rename.
    await mkdir(path.join(layout.dir('active'), '4242'), { recursive: true });
    const claimed = path.join(layout.dir('active'), '4242', `${env.id}.json`);
    await rename(seen!.file, claimed);
    const admin = new QueueAdmin(layout, logs.logger, procProcessTable(), newLeaseToken());
    for (const action of ['delete', 'hold', 'flush'] as const) {
      const result = await admin.apply(action, seen!);
      assert.equal(result.done, false, action);
      assert.match((result as { reason: string }).reason, /claimed for delivery meanwhile.*pid 4242/, action);
    }
    assert.deepEqual(await readdir(path.join(layout.dir('active'), '4242')), [`${env.id}.json`], 'the claim is intact');
    assert.ok((await readdir(layout.dir('data'))).includes(`${env.id}.eml`), 'its message too');
    assert.deepEqual(await readdir(layout.dir('tmp')), []);
    assert.deepEqual(logs.lines().filter((line) => line.queueId === env.id), [], 'nothing changed, nothing logged');
    // Once the delivery deferred it again under a new due time, the stale entry is "moved", not deleted blindly.
    await rename(claimed, path.join(layout.dir('deferred'), deferredName(env.id, NOW + H)));
    const moved = await admin.apply('delete', seen!);
    assert.match((moved as { reason: string }).reason, /moved to deferred meanwhile/);
    // And a message that finished meanwhile is simply gone.
    const fresh = (await findQueueItem(layout, env.id))!;
    await rename(fresh.file, path.join(layout.dir('tmp'), 'finished'));
    assert.match((await admin.apply('delete', fresh) as { reason: string }).reason, /no longer in the queue/);
  });

  test('delete: envelope and message file gone, nothing left in tmp/, one log line with sender and recipients', async () => {
    const env = envelope({ recipients: [recipient('u@gone.test', 'deferred', '451 4.3.0 later'), recipient('v@gone.test', 'delivered', '250 2.0.0 ok')] });
    await put('held', env);
    const admin = new QueueAdmin(layout, logs.logger, procProcessTable(), newLeaseToken());
    assert.deepEqual(await admin.apply('delete', (await findQueueItem(layout, env.id))!), { done: true });
    await admin.sync();
    assert.equal(await findQueueItem(layout, env.id), undefined);
    assert.ok(!(await readdir(layout.dir('data'))).includes(`${env.id}.eml`));
    assert.ok(!(await readdir(layout.dir('tmp'))).some((name) => name.startsWith(env.id)));
    const lines = logs.lines().filter((line) => line.queueId === env.id);
    assert.deepEqual(lines.map(({ event, from, sender, recipients }) => ({ event, from, sender, recipients })), [{ event: 'deleted', from: 'held', sender: 'news@shop.example', recipients: ['u@gone.test'] }]);
  });

  test('hold works on a spool made before held/ existed; release puts it back in incoming/', async () => {
    const { rm } = await import('node:fs/promises');
    await rm(layout.dir('held'), { recursive: true, force: true });
    const env = envelope({ recipients: [recipient('u@old.test', 'pending')] });
    await put('incoming', env);
    assert.ok((await scanQueue(layout)).some((entry) => entry.id === env.id), 'listing copes without held/');
    const admin = new QueueAdmin(layout, logs.logger, procProcessTable(), newLeaseToken());
    assert.deepEqual(await admin.apply('hold', (await findQueueItem(layout, env.id))!), { done: true });
    assert.deepEqual(await readdir(layout.dir('held')), [`${env.id}.json`]);
    assert.deepEqual(await admin.apply('release', (await findQueueItem(layout, env.id))!), { done: true });
    assert.ok((await readdir(layout.dir('incoming'))).includes(`${env.id}.json`));
    assert.deepEqual(logs.lines().filter((line) => line.queueId === env.id).map((line) => [line.event, line.from]), [['held', 'incoming'], ['released', 'held']]);
  });

  test('the header block is read up to the blank line, never the body, and at most the limit', async () => {
    const file = path.join(layout.dir('tmp'), 'headers.eml');
    const header = `Received: from x\r\n\tby relay.test\r\n${'X-Filler: ' + 'a'.repeat(8180)}\r\nSubject: straddles a chunk\r\n`;
    await writeFile(file, `${header}\r\nBODY-MARKER\r\n${'b'.repeat(3_000_000)}`);
    const block = await readHeaderBlock(wholeFileSource(nodeSpoolFs, file));
    assert.equal(block?.text, header.slice(0, -2));
    assert.equal(block?.truncated, false);
    const small = await readHeaderBlock(wholeFileSource(nodeSpoolFs, file), 4096);
    assert.equal(small?.truncated, true);
    assert.equal(small?.text.length, 4096);
    assert.equal(await readHeaderBlock(wholeFileSource(nodeSpoolFs, path.join(layout.dir('tmp'), 'missing.eml'))), null);
  });
});
