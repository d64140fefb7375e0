import assert from 'node:assert/strict';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { deferredName } from '../../src/spool/entry-names.js';
import { serializeEnvelope } from '../../src/spool/envelope.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { eventually, startQueueHarness, testEnvelope, TransportDouble, type QueueHarness } from '../helpers/queue-harness.js';

let h: QueueHarness;
beforeEach(async () => (h = await startQueueHarness()));
afterEach(() => h.close());

test('deferred/ is listed again only when it changed: nothing to read while a suspended site\'s mail waits; an entry another process defers is still found', async () => {
  const transport = new TransportDouble();
  const runner = h.runner(transport, { deferredRescanInterval: 50 });
  const listings = () => h.fs.calls.filter((call) => call.op === 'readdir' && path.basename(call.path) === 'deferred').length;
  await runner.start({ watch: true });
  try {
    const atStart = listings();
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(listings(), atStart, 'a dozen looks at an unchanged deferred/: no listing');
    // What another mta-queue (or an admin command) does: an envelope renamed into deferred/, due now.
    const id = newQueueId();
    const body = Buffer.from('Subject: deferred elsewhere\r\n\r\nbody\r\n');
    await writeFile(h.layout.messagePath(id), body);
    await writeFile(path.join(h.layout.dir('tmp'), `${id}.json`), serializeEnvelope(testEnvelope(id, 'app@shop.example', ['bob@far.test'], body.length)));
    await rename(path.join(h.layout.dir('tmp'), `${id}.json`), path.join(h.layout.dir('deferred'), deferredName(id, Date.now() - 1000)));
    await eventually(() => transport.calls.some((call) => call.recipients.includes('bob@far.test')), 'the entry another process deferred is delivered', 5_000);
    assert.ok(listings() > atStart, 'found by a new listing');
  } finally {
    await runner.close();
  }
});
