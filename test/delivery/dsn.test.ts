import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { buildDsn, dsnStatus, EXPIRED_STATUS, outgoingDsn, readHeaderBlock, wantsDsn } from '../../src/delivery/dsn.js';
import type { Envelope, RecipientRecord, RecordedReply } from '../../src/spool/envelope.js';
import { tempDir } from '../helpers/temp.js';
import { wholeFileSource } from '../../src/spool/message-source.js';
import { nodeSpoolFs } from '../../src/spool/spool-fs.js';

const ARRIVED = Date.UTC(2026, 10, 20, 8, 0, 0);
const NOW = new Date(Date.UTC(2026, 10, 25, 8, 0, 0));

const ORIGINAL_HEADERS = Buffer.from(
  [
    'Received: from client.example (client.example [192.0.2.9])',
    '\tby relay.example (mta-relay) with ESMTPSA id 0ABCDEF; Fri, 20 Nov 2026 08:00:00 +0000',
    'DKIM-Signature: v=1; a=rsa-sha256; d=sender.example; s=s1; h=from:to:subject:x-acelle-message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=',
    'X-Acelle-Message-Id: abc-123',
    'From: News <news@sender.example>',
    'To: bob@example.net, carol@example.org',
    'Subject: November news',
    '',
  ].join('\r\n'),
);

function recipient(address: string, state: RecipientRecord['state'], lastReply: RecordedReply | null, extra: Partial<RecipientRecord> = {}): RecipientRecord {
  return { address, state, attempts: 1, lastAttemptAt: null, lastReply, remoteMta: null, ...extra };
}

function envelope(recipients: RecipientRecord[]): Envelope {
  return {
    version: 1,
    id: '0ABCDEF',
    sender: 'news@sender.example',
    recipients,
    user: 'acelle',
    client: { address: '192.0.2.9', hostname: 'client.example', helo: 'client.example', tls: null },
    arrivedAt: ARRIVED,
    size: 1234,
    smtpUtf8: false,
    bodyType: '7bit',
    nextAttemptAt: ARRIVED,
    bounceOf: null,
  };
}

const bob = recipient('bob@example.net', 'bounced', { code: 550, enhanced: '5.1.1', text: '<bob@example.net>: Recipient address rejected: User unknown' }, {
  lastAttemptAt: ARRIVED + 1000,
  remoteMta: 'mx.example.net',
});
const carol = recipient('carol@example.org', 'expired', { code: 451, enhanced: '4.3.0', text: 'Temporary local problem, try again later' }, {
  attempts: 14,
  lastAttemptAt: NOW.getTime() - 60_000,
  remoteMta: 'mx2.example.org',
});

/** message/delivery-status → [per-message fields, ...per-recipient fields], folded lines unfolded (RFC 5322 §2.2.3). */
function statusGroups(text: string): Array<Record<string, string>> {
  return text
    .replace(/\r\n(?=[ \t])/g, '')
    .trim()
    .split(/\r\n\r\n/)
    .map((group) => Object.fromEntries(group.split('\r\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()])));
}

test('DSN: multipart/report with a readable part, the delivery status and the original headers byte for byte', async () => {
  const raw = await buildDsn({ reportingMta: 'relay.example', envelope: envelope([bob, carol]), failed: [bob, carol], originalHeaders: ORIGINAL_HEADERS, now: NOW, dsnId: 'dsn-1' });
  const parsed = await simpleParser(raw, { keepDeliveryStatus: true });

  const contentType = parsed.headers.get('content-type') as { value: string; params: Record<string, string> };
  assert.equal(contentType.value, 'multipart/report');
  assert.equal(contentType.params['report-type'], 'delivery-status');
  const partTypes = [...raw.toString('latin1').matchAll(/^Content-Type: ([^;\r\n]+)/gm)].map((match) => match[1]);
  assert.deepEqual(partTypes, ['multipart/report', 'text/plain', 'message/delivery-status', 'text/rfc822-headers']);

  assert.deepEqual(parsed.from?.value, [{ name: 'Mail Delivery System', address: 'MAILER-DAEMON@relay.example' }]);
  assert.equal(Array.isArray(parsed.to) ? undefined : parsed.to?.value[0]?.address, 'news@sender.example');
  assert.equal(parsed.subject, 'Undelivered Mail Returned to Sender');
  assert.equal(parsed.headers.get('auto-submitted'), 'auto-replied');
  assert.equal(parsed.messageId, '<dsn-1@relay.example>');
  assert.equal(parsed.date?.getTime(), NOW.getTime());

  for (const expected of ['<bob@example.net>', 'hard bounce', 'mx.example.net: 550 5.1.1 <bob@example.net>: Recipient address rejected', '<carol@example.org>', 'queue lifetime ran out (14 attempts)', 'mx2.example.org: 451 4.3.0 Temporary']) {
    assert.ok(parsed.text?.includes(expected), expected);
  }

  assert.deepEqual(
    parsed.attachments.map((part) => part.contentType),
    ['message/delivery-status', 'text/rfc822-headers'],
  );
  const [status, headers] = parsed.attachments;
  const [perMessage, ...perRecipient] = statusGroups(status!.content.toString('latin1'));
  assert.deepEqual(perMessage, { 'Reporting-MTA': 'dns; relay.example', 'X-Queue-ID': '0ABCDEF', 'Arrival-Date': 'Fri, 20 Nov 2026 08:00:00 +0000' });
  assert.deepEqual(perRecipient, [
    {
      'Final-Recipient': 'rfc822; bob@example.net',
      Action: 'failed',
      Status: '5.1.1',
      'Remote-MTA': 'dns; mx.example.net',
      'Diagnostic-Code': 'smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown',
      'Last-Attempt-Date': 'Fri, 20 Nov 2026 08:00:01 +0000',
    },
    {
      'Final-Recipient': 'rfc822; carol@example.org',
      Action: 'failed',
      Status: EXPIRED_STATUS,
      'Remote-MTA': 'dns; mx2.example.org',
      'Diagnostic-Code': 'smtp; 451 4.3.0 Temporary local problem, try again later',
      'Last-Attempt-Date': 'Wed, 25 Nov 2026 07:59:00 +0000',
    },
  ]);

  assert.ok(headers!.content.equals(ORIGINAL_HEADERS), 'rfc822-headers part decodes to the original bytes');
  // Bounce processors grep the raw DSN: the line must be there verbatim, not encoded.
  assert.ok(raw.includes('\r\nX-Acelle-Message-Id: abc-123\r\n'));
  assert.ok(raw.includes(ORIGINAL_HEADERS), 'the 7-bit header block is carried unencoded');
});

test('DSN: 8-bit headers and non-ASCII addresses and replies still give a 7-bit message', async () => {
  const original = Buffer.concat([ORIGINAL_HEADERS, Buffer.from('Subject: Grüße\r\n')]);
  const dorte = recipient('dörte@exämple.org', 'bounced', { code: 550, enhanced: '5.1.1', text: 'Benutzer unbekannt – ümlaut\x07' }, { remoteMta: 'mx.exämple.org' });
  const ann = recipient('ann+tag@example.org', 'bounced', { code: null, enhanced: '5.1.10', text: 'example.org does not accept mail (null MX)' });
  const raw = await buildDsn({ reportingMta: 'relay.example', envelope: envelope([dorte, ann]), failed: [dorte, ann], originalHeaders: original, now: NOW, dsnId: 'dsn-2' });
  assert.ok(raw.every((byte) => byte < 0x80), 'no 8-bit byte anywhere');

  const parsed = await simpleParser(raw, { keepDeliveryStatus: true });
  const [status, headers] = parsed.attachments;
  assert.ok(headers!.content.equals(original), 'quoted-printable decodes back to the same bytes');
  assert.ok(raw.includes('\r\nX-Acelle-Message-Id: abc-123\r\n'), 'short ASCII lines survive quoted-printable verbatim');
  const [, first, second] = statusGroups(status!.content.toString('latin1'));
  assert.equal(first!['Final-Recipient'], 'utf-8; d\\x{F6}rte@ex\\x{E4}mple.org');
  assert.equal(first!['Remote-MTA'], 'dns; mx.ex?mple.org');
  assert.equal(first!['Diagnostic-Code'], 'smtp; 550 5.1.1 Benutzer unbekannt ? ?mlaut?');
  assert.equal(second!['Final-Recipient'], 'rfc822; ann+tag@example.org');
  assert.equal(second!['Diagnostic-Code'], 'X-mta-relay; 5.1.10 example.org does not accept mail (null MX)');
  assert.equal(second!['Remote-MTA'], undefined);
  assert.equal(second!['Last-Attempt-Date'], undefined);
  assert.ok(parsed.text?.includes('<dörte@exämple.org>: delivery failed permanently'));
});

test('DSN status: the reply enhanced code when permanent, else 5.0.0 for bounces and 4.4.7 for expiry', () => {
  const reply = (code: number | null, enhanced: string | null): RecordedReply => ({ code, enhanced, text: 'x' });
  const cases: Array<[RecipientRecord['state'], RecordedReply | null, string]> = [
    ['bounced', reply(550, '5.1.1'), '5.1.1'],
    ['bounced', reply(554, null), '5.0.0'],
    ['bounced', reply(null, '5.1.2'), '5.1.2'],
    ['bounced', null, '5.0.0'],
    ['bounced', reply(550, '4.7.1'), '5.0.0'],
    ['expired', reply(451, '4.3.0'), '4.4.7'],
    ['expired', reply(null, '4.4.1'), '4.4.7'],
    ['expired', null, '4.4.7'],
    ['expired', reply(552, '5.5.3'), '5.5.3'],
  ];
  for (const [state, lastReply, expected] of cases) assert.equal(dsnStatus(recipient('a@b.example', state, lastReply)), expected, `${state} ${JSON.stringify(lastReply)}`);
});

test('DSN: never to the null sender', async () => {
  const bounce = { ...envelope([bob]), sender: '' };
  await assert.rejects(buildDsn({ reportingMta: 'relay.example', envelope: bounce, failed: [bob], originalHeaders: ORIGINAL_HEADERS, now: NOW, dsnId: 'd' }), /null sender/);
});

test('header block: everything before the first empty line, bounded reads', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.after(cleanup);
  // The block's last CRLF ends the first 16 KiB read and the blank line starts the second: "\r\n\r\n" straddles them.
  const longHeader = `X-Pad: ${'a'.repeat(16 * 1024 - 'A: 1\r\n'.length - 'X-Pad: '.length - 2)}\r\n`;
  const cases: Array<{ name: string; file: string; limit?: number; expected: string }> = [
    { name: 'headers then body', file: 'A: 1\r\nB: 2\r\n folded\r\n\r\nbody\r\n\r\nmore\r\n', expected: 'A: 1\r\nB: 2\r\n folded\r\n' },
    { name: 'no body at all', file: 'A: 1\r\nB: 2\r\n', expected: 'A: 1\r\nB: 2\r\n' },
    { name: 'no headers at all', file: '\r\nbody\r\n', expected: '' },
    { name: 'empty file', file: '', expected: '' },
    { name: 'blank line across the read boundary', file: `A: 1\r\n${longHeader}\r\nbody`, expected: `A: 1\r\n${longHeader}` },
    { name: 'cut at the limit, on a line end', file: 'A: 1\r\nB: 22222\r\n\r\nbody', limit: 12, expected: 'A: 1\r\n' },
    { name: 'a limit inside the first line gives nothing', file: 'Subject: long\r\n\r\n', limit: 5, expected: '' },
    { name: 'a limit right after the block', file: 'A: 1\r\n\r\nbody', limit: 8, expected: 'A: 1\r\n' },
  ];
  for (const [index, c] of cases.entries()) {
    const file = path.join(dir, `${index}.eml`);
    await writeFile(file, c.file);
    assert.equal((await readHeaderBlock(wholeFileSource(nodeSpoolFs, file), c.limit)).toString('latin1'), c.expected, c.name);
  }
  const big = path.join(dir, 'big.eml');
  await writeFile(big, Buffer.concat([Buffer.from('X-Acelle-Message-Id: abc-123\r\n\r\n'), Buffer.alloc(5 * 1024 * 1024, 'x')]));
  assert.equal((await readHeaderBlock(wholeFileSource(nodeSpoolFs, big))).toString(), 'X-Acelle-Message-Id: abc-123\r\n');
  await assert.rejects(readHeaderBlock(wholeFileSource(nodeSpoolFs, path.join(dir, 'missing.eml'))), { code: 'ENOENT' });
});

test('NOTIFY decides which DSNs a recipient gets (RFC 3461 §4.1); without NOTIFY, failures only', () => {
  const cases: Array<[RecipientRecord['notify'], { SUCCESS: boolean; FAILURE: boolean }]> = [
    [undefined, { SUCCESS: false, FAILURE: true }],
    ['NEVER', { SUCCESS: false, FAILURE: false }],
    [['FAILURE'], { SUCCESS: false, FAILURE: true }],
    [['SUCCESS'], { SUCCESS: true, FAILURE: false }],
    [['DELAY'], { SUCCESS: false, FAILURE: false }],
    [['SUCCESS', 'FAILURE', 'DELAY'], { SUCCESS: true, FAILURE: true }],
  ];
  for (const [notify, expected] of cases) {
    const r = recipient('a@b.example', 'bounced', null, notify === undefined ? {} : { notify });
    assert.deepEqual({ SUCCESS: wantsDsn(r, 'SUCCESS'), FAILURE: wantsDsn(r, 'FAILURE') }, expected, JSON.stringify(notify));
  }
});

test('DSN parameters passed on: only when the client gave any, per recipient', () => {
  assert.equal(outgoingDsn(envelope([bob])), undefined);
  const passed = outgoingDsn({ ...envelope([bob, { ...carol, notify: 'NEVER', orcpt: 'rfc822;c@example.org' }]), dsn: { ret: 'FULL', envid: 'E1' } });
  assert.deepEqual({ ...passed, recipients: [...passed!.recipients] }, { ret: 'FULL', envid: 'E1', recipients: [['carol@example.org', { notify: 'NEVER', orcpt: 'rfc822;c@example.org' }]] });
});

test('DSN fields: Original-Envelope-Id from ENVID, Original-Recipient from ORCPT, relayed recipients', async () => {
  const tracked = { ...bob, orcpt: 'rfc822;Bob.Original@example.net' };
  const utf8 = { ...carol, orcpt: 'utf-8;c\u00e4rol@example.org' };
  const relayed = recipient('dan@example.com', 'delivered', { code: 250, enhanced: '2.0.0', text: 'Ok: queued as X' }, { remoteMta: 'mx.example.com', notify: ['SUCCESS'], orcpt: 'rfc822;dan@example.com' });
  const env = { ...envelope([tracked, utf8, relayed]), dsn: { ret: 'HDRS' as const, envid: 'QQ-314\r\nX-Bad: y' } };
  const raw = await buildDsn({ reportingMta: 'relay.example', envelope: env, failed: [tracked, utf8], relayed: [relayed], originalHeaders: ORIGINAL_HEADERS, now: NOW, dsnId: 'dsn-3' });
  const parsed = await simpleParser(raw, { keepDeliveryStatus: true });
  const [perMessage, ...perRecipient] = statusGroups(parsed.attachments[0]!.content.toString('latin1'));
  assert.equal(perMessage!['Original-Envelope-Id'], 'QQ-314??X-Bad: y', 'one line, 7-bit: no header injection');
  assert.deepEqual(
    perRecipient.map((group) => [group['Original-Recipient'], group['Final-Recipient'], group.Action, group.Status]),
    [
      ['rfc822; Bob.Original@example.net', 'rfc822; bob@example.net', 'failed', '5.1.1'],
      ['utf-8; c\\x{E4}rol@example.org', 'rfc822; carol@example.org', 'failed', EXPIRED_STATUS],
      ['rfc822; dan@example.com', 'rfc822; dan@example.com', 'relayed', '2.0.0'],
    ],
  );
  assert.equal(parsed.subject, 'Undelivered Mail Returned to Sender');
  assert.ok(parsed.text?.includes('<dan@example.com>: relayed to mx.example.com, which does not report delivery status'));
  assert.ok(raw.includes(ORIGINAL_HEADERS), 'RET=HDRS or FULL: the header block, as before');

  const success = await buildDsn({ reportingMta: 'relay.example', envelope: env, failed: [], relayed: [relayed], originalHeaders: ORIGINAL_HEADERS, now: NOW, dsnId: 'dsn-4' });
  assert.equal((await simpleParser(success)).subject, 'Successful Mail Delivery Report');
});
