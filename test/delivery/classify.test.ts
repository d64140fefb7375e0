import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyDeliveryError, classifySmtpReply, parseEnhancedCode, REPLY_EXCERPT, REPLY_RULES, replyExcerpt, type Verdict } from '../../src/delivery/classify.js';
import { DeliveryFailure, deliveryFailureFrom } from '../../src/delivery/delivery-failure.js';
import { SmtpDeadlineError } from '../../src/delivery/smtp-deadlines.js';
import { RelayError } from '../../src/shared/errors.js';
import type { RecordedReply } from '../../src/spool/envelope.js';

test('smtp replies: basic code decides, with the documented exceptions', () => {
  const cases: Array<[number, string | null, Verdict]> = [
    [250, '2.0.0', 'delivered'],
    [250, null, 'delivered'],
    [251, null, 'delivered'],
    [421, '4.7.0', 'transient'],
    [450, '4.2.1', 'transient'],
    [451, null, 'transient'],
    [452, '4.5.3', 'transient'],
    [550, '5.1.1', 'permanent'],
    [550, null, 'permanent'],
    [554, '5.7.1', 'permanent'],
    [556, '5.1.10', 'permanent'],
    [552, '5.3.4', 'permanent'],
    [552, null, 'permanent'],
    // RFC 5321 §4.5.3.1.10: 552 "too many recipients" is temporary.
    [552, '5.5.3', 'transient'],
    [552, '4.5.3', 'transient'],
    [503, '5.5.1', 'transient'],
    [503, null, 'transient'],
    // Enhanced class contradicts the basic code: the basic code wins (Postfix).
    [550, '4.7.1', 'permanent'],
    [450, '5.1.1', 'transient'],
    // Not a final reply at all.
    [354, null, 'transient'],
    [334, '5.0.0', 'transient'],
    [199, null, 'transient'],
    [600, '5.0.0', 'transient'],
    [0, null, 'transient'],
  ];
  for (const [code, enhanced, verdict] of cases) assert.equal(classifySmtpReply(code, enhanced), verdict, `${code} ${enhanced}`);
});

test('every reply rule says why', () => {
  for (const rule of REPLY_RULES) assert.ok(rule.why.length > 20, rule.why);
});

test('enhanced codes are read from the start of reply text', () => {
  const cases: Array<[string, string | null]> = [
    ['5.1.1 User unknown', '5.1.1'],
    ['550 5.1.1 User unknown', '5.1.1'],
    ['550-5.1.1 The email account that you tried to reach does not exist', '5.1.1'],
    ['  4.7.0 try later', '4.7.0'],
    ['5.1.10 null MX', '5.1.10'],
    ['2.0.0', '2.0.0'],
    ['4.123.456 odd but valid', '4.123.456'],
    ['550 User unknown 5.1.1', null],
    ['User unknown', null],
    ['3.1.1 not a class', null],
    ['5.1.1x', null],
    ['5.1 short', null],
    ['5.1.1234 too long', null],
    ['', null],
  ];
  for (const [text, expected] of cases) assert.equal(parseEnhancedCode(text), expected, text);
});

test('delivery errors: SMTP replies, network failures, our DNS verdicts, and the unknown', () => {
  const gmail =
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1-gsmtp";
  const cases: Array<{ name: string; error: unknown; verdict: Verdict; reply: RecordedReply }> = [
    {
      name: 'rejected recipient',
      error: { code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown', message: 'x' },
      verdict: 'permanent',
      reply: { code: 550, enhanced: '5.1.1', text: '<bob@example.net>: Recipient address rejected: User unknown' },
    },
    {
      name: 'multi-line reply joins its lines without the codes',
      error: { code: 'EENVELOPE', responseCode: 550, response: gmail },
      verdict: 'permanent',
      reply: {
        code: 550,
        enhanced: '5.1.1',
        text: "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or https://support.google.com/mail/?p=NoSuchUser a1-gsmtp",
      },
    },
    {
      name: 'greylisting',
      error: { code: 'EENVELOPE', responseCode: 451, response: '451 4.7.1 Greylisted, try again later' },
      verdict: 'transient',
      reply: { code: 451, enhanced: '4.7.1', text: 'Greylisted, try again later' },
    },
    {
      name: 'no enhanced code',
      error: { code: 'EMESSAGE', responseCode: 554, response: '554 Transaction failed' },
      verdict: 'permanent',
      reply: { code: 554, enhanced: null, text: 'Transaction failed' },
    },
    {
      name: 'out-of-sync enhanced code is replaced like Postfix, the remote code kept in the text',
      error: { code: 'EENVELOPE', responseCode: 550, response: '550 4.7.1 Client host blocked' },
      verdict: 'permanent',
      reply: { code: 550, enhanced: '5.0.0', text: '4.7.1 Client host blocked' },
    },
    {
      name: '552 too many recipients',
      error: { code: 'EENVELOPE', responseCode: 552, response: '552 5.5.3 Too many recipients' },
      verdict: 'transient',
      reply: { code: 552, enhanced: '5.5.3', text: 'Too many recipients' },
    },
    {
      name: '421 closing',
      error: { code: 'ECONNECTION', responseCode: 421, response: '421 4.3.2 Service shutting down', permanent: false },
      verdict: 'transient',
      reply: { code: 421, enhanced: '4.3.2', text: 'Service shutting down' },
    },
    {
      name: 'reply with only a code falls back to the message',
      error: { code: 'EPROTOCOL', responseCode: 550, response: '550', message: 'Invalid response: 550' },
      verdict: 'permanent',
      reply: { code: 550, enhanced: null, text: 'Invalid response: 550' },
    },
    {
      name: 'connection refused (nodemailer keeps the system code in originalCode)',
      error: { code: 'ESOCKET', originalCode: 'ECONNREFUSED', message: 'connect ECONNREFUSED 192.0.2.1:25' },
      verdict: 'transient',
      reply: { code: null, enhanced: '4.4.1', text: 'connect ECONNREFUSED 192.0.2.1:25' },
    },
    {
      name: 'connect timeout: no answer from host',
      error: { code: 'ETIMEDOUT', timeoutType: 'CONNECT_TIMEOUT', message: 'Connection timeout' },
      verdict: 'transient',
      reply: { code: null, enhanced: '4.4.1', text: 'Connection timeout' },
    },
    {
      name: 'greeting timeout: bad connection',
      error: { code: 'ETIMEDOUT', timeoutType: 'GREETING_TIMEOUT', message: 'Greeting never received' },
      verdict: 'transient',
      reply: { code: null, enhanced: '4.4.2', text: 'Greeting never received' },
    },
    { name: 'connection closed', error: { code: 'ECONNECTION', message: 'Connection closed\nunexpectedly' }, verdict: 'transient', reply: { code: null, enhanced: '4.4.2', text: 'Connection closed unexpectedly' } },
    { name: 'TLS failure', error: { code: 'ETLS', message: 'Error initiating TLS' }, verdict: 'transient', reply: { code: null, enhanced: '4.4.2', text: 'Error initiating TLS' } },
    { name: 'reset', error: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), verdict: 'transient', reply: { code: null, enhanced: '4.4.2', text: 'read ECONNRESET' } },
    { name: 'unreachable', error: { code: 'EHOSTUNREACH', message: 'no route' }, verdict: 'transient', reply: { code: null, enhanced: '4.4.1', text: 'no route' } },
    { name: 'CNAME loop from our DNS layer', error: { code: 'ECNAMELOOP', message: 'CNAME loop: a.test → b.test → a.test' }, verdict: 'transient', reply: { code: null, enhanced: '4.4.3', text: 'CNAME loop: a.test → b.test → a.test' } },
    { name: 'MX address we do not connect to', error: { code: 'EREFUSEDADDRESS', message: 'MX mx.example resolves only to loopback address 127.0.0.1; not connecting' }, verdict: 'transient', reply: { code: null, enhanced: '4.4.4', text: 'MX mx.example resolves only to loopback address 127.0.0.1; not connecting' } },
    { name: 'DNS servfail', error: { code: 'ESERVFAIL', message: 'queryMx ESERVFAIL example.net' }, verdict: 'transient', reply: { code: null, enhanced: '4.4.3', text: 'queryMx ESERVFAIL example.net' } },
    {
      name: 'null MX from our DNS layer',
      error: { code: 'ENULLMX', permanent: true, enhanced: '5.1.10', message: 'example.net does not accept mail (null MX)' },
      verdict: 'permanent',
      reply: { code: null, enhanced: '5.1.10', text: 'example.net does not accept mail (null MX)' },
    },
    {
      name: 'NXDOMAIN from our DNS layer',
      error: { code: 'ENXDOMAIN', permanent: true, enhanced: '5.1.2', message: 'no such domain' },
      verdict: 'permanent',
      reply: { code: null, enhanced: '5.1.2', text: 'no such domain' },
    },
    {
      name: 'permanent without a 5.x.x code is not trusted',
      error: { code: 'EDNS', permanent: true, enhanced: '4.4.3', message: 'odd' },
      verdict: 'transient',
      reply: { code: null, enhanced: '4.4.3', text: 'odd' },
    },
    { name: 'our own bug', error: new TypeError("Cannot read properties of undefined (reading 'x')"), verdict: 'transient', reply: { code: null, enhanced: '4.0.0', text: "Cannot read properties of undefined (reading 'x')" } },
    { name: 'unknown nodemailer code', error: { code: 'EENVELOPE', message: 'No recipients defined' }, verdict: 'transient', reply: { code: null, enhanced: '4.0.0', text: 'No recipients defined' } },
    { name: 'a thrown string', error: 'boom', verdict: 'transient', reply: { code: null, enhanced: '4.0.0', text: 'boom' } },
    { name: 'null', error: null, verdict: 'transient', reply: { code: null, enhanced: '4.0.0', text: 'unknown error' } },
  ];
  for (const c of cases) assert.deepEqual(classifyDeliveryError(c.error), { verdict: c.verdict, reply: c.reply }, c.name);
});

test('reply excerpts: the first lines, each and all bounded in bytes, marked where cut', () => {
  const limits = { maxLines: 3, maxLineBytes: 12, maxBytes: 30, marker: '…' };
  const cases: Array<[string, string, string]> = [
    ['short reply kept as is', '451 4.7.1 a', '451 4.7.1 a'],
    ['lines kept', '451-a\n451 b', '451-a\n451 b'],
    ['a long line is cut', '451 0123456789abc', '451 01234567…'],
    ['too many lines', 'a\nb\nc\nd', 'a\nb\nc…'],
    ['within every bound', '012345678\n012345678\n012345678', '012345678\n012345678\n012345678'],
    ['total bound, line breaks counted', 'abcdefghijkl\nabcdefghijkl\nabcdefghijkl', 'abcdefghijkl\nabcdefghijkl\nabcd…'],
    ['a cut never splits a character', '451 xééééé', '451 xééé…'],
    ['empty', '', ''],
  ];
  for (const [name, raw, expected] of cases) assert.equal(replyExcerpt(raw, limits), expected, name);
  const huge = Array.from({ length: 10_000 }, (_, i) => `451-4.7.1 line ${i} ${'x'.repeat(600)}`).join('\r\n');
  const excerpt = replyExcerpt(huge);
  assert.ok(Buffer.byteLength(excerpt) <= REPLY_EXCERPT.maxBytes + Buffer.byteLength(REPLY_EXCERPT.marker), `${Buffer.byteLength(excerpt)} bytes`);
  assert.ok(excerpt.endsWith(REPLY_EXCERPT.marker), 'marked as cut');
  assert.equal(excerpt.split('\n').length, 4, 'four lines of 512 bytes fill 2 KiB');
  // The recorded reply of a huge one is the excerpt, joined.
  const recorded = classifyDeliveryError({ code: 'EENVELOPE', responseCode: 451, response: huge, message: `Can't send mail: ${huge}` });
  assert.equal(recorded.reply.code, 451);
  assert.ok(Buffer.byteLength(recorded.reply.text) <= REPLY_EXCERPT.maxBytes + 4, `${recorded.reply.text.length}`);
});

test('DeliveryFailure is built from each shape of error nodemailer, node and our layers raise', () => {
  const where = { mx: 'mx.example.net', ip: '192.0.2.1', stage: 'rcpt' as const, greeted: true };
  const refusal = Object.assign(new Error("Can't send mail - all recipients were rejected: 550 5.1.1 <bob@example.net>: no such user"), {
    code: 'EENVELOPE',
    response: '550 5.1.1 <bob@example.net>: no such user',
    responseCode: 550,
    command: 'RCPT TO',
    recipient: 'bob@example.net',
  });
  const cases: Array<{ name: string; error: unknown; verdict: 'transient' | 'permanent'; reply: RecordedReply }> = [
    { name: 'RCPT refusal', error: refusal, verdict: 'permanent', reply: { code: 550, enhanced: '5.1.1', text: '<bob@example.net>: no such user' } },
    {
      name: 'MAIL refusal, transient',
      error: Object.assign(new Error('Mail command failed: 451 4.3.0 try later'), { code: 'EENVELOPE', response: '451 4.3.0 try later', responseCode: 451, command: 'MAIL FROM' }),
      verdict: 'transient',
      reply: { code: 451, enhanced: '4.3.0', text: 'try later' },
    },
    {
      name: 'DATA refusal',
      error: Object.assign(new Error('Message failed: 554 5.7.1 spam'), { code: 'EMESSAGE', response: '554 5.7.1 spam', responseCode: 554, command: 'DATA' }),
      verdict: 'permanent',
      reply: { code: 554, enhanced: '5.7.1', text: 'spam' },
    },
    {
      name: 'connection refused, system code kept as originalCode',
      error: Object.assign(new Error('connect ECONNREFUSED 192.0.2.1:25'), { code: 'ESOCKET', originalCode: 'ECONNREFUSED', command: 'CONN' }),
      verdict: 'transient',
      reply: { code: null, enhanced: '4.4.1', text: 'connect ECONNREFUSED 192.0.2.1:25' },
    },
    {
      name: 'connection closed mid-session',
      error: Object.assign(new Error('Connection closed unexpectedly'), { code: 'ECONNECTION', command: 'CONN' }),
      verdict: 'transient',
      reply: { code: null, enhanced: '4.4.2', text: 'Connection closed unexpectedly' },
    },
    {
      name: 'reply too large',
      error: Object.assign(new Error('Server response exceeds maximum allowed size'), { code: 'EPROTOCOL', command: 'CONN' }),
      verdict: 'transient',
      reply: { code: null, enhanced: '4.4.2', text: 'Server response exceeds maximum allowed size' },
    },
    { name: 'our reply deadline', error: new SmtpDeadlineError('ehlo', 300_000), verdict: 'transient', reply: { code: null, enhanced: '4.4.2', text: 'no complete reply to ehlo within 300000 ms' } },
    { name: 'a 2yz on an error path is never a delivery', error: { code: 'EPROTOCOL', responseCode: 250, response: '250 ok' }, verdict: 'transient', reply: { code: 250, enhanced: null, text: 'ok' } },
    { name: 'unknown', error: new TypeError('oops'), verdict: 'transient', reply: { code: null, enhanced: '4.0.0', text: 'oops' } },
  ];
  for (const c of cases) {
    const failure = deliveryFailureFrom(c.error, where);
    assert.ok(failure instanceof DeliveryFailure && failure instanceof RelayError, c.name);
    assert.equal(failure.code, 'EDELIVERY');
    assert.deepEqual(failure.outcome(), { verdict: c.verdict, reply: c.reply }, c.name);
    assert.equal(failure.temporary, c.verdict === 'transient', c.name);
    assert.equal(failure.cause, c.error, c.name);
    assert.deepEqual([failure.mx, failure.ip, failure.stage, failure.greeted], ['mx.example.net', '192.0.2.1', 'rcpt', true], c.name);
    assert.deepEqual(failure.fields(), { verdict: c.verdict, smtpCode: c.reply.code, enhanced: c.reply.enhanced, reply: c.reply.text, mx: 'mx.example.net', ip: '192.0.2.1', stage: 'rcpt' }, c.name);
  }
  const same = deliveryFailureFrom(refusal, where);
  assert.equal(deliveryFailureFrom(same, { ...where, stage: 'data' }), same, 'an existing DeliveryFailure passes through');
  assert.equal(same.message, '550 5.1.1 <bob@example.net>: no such user (mx.example.net [192.0.2.1])');
});
