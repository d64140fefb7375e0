import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { startIntake, TEST_USER, type IntakeFixture } from '../helpers/intake-fixture.js';
import { loginOverStartTls, RawSmtpClient } from '../helpers/raw-smtp.js';
import { readSpooled } from '../helpers/spool-reader.js';

function queueIdOf(reply: { raw: string }): string {
  const match = /queued as ([0-9a-z]{20})/.exec(reply.raw);
  assert.ok(match, `no queue id in ${reply.raw}`);
  return match[1]!;
}

describe('MAIL and RCPT parameters (RFC 5321 §4.1.1.11, RFC 3461 DSN)', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ maxSize: 64 * 1024 });
  });
  after(() => fixture.close());

  test('EHLO advertises DSN', async () => {
    const { client } = await RawSmtpClient.connect(fixture.port);
    const ehlo = await client.command('EHLO app.example');
    assert.ok(ehlo.lines.includes('DSN'), ehlo.raw);
    client.close();
  });

  test('an unknown parameter on MAIL or RCPT gets 555 5.5.4 and the session goes on', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.match((await client.command('MAIL FROM:<app@shop.example> FOO=BAR')).raw, /^555 5\.5\.4 /);
    assert.match((await client.command('MAIL FROM:<app@shop.example> XYZZY')).raw, /^555 5\.5\.4 /);
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    assert.match((await client.command('RCPT TO:<x@a.example> FOO=BAR')).raw, /^555 5\.5\.4 /);
    assert.match((await client.command('RCPT TO:<x@a.example> RET=FULL')).raw, /^555 5\.5\.4 /, 'a MAIL parameter is unknown on RCPT');
    assert.equal((await client.command('RCPT TO:<x@a.example>')).code, 250);
    client.close();
  });

  test('bad DSN values get 501 5.5.4: NOTIFY=NEVER with others, unknown NOTIFY or RET words, an ENVID over 100 characters', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.match((await client.command('MAIL FROM:<app@shop.example> RET=BODY')).raw, /^501 5\.5\.4 /);
    assert.match((await client.command(`MAIL FROM:<app@shop.example> ENVID=${'e'.repeat(101)}`)).raw, /^501 5\.5\.4 /);
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    assert.match((await client.command('RCPT TO:<x@a.example> NOTIFY=NEVER,SUCCESS')).raw, /^501 5\.5\.4 /);
    assert.match((await client.command('RCPT TO:<x@a.example> NOTIFY=SOMETIMES')).raw, /^501 5\.5\.4 /);
    assert.match((await client.command('RCPT TO:<x@a.example> ORCPT=nosemicolon')).raw, /^501 5\.5\.4 /);
    client.close();
  });

  test('NOTIFY, ORCPT, RET and ENVID are accepted and stored in the envelope; SMTPUTF8 and BODY still accepted', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.equal((await client.command('MAIL FROM:<app@shop.example> RET=HDRS ENVID=campaign+2B42 BODY=8BITMIME SMTPUTF8 SIZE=100')).code, 250);
    assert.equal((await client.command('RCPT TO:<never@a.example> NOTIFY=NEVER')).code, 250);
    assert.equal((await client.command('RCPT TO:<both@a.example> NOTIFY=delay,SUCCESS ORCPT=rfc822;orig+40b.example')).code, 250);
    assert.equal((await client.command('RCPT TO:<plain@a.example>')).code, 250);
    await client.command('DATA');
    const reply = await client.command('Subject: dsn\r\n\r\nhi\r\n.');
    assert.equal(reply.code, 250, reply.raw);
    const { envelope } = await readSpooled(fixture.spool, queueIdOf(reply));
    assert.deepEqual(envelope.dsn, { ret: 'HDRS', envid: 'campaign+42' });
    assert.equal(envelope.smtpUtf8, true);
    const [never, both, plain] = envelope.recipients;
    assert.equal(never!.notify, 'NEVER');
    assert.deepEqual(both!.notify, ['SUCCESS', 'DELAY']);
    assert.equal(both!.orcpt, 'rfc822;orig@b.example');
    assert.equal(plain!.notify, undefined);
    assert.equal(plain!.orcpt, undefined);
    client.close();
  });

  test('without DSN parameters the envelope has no dsn field', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    await client.command('MAIL FROM:<app@shop.example>');
    await client.command('RCPT TO:<x@a.example>');
    await client.command('DATA');
    const reply = await client.command('Subject: no dsn\r\n\r\nhi\r\n.');
    const { envelope } = await readSpooled(fixture.spool, queueIdOf(reply));
    assert.equal(envelope.dsn, undefined);
    assert.equal(envelope.recipients[0]!.notify, undefined);
    client.close();
  });

  test('SIZE above --max-size is refused at MAIL with 552 5.3.4', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.match((await client.command(`MAIL FROM:<app@shop.example> SIZE=${64 * 1024 + 1}`)).raw, /^552 5\.3\.4 /);
    client.close();
  });

  test("nodemailer's dsn option (NOTIFY=NEVER, RET, ENVID) goes through and is stored", async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: fixture.port,
      requireTLS: true,
      auth: { user: TEST_USER.name, pass: TEST_USER.password },
      tls: { rejectUnauthorized: false },
    });
    const info = await transport.sendMail({
      from: 'news@shop.example',
      to: 'list@a.example',
      subject: 'newsletter',
      text: 'hi',
      dsn: { id: 'newsletter-7', return: 'headers', notify: 'never', recipient: 'news@shop.example' },
    });
    transport.close();
    const { envelope } = await readSpooled(fixture.spool, queueIdOf({ raw: info.response }));
    assert.deepEqual(envelope.dsn, { ret: 'HDRS', envid: 'newsletter-7' });
    assert.equal(envelope.recipients[0]!.notify, 'NEVER');
  });
});

describe('UTF-8 addresses need SMTPUTF8 (RFC 6531 §3.7.4.1)', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake();
  });
  after(() => fixture.close());

  test('a UTF-8 sender without SMTPUTF8 gets 553 5.6.7 and the session goes on', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    const reply = await client.command('MAIL FROM:<j\u00fcrgen@shop.example>');
    assert.match(reply.raw, /^553 5\.6\.7 .*requires SMTPUTF8/);
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    client.close();
    const rejected = fixture.logs.events('rejected').find((line) => line.reason === 'ENONASCII' && line.stage === 'mail');
    assert.ok(rejected, 'logged as rejected with reason ENONASCII');
  });

  test('a UTF-8 recipient after a MAIL without SMTPUTF8 gets 553 5.6.7; ASCII recipients of that MAIL still pass', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    assert.match((await client.command('RCPT TO:<zo\u00eb@a.example>')).raw, /^553 5\.6\.7 .*requires SMTPUTF8/);
    assert.match((await client.command('RCPT TO:<x@\u00e9t\u00e9.example>')).raw, /^553 5\.6\.7 /, 'a UTF-8 domain too');
    assert.equal((await client.command('RCPT TO:<x@a.example>')).code, 250);
    client.close();
  });

  test('SMTPUTF8 on a refused MAIL does not carry over to the next MAIL', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.match((await client.command('MAIL FROM:<app@shop.example> SMTPUTF8 FOO=BAR')).raw, /^555 /);
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    assert.match((await client.command('RCPT TO:<zo\u00eb@a.example>')).raw, /^553 5\.6\.7 /);
    client.close();
  });

  test('with SMTPUTF8 on MAIL, UTF-8 sender and recipients are accepted and spooled as given', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.equal((await client.command('MAIL FROM:<j\u00fcrgen@shop.example> SMTPUTF8')).code, 250);
    assert.equal((await client.command('RCPT TO:<zo\u00eb@\u00e9t\u00e9.example>')).code, 250);
    await client.command('DATA');
    const reply = await client.command('Subject: utf8\r\n\r\nhi\r\n.');
    assert.equal(reply.code, 250, reply.raw);
    client.close();
    const { envelope } = await readSpooled(fixture.spool, queueIdOf(reply));
    assert.equal(envelope.smtpUtf8, true);
    assert.equal(envelope.recipients[0]!.address, 'zo\u00eb@\u00e9t\u00e9.example');
  });
});

describe('Received header against a hostile EHLO name', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake();
  });
  after(() => fixture.close());

  async function receivedFor(helo: string): Promise<string> {
    const { client } = await RawSmtpClient.connect(fixture.port);
    assert.equal((await client.command(`EHLO ${helo}`)).code, 250);
    await client.startTls();
    await client.command(`EHLO ${helo}`);
    assert.equal((await client.command(`AUTH PLAIN ${Buffer.from(`\0${TEST_USER.name}\0${TEST_USER.password}`).toString('base64')}`)).code, 235);
    await client.command('MAIL FROM:<app@shop.example>');
    await client.command('RCPT TO:<x@a.example>');
    await client.command('DATA');
    const reply = await client.command('Subject: trace\r\n\r\nhi\r\n.');
    client.close();
    const { message } = await readSpooled(fixture.spool, queueIdOf(reply));
    const text = message.toString('latin1');
    return text.slice(0, text.indexOf('\r\n'));
  }

  test('`evil)(by.mx.google.com;x` cannot close the comment or forge a by clause: unsafe characters become ?', async () => {
    const line = await receivedFor('evil)(by.mx.google.com;x');
    assert.equal(line, 'Received: from evil??by.mx.google.com?x (unknown [127.0.0.1])');
  });

  test('a 300-character EHLO name is cut to 255 characters', async () => {
    const line = await receivedFor('a'.repeat(300));
    assert.equal(line, `Received: from ${'a'.repeat(255)} (unknown [127.0.0.1])`);
  });
});
