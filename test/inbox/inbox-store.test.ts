import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { startCatchAllInbox, type CatchAllInbox } from '../../src/inbox/catch-all-server.js';
import { InboxStore } from '../../src/inbox/inbox-store.js';
import { LogCapture } from '../helpers/log-capture.js';
import { tempDir } from '../helpers/temp.js';

/** Writes a message the way the catch-all server does (format in src/inbox/inbox-store.ts), without SMTP. */
async function keep(dir: string, id: string, raw: string | Buffer, envelope: object | null = { from: 'a@shop.example', to: ['b@c.example'], client: '127.0.0.1', receivedAt: parseInt(id.slice(0, 9), 36) }): Promise<void> {
  await writeFile(path.join(dir, `${id}.eml`), raw);
  if (envelope) await writeFile(path.join(dir, `${id}.json`), JSON.stringify(envelope));
}

/** The n-th id of a run, in time order. */
const idAt = (n: number) => `${(1_700_000_000_000 + n * 1000).toString(36).padStart(9, '0')}-${n.toString(16).padStart(8, '0')}`;

describe('inbox store over the catch-all server', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  let dir: string;
  let inbox: CatchAllInbox;
  let store: InboxStore;
  const sent: { id: string; raw: Buffer }[] = [];

  before(async () => {
    temp = await tempDir('mta-inbox-store-');
    dir = path.join(temp.dir, 'inbox');
    inbox = await startCatchAllInbox({ host: '127.0.0.1', port: 0, dir, maxMessageSize: 1024 * 1024, maxMessages: 50, hostname: 'inbox.test', logger: new LogCapture().logger });
    store = new InboxStore(dir);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: inbox.port, secure: false, ignoreTLS: true });
    const messages = [
      { subject: 'First plain', to: ['one@a.example'] },
      // "Grüße ✓ from the shop", base64 encoded-word as many senders emit it
      { subject: `=?UTF-8?B?${Buffer.from('Grüße ✓ from the shop').toString('base64')}?=`, to: ['two@a.example', 'three@b.example'] },
      { subject: '<script>alert(1)</script>', to: ['four@a.example'] },
    ];
    for (const [index, message] of messages.entries()) {
      const raw = Buffer.from(`From: shop@shop.example\r\nTo: ${message.to.join(', ')}\r\nSubject: ${message.subject}\r\nMessage-ID: <m${index}@shop.example>\r\n\r\nbody ${index}\r\n`);
      const info = await transport.sendMail({ envelope: { from: 'bounce@shop.example', to: message.to }, raw });
      sent.push({ id: /kept as (\S+)$/.exec(info.response)![1]!, raw });
    }
    transport.close();
  });
  after(async () => {
    await inbox.close();
    await temp.cleanup();
  });

  test('list() gives the newest first with the envelope, decoded subjects and sizes', async () => {
    const { messages, total } = await store.list(10);
    assert.equal(total, 3);
    assert.deepEqual(
      messages.map((message) => message.id),
      sent.map((message) => message.id).reverse(),
    );
    const [script, encoded, plain] = messages;
    assert.equal(plain!.subject, 'First plain');
    assert.equal(encoded!.subject, 'Grüße ✓ from the shop');
    assert.equal(script!.subject, '<script>alert(1)</script>', 'returned as-is: escaping is the web layer’s job');
    assert.equal(encoded!.from, 'bounce@shop.example');
    assert.deepEqual(encoded!.to, ['two@a.example', 'three@b.example']);
    assert.equal(encoded!.size, sent[1]!.raw.length);
    assert.equal(encoded!.receivedAt, parseInt(encoded!.id.slice(0, 9), 36));
    assert.ok(Math.abs(encoded!.receivedAt - Date.now()) < 60_000);
    assert.equal('headers' in encoded!, false, 'the list carries summaries only');
  });

  test('list(limit) cuts the page but counts them all', async () => {
    const page = await store.list(2);
    assert.equal(page.total, 3);
    assert.deepEqual(
      page.messages.map((message) => message.id),
      [sent[2]!.id, sent[1]!.id],
    );
    assert.deepEqual(await store.list(0), { messages: [], total: 3 });
  });

  test('get() gives the header block as CRLF text without the body; raw() the stored bytes', async () => {
    const message = await store.get(sent[1]!.id);
    assert.ok(message);
    assert.equal(message.subject, 'Grüße ✓ from the shop');
    assert.equal(message.headers, sent[1]!.raw.toString('utf8').split('\r\n\r\n')[0] + '\r\n');
    assert.doesNotMatch(message.headers, /body 1/);
    assert.deepEqual(await store.raw(sent[1]!.id), sent[1]!.raw);
    assert.equal(await store.get('zzzzzzzzz-00000000'), null, 'a well-formed id that is not there');
    assert.equal(await store.raw('zzzzzzzzz-00000000'), null);
  });

  test('ids that could name another file give null, even when that file exists', async () => {
    await writeFile(path.join(temp.dir, 'secret.eml'), 'Subject: outside\r\n\r\nnot yours\r\n');
    await writeFile(path.join(dir, '.tmp-0123456789abcdef.eml'), 'Subject: half\r\n\r\n');
    const valid = sent[0]!.id;
    for (const id of ['../secret', '/etc/passwd', 'a/b', '..', '', `${valid}/../${valid}`, `../inbox/${valid}`, `${valid}.eml`, `${valid}\0`, '.tmp-0123456789abcdef', valid.toUpperCase()]) {
      assert.equal(await store.get(id), null, `get(${JSON.stringify(id)})`);
      assert.equal(await store.raw(id), null, `raw(${JSON.stringify(id)})`);
    }
    assert.notEqual(await store.get(valid), null, 'the same store does read a real id');
  });

  test('clear() deletes every message and its envelope and says how many', async () => {
    const before = await readdir(dir);
    assert.equal(before.filter((name) => name.endsWith('.eml') && !name.startsWith('.')).length, 3);
    assert.equal(await store.clear(), 3);
    assert.deepEqual(await store.list(10), { messages: [], total: 0 });
    assert.deepEqual((await readdir(dir)).filter((name) => !name.startsWith('.tmp-')), []);
    assert.equal(await store.clear(), 0);
  });
});

describe('inbox store on files', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    temp = await tempDir('mta-inbox-files-');
  });
  after(() => temp.cleanup());

  const freshDir = async (name: string) => {
    const dir = path.join(temp.dir, name);
    await mkdir(dir);
    return dir;
  };

  test('a directory that does not exist lists as empty', async () => {
    const store = new InboxStore(path.join(temp.dir, 'never-created'));
    assert.deepEqual(await store.list(50), { messages: [], total: 0 });
    assert.equal(await store.get(idAt(1)), null);
    assert.equal(await store.raw(idAt(1)), null);
    assert.equal(await store.clear(), 0);
  });

  test('subjects: folded, Q-encoded in another charset, raw UTF-8, absent', async () => {
    const dir = await freshDir('subjects');
    await keep(dir, idAt(1), 'Subject: a long subject\r\n folded onto two lines\r\n\r\nbody\r\n');
    await keep(dir, idAt(2), 'Subject: =?ISO-8859-1?Q?caf=E9?= =?ISO-8859-1?Q?_cr=E8me?=\r\n\r\nbody\r\n');
    await keep(dir, idAt(3), Buffer.from('Subject: déjà vu\r\n\r\nbody\r\n', 'utf8'));
    await keep(dir, idAt(4), 'From: a@b.c\r\n\r\nSubject: this is the body\r\n');
    const subjects = Object.fromEntries((await new InboxStore(dir).list(10)).messages.map((message) => [message.id, message.subject]));
    assert.deepEqual(subjects, { [idAt(1)]: 'a long subject folded onto two lines', [idAt(2)]: 'café crème', [idAt(3)]: 'déjà vu', [idAt(4)]: '' });
  });

  test('a message without its envelope file is still listed, with the time from its id', async () => {
    const dir = await freshDir('no-envelope');
    await keep(dir, idAt(7), 'Subject: alone\r\n\r\nbody\r\n', null);
    await keep(dir, idAt(8), 'Subject: damaged\r\n\r\nbody\r\n');
    await writeFile(path.join(dir, `${idAt(8)}.json`), '{"from": 42');
    const { messages } = await new InboxStore(dir).list(10);
    assert.deepEqual(
      messages.map(({ id, from, to, receivedAt, subject }) => ({ id, from, to, receivedAt, subject })),
      [
        { id: idAt(8), from: '', to: [], receivedAt: 1_700_000_008_000, subject: 'damaged' },
        { id: idAt(7), from: '', to: [], receivedAt: 1_700_000_007_000, subject: 'alone' },
      ],
    );
  });

  test('bare LF line ends come back as CRLF; a message with no body is all header', async () => {
    const dir = await freshDir('line-ends');
    await keep(dir, idAt(1), 'Subject: lf only\nX-A: 1\n\nbody\n');
    await keep(dir, idAt(2), 'Subject: no body\r\nX-B: 2\r\n');
    const store = new InboxStore(dir);
    assert.equal((await store.get(idAt(1)))!.headers, 'Subject: lf only\r\nX-A: 1\r\n');
    assert.equal((await store.get(idAt(2)))!.headers, 'Subject: no body\r\nX-B: 2\r\n');
    assert.equal((await store.get(idAt(2)))!.subject, 'no body');
  });

  test('headers stop at 64 KiB on a line end, and a body too large to read whole is never read', async () => {
    const dir = await freshDir('large');
    const padding = Array.from({ length: 2000 }, (_, index) => `X-Pad-${String(index).padStart(4, '0')}: ${'p'.repeat(30)}\r\n`).join('');
    await keep(dir, idAt(1), `Subject: before the padding\r\n${padding}Subject-After: late\r\n\r\nbody\r\n`);
    // 3 GiB, sparse: readFile() refuses anything over 2 GiB, so only a bounded read can list it.
    const huge = path.join(dir, `${idAt(2)}.eml`);
    await keep(dir, idAt(2), 'Subject: huge\r\n\r\n');
    await truncate(huge, 3 * 1024 ** 3);

    const store = new InboxStore(dir);
    const long = await store.get(idAt(1));
    assert.ok(long);
    assert.equal(long.subject, 'before the padding');
    const bytes = Buffer.byteLength(long.headers);
    assert.ok(bytes <= 64 * 1024 && bytes > 64 * 1024 - 100, `headers are ${bytes} bytes`);
    assert.ok(long.headers.endsWith('\r\n'));
    assert.doesNotMatch(long.headers, /Subject-After/);

    const { messages } = await store.list(10);
    assert.deepEqual(
      messages.map(({ id, subject, size }) => ({ id, subject, size })),
      [
        { id: idAt(2), subject: 'huge', size: 3 * 1024 ** 3 },
        { id: idAt(1), subject: 'before the padding', size: (await readFile(path.join(dir, `${idAt(1)}.eml`))).length },
      ],
    );
  });

  test('listing 1,000 messages reads their headers only and stays fast', async () => {
    const dir = await freshDir('thousand');
    const header = (n: number) =>
      `DKIM-Signature: v=1; a=rsa-sha256; d=shop.example; s=s1; h=from:to:subject; b=${'A'.repeat(344)}\r\nFrom: shop@shop.example\r\nTo: n${n}@a.example\r\nSubject: =?UTF-8?B?${Buffer.from(`Nummer ${n} – grüß`).toString('base64')}?=\r\nMIME-Version: 1.0\r\n\r\n`;
    for (let n = 0; n < 1000; n++) {
      await keep(dir, idAt(n), header(n));
      // 16 MiB of sparse body each (16 GB in all): reading the bodies would take far longer than the bound below.
      await truncate(path.join(dir, `${idAt(n)}.eml`), 16 * 1024 * 1024);
    }
    const started = performance.now();
    const { messages, total } = await new InboxStore(dir).list(1000);
    const ms = performance.now() - started;
    assert.equal(total, 1000);
    assert.equal(messages.length, 1000);
    assert.deepEqual(
      messages.slice(0, 2).map((message) => message.subject),
      ['Nummer 999 – grüß', 'Nummer 998 – grüß'],
    );
    assert.equal(messages[999]!.subject, 'Nummer 0 – grüß');
    assert.ok(ms < 5_000, `list(1000) took ${Math.round(ms)} ms`);
    assert.equal(await new InboxStore(dir).clear(), 1000);
  });
});
