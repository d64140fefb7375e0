import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseNetworks } from '../../src/config/units.js';
import { MessageNormalizer } from '../../src/intake/message-normalizer.js';
import { MessageTooLargeError } from '../../src/intake/refusals.js';
import { startIntake, type IntakeFixture } from '../helpers/intake-fixture.js';
import { RawSmtpClient } from '../helpers/raw-smtp.js';
import { readSpooled } from '../helpers/spool-reader.js';

const ADDITIONS = {
  prepend: 'Received: x\r\n',
  ifMissing: [
    { name: 'Message-ID', line: 'Message-ID: <id@relay.test>\r\n' },
    { name: 'Date', line: 'Date: now\r\n' },
  ],
};

/** Feeds `chunks` through a normalizer and returns what would be spooled. */
function normalize(chunks: string[], maxSize = 1_000_000): string {
  const normalizer = new MessageNormalizer(maxSize, ADDITIONS);
  const out = chunks.flatMap((chunk) => normalizer.push(Buffer.from(chunk, 'latin1')));
  out.push(...normalizer.end());
  return Buffer.concat(out).toString('latin1');
}

const HEAD = 'Message-ID: <a@b>\r\nDate: d\r\n\r\n';

for (const [name, chunks, body] of [
  ['CRLF passes unchanged', [HEAD + 'a\r\nb\r\n'], 'a\r\nb\r\n'],
  ['bare LF becomes CRLF', [HEAD + 'a\nb\n'], 'a\r\nb\r\n'],
  ['bare CR becomes CRLF', [HEAD + 'a\rb\r'], 'a\r\nb\r\n'],
  ['CR LF split across chunks stays one CRLF', [HEAD + 'a\r', '\nb\r\n'], 'a\r\nb\r\n'],
  ['CR at a chunk end then text is a bare CR', [HEAD + 'a\r', 'b\r\n'], 'a\r\nb\r\n'],
  ['CR at the very end', [HEAD + 'a\r'], 'a\r\n'],
  ['\\n.\\n smuggling payload', [HEAD + 'x\n.\nMAIL FROM:<e@v>\n'], 'x\r\n.\r\nMAIL FROM:<e@v>\r\n'],
  ['\\r.\\r smuggling payload', [HEAD + 'x\r.\rRCPT TO:<e@v>\r'], 'x\r\n.\r\nRCPT TO:<e@v>\r\n'],
  ['\\r\\n.\\n smuggling payload', [HEAD + 'x\r\n.\nDATA\r\n'], 'x\r\n.\r\nDATA\r\n'],
  ['LF CR is two line ends', [HEAD + 'a\n\rb'], 'a\r\n\r\nb'],
  ['8-bit bytes untouched', [HEAD + '\xe9\xff\x00\r\n'], '\xe9\xff\x00\r\n'],
] as const) {
  test(`normalizer: ${name}`, () => {
    assert.equal(normalize([...chunks]), 'Received: x\r\n' + HEAD + body);
  });
}

test('normalizer: Message-ID and Date are added at the end of the header block when missing, names case-insensitive', () => {
  assert.equal(normalize(['Subject: s\r\n\r\nbody\r\n']), 'Received: x\r\nSubject: s\r\nMessage-ID: <id@relay.test>\r\nDate: now\r\n\r\nbody\r\n');
  assert.equal(normalize(['DATE: d\r\nmessage-id: <m>\r\n\r\nb\r\n']), 'Received: x\r\nDATE: d\r\nmessage-id: <m>\r\n\r\nb\r\n');
});

test('normalizer: a folded line starting with a field name is not that field', () => {
  assert.equal(normalize(['Subject: s\r\n Date: folded\r\n\r\nb']), 'Received: x\r\nSubject: s\r\n Date: folded\r\nMessage-ID: <id@relay.test>\r\nDate: now\r\n\r\nb');
});

test('normalizer: header split across many small chunks is found', () => {
  const text = 'Subject: s\r\nMessage-ID: <m>\r\n\r\nbody\r\n';
  assert.equal(normalize(text.split('')), 'Received: x\r\nSubject: s\r\nMessage-ID: <m>\r\nDate: now\r\n\r\nbody\r\n');
});

test('normalizer: message without body or blank line, and one without header', () => {
  assert.equal(normalize(['Subject: only\r\n']), 'Received: x\r\nSubject: only\r\nMessage-ID: <id@relay.test>\r\nDate: now\r\n');
  assert.equal(normalize(['\r\nno header\r\n']), 'Received: x\r\nMessage-ID: <id@relay.test>\r\nDate: now\r\n\r\nno header\r\n');
});

test('normalizer: size counts the client bytes after normalisation and throws the moment the limit is passed', () => {
  const normalizer = new MessageNormalizer(10, ADDITIONS);
  normalizer.push(Buffer.from('12345\n'));
  assert.equal(normalizer.size, 7);
  assert.throws(() => normalizer.push(Buffer.from('1234')), MessageTooLargeError);
});

/** What `eightBit` says once every chunk has been pushed and the message ended. */
function eightBitAfter(chunks: Buffer[], prepend = 'Received: x\r\n'): boolean {
  const normalizer = new MessageNormalizer(1_000_000, { ...ADDITIONS, prepend });
  for (const chunk of chunks) normalizer.push(chunk);
  normalizer.end();
  return normalizer.eightBit;
}

for (const [name, chunks, prepend, expected] of [
  ['ASCII only', [Buffer.from(HEAD + 'plain\r\n')], undefined, false],
  ['one 8-bit byte in the body', [Buffer.from(HEAD + 'caf'), Buffer.from([0xe9, 0x0d, 0x0a])], undefined, true],
  ['8-bit in a header (raw UTF-8 Subject)', [Buffer.from('Subject: \u00e7a\r\n\r\nbody\r\n')], undefined, true],
  ['8-bit in the last of many chunks', [...Array(50).fill(Buffer.from('x'.repeat(1000) + '\r\n')), Buffer.from([0x80])], undefined, true],
  ['our own Received line names a UTF-8 recipient', [Buffer.from(HEAD + 'plain\r\n')], 'Received: for <j\u00fcrgen@b.example>\r\n', true],
] as const) {
  test(`normalizer 8BITMIME detection: ${name}`, () => {
    assert.equal(eightBitAfter([...chunks], prepend), expected);
  });
}

describe('mta-server records the body type it saw (RFC 6152), not only the one declared', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ trustedNetworks: parseNetworks('127.0.0.2', 'test') });
  });
  after(() => fixture.close());

  async function submit(mailFrom: string, body: Buffer): Promise<string> {
    const { client } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.0.2' });
    for (const line of ['EHLO app.example', mailFrom, 'RCPT TO:<alice@a.example>', 'DATA']) await client.command(line);
    client.write(Buffer.concat([body, Buffer.from('\r\n.\r\n')]));
    const reply = await client.read();
    await client.command('QUIT');
    const id = /queued as ([0-9a-z]{20})/.exec(reply.raw)?.[1];
    assert.ok(id, reply.raw);
    return id;
  }

  test('PHPMailer style: 8-bit body, no BODY= on MAIL → 8bitmime', async () => {
    const id = await submit('MAIL FROM:<news@shop.example>', Buffer.from('Subject: hi\r\n\r\nCaf\u00e9\r\n'));
    assert.equal((await readSpooled(fixture.spool, id)).envelope.bodyType, '8bitmime');
  });

  test('ASCII body → 7bit; declared BODY=8BITMIME is kept even for ASCII', async () => {
    const plain = await submit('MAIL FROM:<news@shop.example>', Buffer.from('Subject: hi\r\n\r\nplain\r\n'));
    assert.equal((await readSpooled(fixture.spool, plain)).envelope.bodyType, '7bit');
    const declared = await submit('MAIL FROM:<news@shop.example> BODY=8BITMIME', Buffer.from('Subject: hi\r\n\r\nplain\r\n'));
    assert.equal((await readSpooled(fixture.spool, declared)).envelope.bodyType, '8bitmime');
  });
});
