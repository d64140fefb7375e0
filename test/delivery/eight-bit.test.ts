import assert from 'node:assert/strict';
import { isAscii } from 'node:buffer';
import { after, before, describe, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { quotedPrintable, sevenBitPlan } from '../../src/delivery/eight-bit.js';
import { newRecipient, type Envelope } from '../../src/spool/envelope.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { readSpooled } from '../helpers/spool-reader.js';

const crlf = (text: string) => text.replace(/\r?\n/g, '\r\n');
const bytes = (text: string) => Buffer.from(crlf(text), 'utf8');

const PLAIN_8BIT = 'From: a@shop.example\nSubject: cafe\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nCaf\u00e9 cr\u00e8me = 3 \u20ac \nLigne deux\n';

const MULTIPART = [
  'From: a@shop.example',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b1"',
  'Content-Transfer-Encoding: 8bit',
  '',
  'preamble',
  '--b1',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: 8bit',
  '',
  'gr\u00fc\u00dfe',
  '--b1',
  'Content-Type: application/octet-stream',
  'Content-Transfer-Encoding: base64',
  '',
  'AAECAwQ=',
  '--b1',
  'Content-Type: text/plain; charset=us-ascii',
  '',
  'plain ascii part',
  '--b1--',
  'epilogue',
  '',
].join('\n');

describe('7-bit conversion policy (RFC 6152 §3)', () => {
  test('a message without any 8-bit byte goes as it is, whatever its labels say', () => {
    const message = bytes('From: a@b\nContent-Transfer-Encoding: 8bit\nDKIM-Signature: v=1; d=b\n\nascii only\n');
    assert.deepEqual(sevenBitPlan(message), { kind: 'as-is' });
  });

  test('an unsigned 8-bit text part becomes quoted-printable and decodes back to the same text', async () => {
    const plan = sevenBitPlan(bytes(PLAIN_8BIT));
    assert.equal(plan.kind, 'converted');
    const body = (plan as { body: Buffer }).body;
    assert.ok(isAscii(body), 'nothing 8-bit is left');
    assert.match(body.toString(), /\r\nContent-Transfer-Encoding: quoted-printable\r\n/);
    assert.doesNotMatch(body.toString(), /8bit/i);
    const parsed = await simpleParser(body);
    assert.equal(parsed.text, 'Caf\u00e9 cr\u00e8me = 3 \u20ac \nLigne deux\n');
  });

  test('a multipart: only the 8-bit part is re-encoded, the others and the delimiters stay byte for byte', async () => {
    const plan = sevenBitPlan(bytes(MULTIPART));
    assert.equal(plan.kind, 'converted');
    const text = (plan as { body: Buffer }).body.toString('latin1');
    assert.ok(isAscii(Buffer.from(text, 'latin1')));
    assert.ok(text.startsWith('From: a@shop.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n--b1\r\n'), 'the multipart header loses its 8bit label');
    assert.match(text, /\r\n--b1\r\nContent-Type: text\/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ngr=C3=BC=C3=9Fe\r\n--b1\r\n/);
    assert.ok(text.includes('Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b1\r\n'), 'base64 part untouched');
    assert.ok(text.endsWith('plain ascii part\r\n--b1--\r\nepilogue\r\n'), 'ascii part, close delimiter and epilogue untouched');
    const parsed = await simpleParser((plan as { body: Buffer }).body);
    assert.equal(parsed.text?.trim().split('\n')[0], 'gr\u00fc\u00dfe');
    assert.deepEqual([...parsed.attachments[0]!.content], [0, 1, 2, 3, 4]);
  });

  test('a DKIM-signed 8-bit message is refused with 5.6.3 rather than converted under its signature', () => {
    const plan = sevenBitPlan(bytes(`DKIM-Signature: v=1; a=rsa-sha256; d=shop.example; s=s1;\n\tbh=x; b=y\n${PLAIN_8BIT}`));
    assert.equal(plan.kind, 'refused');
    assert.equal((plan as { reply: { enhanced: string } }).reply.enhanced, '5.6.3');
  });

  test('a message with no MIME header at all gets MIME-Version and a charset with its encoding', () => {
    const plan = sevenBitPlan(bytes('From: a@b\nSubject: x\n\nna\u00efve\n'));
    const text = (plan as { body: Buffer }).body.toString();
    assert.match(text, /^From: a@b\r\nSubject: x\r\nMIME-Version: 1\.0\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text\/plain; charset=utf-8\r\n\r\nna=C3=AFve\r\n$/);
  });

  test('8-bit header text is not body: kept byte for byte (as Postfix keeps it), the body still converted', () => {
    const plan = sevenBitPlan(bytes('Subject: caf\u00e9\n\nna\u00efve\n'));
    const body = (plan as { body: Buffer }).body;
    assert.ok(body.subarray(0, body.indexOf('\r\n\r\n')).includes(Buffer.from('Subject: caf\u00e9\r\n')));
    assert.ok(isAscii(body.subarray(body.indexOf('\r\n\r\n'))));
  });

  for (const [name, input, expected] of [
    ['= and 8-bit bytes are escaped', 'a=b\u00e9', 'a=3Db=E9'],
    ['trailing space and tab are escaped, inner ones kept', 'a b \t', 'a b =09'],
    ['hard line breaks stay', 'x\r\ny', 'x\r\ny'],
    ['long lines get soft breaks within 76 characters', '\u00e9'.repeat(30), `${'=E9'.repeat(25)}=\r\n${'=E9'.repeat(5)}`],
  ] as const) {
    test(`quoted-printable: ${name}`, () => {
      const out = quotedPrintable(Buffer.from(input, 'latin1').toString('latin1'));
      assert.equal(out, expected);
      for (const line of out.split('\r\n')) assert.ok(line.length <= 76, line);
    });
  }
});

describe('8BITMIME on the wire', () => {
  let f: DeliveryFixture;
  const MX = { eight: 0, seven: 1 } as const;

  before(async () => {
    f = await startDeliveryFixture([{ name: 'mx.eight.test' }, { name: 'mx.seven.test', eightBitMime: false }], (hosts) => ({
      'eight.test': { a: [hosts[MX.eight]!] },
      'shop.example': { a: [hosts[MX.eight]!] },
      'seven.test': { a: [hosts[MX.seven]!] },
    }));
  });
  after(() => f.close());

  async function enqueue(recipient: string, message: string, bodyType: Envelope['bodyType']): Promise<string> {
    const id = newQueueId(f.clock.now());
    const draft = new MessageWriter(f.layout).create(id);
    await draft.append([bytes(message)]);
    const now = f.clock.now();
    await draft.commit({ version: 1, sender: 'a@shop.example', recipients: [newRecipient(recipient)], user: 't', client: { address: '127.0.0.1', hostname: null, helo: 'x', tls: null }, arrivedAt: now, smtpUtf8: false, bodyType, nextAttemptAt: now, bounceOf: null });
    return id;
  }
  const receivedBy = (mx: keyof typeof MX, recipient: string) => f.mx.mxes[MX[mx]]!.messages.find((m) => m.to.includes(recipient));

  test('an 8-bit message to an MX that offers 8BITMIME goes with BODY=8BITMIME, byte for byte', async () => {
    const id = await enqueue('u1@eight.test', PLAIN_8BIT, '8bitmime');
    const spooled = (await readSpooled(f.layout.root, id)).message;
    await f.runOnce();
    const received = receivedBy('eight', 'u1@eight.test');
    assert.ok(received);
    assert.equal(received.mailParams.BODY, '8BITMIME');
    assert.deepEqual(received.raw, spooled);
  });

  test('a 7-bit message goes without BODY=', async () => {
    await enqueue('u2@eight.test', 'Subject: plain\n\nascii\n', '7bit');
    await f.runOnce();
    assert.equal(receivedBy('eight', 'u2@eight.test')?.mailParams.BODY, undefined);
  });

  test('to an MX without 8BITMIME: an unsigned message arrives converted to quoted-printable, nothing 8-bit', async () => {
    const id = await enqueue('u3@seven.test', PLAIN_8BIT, '8bitmime');
    await f.runOnce();
    const received = receivedBy('seven', 'u3@seven.test');
    assert.ok(received, 'delivered');
    assert.equal(received.mailParams.BODY, undefined, 'no BODY=8BITMIME to an MX that did not offer it');
    const body = received.raw.subarray(received.raw.indexOf('\r\n\r\n'));
    assert.ok(isAscii(body), 'the body arrived 7-bit');
    assert.match(received.raw.toString(), /Content-Transfer-Encoding: quoted-printable/);
    assert.equal((await simpleParser(received.raw)).text, 'Caf\u00e9 cr\u00e8me = 3 \u20ac \nLigne deux\n');
    assert.equal(f.logs.lines().filter((l) => l.queueId === id && l.event === 'delivered').length, 1);
  });

  test('to an MX without 8BITMIME: a DKIM-signed message bounces with 5.6.3 and the MX gets nothing', async () => {
    const id = await enqueue('u4@seven.test', `DKIM-Signature: v=1; d=shop.example; s=s1; bh=x; b=y\n${PLAIN_8BIT}`, '8bitmime');
    await f.runOnce();
    assert.equal(receivedBy('seven', 'u4@seven.test'), undefined);
    const [bounced] = f.logs.lines().filter((l) => l.queueId === id && l.event === 'bounced');
    assert.equal(bounced?.enhanced, '5.6.3');
    const dsn = f.mx.mxes[MX.eight]!.messages.find((m) => m.from === '' && m.raw.includes(id));
    assert.ok(dsn, 'DSN to the sender');
    assert.match(dsn.raw.toString(), /Status: 5\.6\.3/);
  });
});
