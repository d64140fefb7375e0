import assert from 'node:assert/strict';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { SpoolWriteError } from '../../src/shared/errors.js';
import { readBatch, RECORD_HEADER_BYTES } from '../../src/spool/batch-file.js';
import { newRecipient, type Envelope } from '../../src/spool/envelope.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { readSource } from '../../src/spool/message-source.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { tempDir } from '../helpers/temp.js';
import { nodeSpoolFs } from '../../src/spool/spool-fs.js';

const NEW_ENVELOPE: Omit<Envelope, 'id' | 'size'> = {
  version: 1,
  sender: 'app@shop.example',
  recipients: [newRecipient('x@a.example')],
  user: 'app',
  client: { address: '127.0.0.1', hostname: null, helo: 'app.example', tls: null },
  arrivedAt: 1_795_680_000_000,
  smtpUtf8: false,
  bodyType: '7bit',
  nextAttemptAt: 1_795_680_000_000,
  bounceOf: null,
};

function body(index: number, size: number): Buffer {
  const text = `Subject: message ${index}\r\n\r\n`;
  return Buffer.concat([Buffer.from(text), Buffer.alloc(size - text.length, `line ${index}\r\n`)]);
}

/** Streams `message` into a draft in 16 KiB chunks, as smtp-server hands DATA over, and commits it. */
async function submit(writer: MessageWriter, message: Buffer): Promise<string> {
  const id = newQueueId();
  const draft = writer.create(id);
  for (let offset = 0; offset < message.length; offset += 16 * 1024) {
    const pending = draft.append([message.subarray(offset, offset + 16 * 1024)]);
    if (pending) await pending;
  }
  await draft.commit(NEW_ENVELOPE);
  return id;
}

describe('spool batch files (group commit)', () => {
  let layout: SpoolLayout;
  let cleanup: () => Promise<void>;
  before(async () => {
    const dir = await tempDir('mta-batch-');
    cleanup = dir.cleanup;
    layout = spoolLayout(path.join(dir.dir, 'spool'));
  });
  beforeEach(async () => {
    await rm(layout.root, { recursive: true, force: true });
    await ensureSpool(layout);
  });
  after(() => cleanup());

  const batches = async () => (await readdir(layout.dir('incoming'))).map((name) => path.join(layout.dir('incoming'), name));

  test('messages committed together share one batch file; each reads back byte for byte with its envelope', async () => {
    const messages = Array.from({ length: 20 }, (_, index) => body(index, 5000 + index));
    const writer = new MessageWriter(layout);
    const ids = await Promise.all(messages.map((message) => submit(writer, message)));
    const files = await batches();
    assert.ok(files.every((file) => file.endsWith('.batch')), files.join());
    assert.ok(files.length < messages.length, `${files.length} batch files for ${messages.length} messages: no group commit`);
    const found = new Map<string, Buffer>();
    for (const file of files) {
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      const records = await readBatch(nodeSpoolFs, file);
      assert.equal(path.basename(file), `${records[0]!.envelope.id}.batch`, 'named after its first message');
      for (const { envelope, source } of records) {
        assert.deepEqual({ ...envelope, id: undefined, size: undefined }, { ...NEW_ENVELOPE, id: undefined, size: undefined });
        found.set(envelope.id, await readSource(source));
        assert.equal(envelope.size, source.length);
      }
    }
    assert.deepEqual([...found.keys()].sort(), [...ids].sort());
    ids.forEach((id, index) => assert.deepEqual(found.get(id), messages[index], `message ${index}`));
    assert.deepEqual(await readdir(layout.dir('tmp')), []);
    assert.deepEqual(await readdir(layout.dir('data')), [], 'intake writes no data/ file');
  });

  test('a message too big for memory streams into a batch file of its own, its header written last', async () => {
    const big = body(1, 3 * 1024 * 1024 + 7);
    const id = await submit(new MessageWriter(layout), big);
    const file = path.join(layout.dir('incoming'), `${id}.batch`);
    const raw = await readFile(file);
    assert.equal(raw.subarray(0, RECORD_HEADER_BYTES).toString('latin1'), `MTAB1 ${String(big.length).padStart(12, '0')} ${String(raw.length - RECORD_HEADER_BYTES - big.length).padStart(12, '0')}\n`);
    const [record, ...rest] = await readBatch(nodeSpoolFs, file);
    assert.deepEqual(rest, []);
    assert.equal(record!.envelope.size, big.length);
    assert.deepEqual(await readSource(record!.source), big);
  });

  test('a draft discarded after it spilled to disk leaves nothing behind', async () => {
    const draft = new MessageWriter(layout).create(newQueueId());
    await draft.append([Buffer.alloc(200 * 1024, 'x')]);
    assert.equal((await readdir(layout.dir('tmp'))).length, 1, 'streaming to tmp/');
    await draft.discard();
    assert.deepEqual([...(await readdir(layout.dir('tmp'))), ...(await readdir(layout.dir('incoming')))], []);
  });

  test('a failed commit fails every message of its group with 452 4.3.1 and leaves nothing behind', async () => {
    await rm(layout.dir('incoming'), { recursive: true });
    await writeFile(layout.dir('incoming'), 'not a directory'); // the rename into incoming/ fails: ENOTDIR
    const writer = new MessageWriter(layout);
    const results = await Promise.allSettled([1, 2, 3].map((index) => submit(writer, body(index, 4000))));
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      const reason = (result as PromiseRejectedResult).reason as SpoolWriteError;
      assert.ok(reason instanceof SpoolWriteError, String(reason));
      assert.deepEqual(reason.smtp, { code: 452, enhanced: '4.3.1' });
    }
    assert.deepEqual(await readdir(layout.dir('tmp')), []);
  });

  test('a batch whose lengths do not add up is refused as corrupt, naming where', async () => {
    const id = await submit(new MessageWriter(layout), body(1, 3000));
    const file = path.join(layout.dir('incoming'), `${id}.batch`);
    const raw = await readFile(file);
    await writeFile(file, raw.subarray(0, raw.length - 10));
    await assert.rejects(readBatch(nodeSpoolFs, file), { code: 'ESPOOLCORRUPT', message: /runs past the end/ });
    await writeFile(file, Buffer.concat([raw, Buffer.from('garbage '.repeat(6))]));
    await assert.rejects(readBatch(nodeSpoolFs, file), { code: 'ESPOOLCORRUPT', message: /no record header at byte/ });
  });
});
