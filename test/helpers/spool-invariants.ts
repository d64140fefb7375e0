import assert from 'node:assert/strict';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readBatch, encodeRecord } from '../../src/spool/batch-file.js';
import type { ProcessTable } from '../../src/spool/claim-lease.js';
import { newRecipient, parseEnvelope, type Envelope } from '../../src/spool/envelope.js';
import { parseDeferredName, parseIncomingName, RECOVERED_BATCH } from '../../src/spool/entry-names.js';
import type { SpoolLayout } from '../../src/spool/layout.js';
import { readSource } from '../../src/spool/message-source.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import type { QueueStore } from '../../src/spool/queue-store.js';
import { nodeSpoolFs } from '../../src/spool/spool-fs.js';
import { procProcessTable } from '../../src/cli/process-table.js';

/**
 * What the fault walks of test/spool/fault-walk.test.ts check on a spool after a failure: read with node's file
 * system (never the faulty double), and strict about anything under a real name.
 */

export type NewEnvelope = Omit<Envelope, 'id' | 'size'>;

/** Fields as test/helpers/delivery-fixture.ts `newEnvelope` makes them. */
export function newEnvelope(now = Date.now()): NewEnvelope {
  return {
    version: 1,
    sender: 'app@shop.example',
    recipients: [newRecipient('alice@a.example'), newRecipient('bob@b.example')],
    user: 'test',
    client: { address: '127.0.0.1', hostname: null, helo: 'test.example', tls: null },
    arrivedAt: now,
    smtpUtf8: false,
    bodyType: '8bitmime',
    nextAttemptAt: now,
    bounceOf: null,
  };
}

/** A message of `size` bytes whose every line says which message it is, so a mix-up shows. */
export function messageBody(label: string, size: number): Buffer {
  const head = Buffer.from(`Subject: ${label}\r\n\r\n`);
  const line = Buffer.from(`${label} body line\r\n`);
  const body = Buffer.alloc(Math.max(0, size - head.length), line);
  return Buffer.concat([head, body]);
}

/** Puts messages into incoming/ as one batch file (a group commit, as delivery-fixture `enqueueBatch` does). */
export async function putBatch(layout: SpoolLayout, labels: string[], size = 3000): Promise<{ name: string; ids: string[]; bodies: Map<string, Buffer> }> {
  const bodies = new Map<string, Buffer>();
  const parts: Buffer[] = [];
  for (const label of labels) {
    const id = newQueueId(Date.now());
    const body = messageBody(label, size);
    bodies.set(id, body);
    parts.push(...encodeRecord({ ...newEnvelope(), id, size: body.length }, [body]));
  }
  const ids = [...bodies.keys()];
  const name = `${ids[0]}.batch`;
  await writeFile(path.join(layout.dir('tmp'), name), parts, { mode: 0o600 });
  await rename(path.join(layout.dir('tmp'), name), path.join(layout.dir('incoming'), name));
  return { name, ids, bodies };
}

/** Puts one message into incoming/ as an entry of its own: data/<id>.eml, then incoming/<id>.json. */
export async function putOwnEntry(layout: SpoolLayout, label: string): Promise<{ id: string; body: Buffer }> {
  const id = newQueueId(Date.now());
  const body = messageBody(label, 2000);
  await writeFile(layout.messagePath(id), body, { mode: 0o600 });
  await writeFile(path.join(layout.dir('incoming'), `${id}.json`), JSON.stringify({ ...newEnvelope(), id, size: body.length }), { mode: 0o600 });
  return { id, body };
}

/** This process as seen by another that believes it dead: same pid, another start time. */
export function deadSelfTable(startTime: string): ProcessTable {
  const real = procProcessTable();
  return { self: { ...real.self, startTime }, startTimeOf: real.startTimeOf };
}

/** A process (this one under another start time) for which every other process is gone. */
export function everyoneDeadTable(): ProcessTable {
  const real = procProcessTable();
  return { self: { ...real.self, startTime: 'recoverer' }, startTimeOf: () => null };
}

/** One place a message can be delivered from. */
export interface Copy {
  id: string;
  /** `incoming/<name>`, `deferred/<name>`, `held/<name>`, `active/<owner>/<name>`, or `batch <name>`. */
  where: string;
  state: 'incoming' | 'deferred' | 'held' | 'active';
  envelope: Envelope;
  bytes: Buffer;
}

const names = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [])).filter((name) => !name.startsWith('.')).sort();

/**
 * Every envelope of its own in the queue, with its message. An envelope that does not parse, or that has no
 * `data/<id>.eml`, fails: that is a half entry under a real name (docs/spool.md, "an envelope never exists
 * without its message").
 */
export async function ownEntries(layout: SpoolLayout): Promise<Copy[]> {
  const places: { state: Copy['state']; dir: string; where: string; name: string }[] = [];
  for (const name of await names(layout.dir('incoming'))) if (name.endsWith('.json')) places.push({ state: 'incoming', dir: layout.dir('incoming'), where: 'incoming', name });
  for (const name of await names(layout.dir('deferred'))) places.push({ state: 'deferred', dir: layout.dir('deferred'), where: 'deferred', name });
  for (const name of await names(layout.dir('held'))) places.push({ state: 'held', dir: layout.dir('held'), where: 'held', name });
  for (const owner of await names(layout.dir('active'))) {
    const dir = path.join(layout.dir('active'), owner);
    for (const name of await names(dir)) if (name.endsWith('.json')) places.push({ state: 'active', dir, where: `active/${owner}`, name });
  }
  const copies: Copy[] = [];
  for (const { state, dir, where, name } of places) {
    const id = state === 'deferred' ? parseDeferredName(name)?.id : parseIncomingName(name);
    assert.ok(id, `${where}/${name}: a name that is no queue entry`);
    const text = await readFile(path.join(dir, name), 'utf8');
    let envelope: Envelope;
    try {
      envelope = parseEnvelope(text, name);
    } catch (error) {
      assert.fail(`${where}/${name}: a half-written envelope under a real name (${(error as Error).message})`);
    }
    assert.equal(envelope.id, id, `${where}/${name}: envelope of another message`);
    const bytes = await readFile(layout.messagePath(id)).catch(() => undefined);
    assert.ok(bytes, `${where}/${name}: an envelope without its data/${id}.eml`);
    assert.equal(bytes.length, envelope.size, `${where}/${name}: data/${id}.eml is ${bytes.length} bytes, the envelope says ${envelope.size}`);
    copies.push({ id, where: `${where}/${name}`, state, envelope, bytes });
  }
  return copies;
}

/** Every batch file in incoming/, read whole: one that does not parse is a half file under a real name. */
export async function incomingBatches(layout: SpoolLayout): Promise<{ name: string; records: { envelope: Envelope; bytes: Buffer }[] }[]> {
  const batches = [];
  for (const name of await names(layout.dir('incoming'))) {
    if (!name.endsWith('.batch')) continue;
    const file = path.join(layout.dir('incoming'), name);
    let records;
    try {
      records = await readBatch(nodeSpoolFs, file);
    } catch (error) {
      assert.fail(`incoming/${name}: a batch file that does not parse, under a real name (${(error as Error).message})`);
    }
    batches.push({ name, records: await Promise.all(records.map(async ({ envelope, source }) => ({ envelope, bytes: await readSource(source) }))) });
  }
  return batches;
}

/**
 * Where each message would be delivered from, as mta-queue reads the spool: its own entry, every message of a
 * fresh batch, and the messages `reader.open` keeps of a recovered one (it skips those with an entry of their own
 * or a tombstone). Claims the recovered batches into `reader`'s directory (it must hold its lease), so call it last.
 */
export async function deliverableCopies(layout: SpoolLayout, reader: QueueStore): Promise<Map<string, Copy[]>> {
  const copies = new Map<string, Copy[]>();
  const add = (copy: Copy) => copies.set(copy.id, [...(copies.get(copy.id) ?? []), copy]);
  for (const copy of await ownEntries(layout)) add(copy);
  for (const owner of await names(layout.dir('active'))) {
    const batches = (await names(path.join(layout.dir('active'), owner))).filter((name) => name.endsWith('.batch'));
    assert.deepEqual(batches, [], `active/${owner} still claims a batch after recovery`);
  }
  assert.deepEqual(await names(layout.dir('corrupt')), [], 'something was set aside in corrupt/');
  for (const { name, records } of await incomingBatches(layout)) {
    if (!name.endsWith(RECOVERED_BATCH)) {
      for (const { envelope, bytes } of records) add({ id: envelope.id, where: `batch ${name}`, state: 'incoming', envelope, bytes });
      continue;
    }
    const claimed = await reader.claim({ dir: 'incoming', name, id: parseIncomingName(name)! });
    assert.ok(claimed, `incoming/${name} vanished while being read`);
    for (const { envelope, claim } of await reader.open(claimed)) add({ id: envelope.id, where: `batch ${name}`, state: 'incoming', envelope, bytes: await readSource(claim.source) });
  }
  return copies;
}

/** Fails unless `id` can be delivered from exactly one place, with exactly its bytes; returns that place. */
export function exactlyOnce(copies: Map<string, Copy[]>, id: string, body: Buffer, what: string): Copy {
  const found = copies.get(id) ?? [];
  assert.ok(found.length > 0, `${what}: ${id} is lost (deliverable from nowhere)`);
  assert.equal(found.length, 1, `${what}: ${id} is deliverable twice: ${found.map((copy) => copy.where).join(', ')}`);
  const copy = found[0]!;
  assert.ok(copy.bytes.equals(body), `${what}: ${id} at ${copy.where} is not its message byte for byte (${copy.bytes.length} bytes, expected ${body.length})`);
  return copy;
}
