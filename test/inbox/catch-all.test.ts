import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { startCatchAllInbox, type CatchAllInbox } from '../../src/inbox/catch-all-server.js';
import { LogCapture } from '../helpers/log-capture.js';
import { RawSmtpClient } from '../helpers/raw-smtp.js';
import { tempDir } from '../helpers/temp.js';

const ID = /^[0-9a-z]{9}-[0-9a-f]{8}$/;

interface Started {
  inbox: CatchAllInbox;
  dir: string;
  log: LogCapture;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startInbox(options: { maxMessageSize?: number; maxMessages?: number; prepare?: (dir: string) => Promise<void> } = {}): Promise<Started> {
  const temp = await tempDir('mta-inbox-');
  cleanups.push(temp.cleanup);
  const dir = path.join(temp.dir, 'inbox');
  if (options.prepare) {
    await mkdir(dir);
    await options.prepare(dir);
  }
  const log = new LogCapture();
  const inbox = await startCatchAllInbox({
    host: '127.0.0.1',
    port: 0,
    dir,
    maxMessageSize: options.maxMessageSize ?? 1024 * 1024,
    maxMessages: options.maxMessages ?? 100,
    hostname: 'inbox.test',
    logger: log.logger,
  });
  cleanups.push(() => inbox.close());
  return { inbox, dir, log };
}

function transportTo(port: number) {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  cleanups.push(async () => transport.close());
  return transport;
}

function keptId(response: string): string {
  const match = /^250 2\.0\.0 Ok: kept as (\S+)$/.exec(response);
  assert.ok(match, `unexpected reply ${response}`);
  assert.match(match[1]!, ID);
  return match[1]!;
}

/** A message of exactly `size` bytes, CRLF lines, a lone-dot-looking line included (dot-stuffed on the wire). */
function rawMessage(size: number, subject = 'Sized'): Buffer {
  const head = `From: a@shop.example\r\nTo: b@c.example\r\nSubject: ${subject}\r\n\r\n.leading dot\r\n`;
  const filler = size - Buffer.byteLength(head) - 2;
  assert.ok(filler >= 0);
  return Buffer.from(`${head}${'x'.repeat(filler)}\r\n`);
}

describe('catch-all inbox server', () => {
  test('keeps a message byte for byte with its envelope beside it, names it in the reply, and logs it without the body', async () => {
    const { inbox, dir, log } = await startInbox();
    assert.ok(inbox.port > 0, 'port 0 gives the real port');
    const raw = Buffer.from('From: News <news@shop.example>\r\nTo: alice@a.example\r\nSubject: Hello\r\n\r\nsecret-body-marker\r\n..two dots\r\n.\r\nend\r\n');
    const before = Date.now();
    const info = await transportTo(inbox.port).sendMail({ envelope: { from: 'bounce@shop.example', to: ['alice@a.example', 'bob@b.example'] }, raw });
    const after = Date.now();
    const id = keptId(info.response);

    assert.deepEqual((await readdir(dir)).sort(), [`${id}.eml`, `${id}.json`]);
    assert.deepEqual(await readFile(path.join(dir, `${id}.eml`)), raw, 'stored as sent: dot-unstuffed, nothing added');
    const envelope = JSON.parse(await readFile(path.join(dir, `${id}.json`), 'utf8'));
    assert.equal(envelope.from, 'bounce@shop.example');
    assert.deepEqual(envelope.to, ['alice@a.example', 'bob@b.example']);
    assert.equal(envelope.client, '127.0.0.1');
    assert.ok(envelope.receivedAt >= before && envelope.receivedAt <= after + 1, `receivedAt ${envelope.receivedAt} outside ${before}..${after}`);
    assert.equal(parseInt(id.slice(0, 9), 36), envelope.receivedAt, 'the name carries receivedAt in base36');

    const lines = log.events('inbox-received');
    assert.equal(lines.length, 1);
    assert.deepEqual(
      { id: lines[0]!.id, from: lines[0]!.from, to: lines[0]!.to, size: lines[0]!.size },
      { id, from: 'bounce@shop.example', to: ['alice@a.example', 'bob@b.example'], size: raw.length },
    );
    assert.doesNotMatch(log.text(), /secret-body-marker/);
  });

  test('the null sender is kept as an empty from', async () => {
    const { inbox, dir } = await startInbox();
    const info = await transportTo(inbox.port).sendMail({ envelope: { from: '', to: ['postmaster@a.example'] }, raw: rawMessage(200) });
    const envelope = JSON.parse(await readFile(path.join(dir, `${keptId(info.response)}.json`), 'utf8'));
    assert.equal(envelope.from, '');
    assert.deepEqual(envelope.to, ['postmaster@a.example']);
  });

  test('a message of exactly maxMessageSize is kept; one byte more gets 552 5.3.4, leaves no file, and the session goes on', async () => {
    const { inbox, dir, log } = await startInbox({ maxMessageSize: 10_000 });
    const { client, greeting } = await RawSmtpClient.connect(inbox.port);
    cleanups.push(async () => client.close());
    assert.equal(greeting.code, 220);
    const ehlo = await client.command('EHLO client.test');
    assert.ok(ehlo.lines.includes('SIZE 10000'), ehlo.raw);
    assert.ok(!ehlo.lines.some((line) => /^(AUTH|STARTTLS)\b/.test(line)), `AUTH and STARTTLS are not offered: ${ehlo.raw}`);

    const send = async (message: Buffer) => {
      assert.equal((await client.command('MAIL FROM:<a@shop.example>')).code, 250);
      assert.equal((await client.command('RCPT TO:<b@c.example>')).code, 250);
      assert.equal((await client.command('DATA')).code, 354);
      // Dot-stuffing: the one line starting with a dot is sent with two.
      client.write(Buffer.concat([Buffer.from(message.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from('.\r\n')]));
      return client.read();
    };
    const tooLarge = await send(rawMessage(10_001));
    assert.equal(tooLarge.code, 552);
    assert.match(tooLarge.raw, /^552 5\.3\.4 /);
    assert.deepEqual(await readdir(dir), [], 'neither the message nor a temp file is left');
    assert.equal(log.events('inbox-rejected').length, 1);
    assert.equal(log.events('inbox-received').length, 0);

    const fits = await send(rawMessage(10_000));
    const id = keptId(fits.raw);
    assert.equal((await readFile(path.join(dir, `${id}.eml`))).length, 10_000);
  });

  test('a MAIL FROM declaring a SIZE over the limit is refused with 552 before DATA', async () => {
    const { inbox, dir } = await startInbox({ maxMessageSize: 10_000 });
    const { client } = await RawSmtpClient.connect(inbox.port);
    cleanups.push(async () => client.close());
    await client.command('EHLO client.test');
    const reply = await client.command('MAIL FROM:<a@shop.example> SIZE=10001');
    assert.equal(reply.code, 552);
    assert.deepEqual(await readdir(dir), []);
  });

  test('an oversize message from nodemailer is refused with 552 and not kept', async () => {
    const { inbox, dir } = await startInbox({ maxMessageSize: 4096 });
    const transport = transportTo(inbox.port);
    await assert.rejects(transport.sendMail({ from: 'a@shop.example', to: 'b@c.example', subject: 'big', text: 'y'.repeat(20_000) }), (error: Error & { responseCode?: number; response?: string }) => {
      assert.equal(error.responseCode, 552);
      assert.match(error.response ?? '', /^552 5\.3\.4 /);
      return true;
    });
    assert.deepEqual(await readdir(dir), []);
  });

  test('beyond maxMessages the oldest are deleted, message and envelope', async () => {
    const { inbox, dir } = await startInbox({ maxMessages: 3 });
    const transport = transportTo(inbox.port);
    const ids: string[] = [];
    for (let index = 0; index < 5; index++) ids.push(keptId((await transport.sendMail({ envelope: { from: 'a@shop.example', to: ['b@c.example'] }, raw: rawMessage(300, `n${index}`) })).response));
    assert.deepEqual([...ids].sort(), ids, 'ids grow in the order the messages were kept');
    assert.deepEqual((await readdir(dir)).sort(), ids.slice(2).flatMap((id) => [`${id}.eml`, `${id}.json`]));
  });

  test('at start, leftovers of an interrupted write are removed and the limit is applied; other files are left alone', async () => {
    const pair = async (dir: string, id: string) => {
      await writeFile(path.join(dir, `${id}.eml`), rawMessage(100));
      await writeFile(path.join(dir, `${id}.json`), JSON.stringify({ from: 'a@b.c', to: ['d@e.f'], client: '127.0.0.1', receivedAt: parseInt(id.slice(0, 9), 36) }));
    };
    const { dir } = await startInbox({
      maxMessages: 2,
      prepare: async (dir) => {
        for (const id of ['0lp000001-00000001', '0lp000002-00000002', '0lp000003-00000003']) await pair(dir, id);
        await writeFile(path.join(dir, '.tmp-0123456789abcdef.eml'), 'half a message');
        await writeFile(path.join(dir, '.tmp-fedcba9876543210.json'), '{');
        await writeFile(path.join(dir, '0lp000009-00000009.json'), '{}');
        await writeFile(path.join(dir, 'notes.txt'), 'mine');
      },
    });
    const names = (await readdir(dir)).sort();
    assert.deepEqual(names, ['0lp000002-00000002.eml', '0lp000002-00000002.json', '0lp000003-00000003.eml', '0lp000003-00000003.json', 'notes.txt']);
  });

  test('a directory removed while the server runs is made again for the next message', async () => {
    const { inbox, dir } = await startInbox();
    await rm(dir, { recursive: true });
    const info = await transportTo(inbox.port).sendMail({ envelope: { from: 'a@shop.example', to: ['b@c.example'] }, raw: rawMessage(200) });
    const id = keptId(info.response);
    assert.deepEqual((await readdir(dir)).sort(), [`${id}.eml`, `${id}.json`]);
  });

  test('close() frees the port', async () => {
    const { inbox } = await startInbox();
    await inbox.close();
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: inbox.port });
      socket.on('connect', () => (socket.destroy(), resolve('connected')));
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    });
    assert.equal(refused, 'ECONNREFUSED');
  });

  test('invalid limits are refused at start', async () => {
    const log = new LogCapture();
    const temp = await tempDir('mta-inbox-');
    cleanups.push(temp.cleanup);
    const base = { host: '127.0.0.1', port: 0, dir: temp.dir, maxMessageSize: 1000, maxMessages: 10, hostname: 'inbox.test', logger: log.logger };
    await assert.rejects(startCatchAllInbox({ ...base, maxMessages: 0 }), RangeError);
    await assert.rejects(startCatchAllInbox({ ...base, maxMessageSize: Number.NaN }), RangeError);
  });
});
