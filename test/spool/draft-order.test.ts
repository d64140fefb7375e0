import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { FaultyFs } from '../helpers/faulty-fs.js';
import { testEnvelope } from '../helpers/queue-harness.js';
import { readSpooled } from '../helpers/spool-reader.js';
import { tempDir } from '../helpers/temp.js';

let temp: Awaited<ReturnType<typeof tempDir>>;
let fs: FaultyFs;
let layout: SpoolLayout;

before(async () => {
  temp = await tempDir('mta-draft-');
  fs = new FaultyFs();
  layout = spoolLayout(path.join(temp.dir, 'spool'), fs);
  await ensureSpool(layout);
});
after(() => temp.cleanup());

const newEnvelope = () => {
  const { id: _id, size: _size, ...rest } = testEnvelope(newQueueId(), 'app@shop.example', ['rcpt@a.test'], 0);
  return rest;
};

test('a commit waits for the flush still writing: no fdatasync, and no second write, while the first write is under way', async () => {
  const writer = new MessageWriter(layout);
  const id = newQueueId();
  const draft = writer.create(id);
  const tmpFile = path.join(layout.dir('tmp'), `${id}.batch`);
  const onTmp = (op: string) => (call: { op: string; path: string }) => call.op === op && call.path === tmpFile;
  const slowWrite = fs.holdWhen(onTmp('writev'));
  const first = Buffer.alloc(70 * 1024, 'a');
  // What receive-message saw when 'end' came while a flush was in flight: it went on to the tail and the commit.
  const flushing = draft.append([first]);
  assert.ok(flushing, 'past 64 KiB the draft writes');
  await slowWrite.reached;
  const committing = draft.commit(newEnvelope());
  let committed = false;
  void committing.then(() => (committed = true));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const meanwhile = fs.calls.filter((call) => call.path === tmpFile).map((call) => call.op);
  assert.deepEqual(meanwhile, ['open-wx', 'writev'], 'nothing else touches the file while its first write is held');
  assert.equal(committed, false, 'no 250 before the bytes are written');
  slowWrite.release();
  await flushing;
  await committing;
  const ops = fs.calls.filter((call) => call.path === tmpFile).map((call) => call.op);
  assert.ok(ops.indexOf('datasync') > ops.lastIndexOf('writev'), `datasync after the last write: ${ops.join(' ')}`);
  const spooled = await readSpooled(layout.root, id);
  assert.deepEqual(spooled.message, first, 'the record holds the bytes in order');
});

test('appends after a failed flush fail with it, and the draft leaves nothing behind', async () => {
  const writer = new MessageWriter(layout);
  const id = newQueueId();
  const draft = writer.create(id);
  const tmpFile = path.join(layout.dir('tmp'), `${id}.batch`);
  fs.failWhen((call) => call.op === 'writev' && call.path === tmpFile, 'ENOSPC');
  await assert.rejects(draft.append([Buffer.alloc(70 * 1024, 'b')])!, { code: 'ESPOOLWRITE' });
  await assert.rejects(draft.commit(newEnvelope()), { code: 'ESPOOLWRITE' }, 'the commit of a broken draft fails too: no 250');
  await draft.discard();
  assert.deepEqual((await fs.readdir(layout.dir('tmp'))).filter((name) => name.startsWith(id)), []);
  assert.deepEqual((await fs.readdir(layout.dir('incoming'))).filter((name) => name.startsWith(id)), []);
});
