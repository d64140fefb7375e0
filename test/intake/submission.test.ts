import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { parseNetworks } from '../../src/config/units.js';
import { startIntake, TEST_USER, type IntakeFixture } from '../helpers/intake-fixture.js';
import { loginOverStartTls, RawSmtpClient } from '../helpers/raw-smtp.js';
import { readSpooled } from '../helpers/spool-reader.js';

const spooled = (fixture: IntakeFixture, queueId: string) => readSpooled(fixture.spool, queueId);

function queueIdOf(reply: { raw: string }): string {
  const match = /queued as ([0-9a-z]{20})/.exec(reply.raw);
  assert.ok(match, `no queue id in ${reply.raw}`);
  return match[1]!;
}

async function spoolFiles(fixture: IntakeFixture): Promise<string[]> {
  const names: string[] = [];
  for (const dir of ['tmp', 'data', 'incoming']) names.push(...(await readdir(path.join(fixture.spool, dir))).map((name) => `${dir}/${name}`));
  return names.sort();
}

describe('mta-server submission', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ maxSize: 64 * 1024, maxRecipients: 3, trustedNetworks: parseNetworks('127.0.0.2', 'test') });
  });
  after(() => fixture.close());

  test('nodemailer sends over STARTTLS with AUTH and the message is spooled durably as sent', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: fixture.port,
      secure: false,
      requireTLS: true,
      auth: { user: TEST_USER.name, pass: TEST_USER.password },
      tls: { rejectUnauthorized: false },
    });
    const info = await transport.sendMail({
      from: 'news@shop.example',
      to: ['alice@a.example', 'bob@b.example'],
      subject: 'Hello',
      text: 'Line one\nLine two\n.\nafter a lone dot\n',
      headers: { 'X-Acelle-Message-Id': 'abc-123' },
    });
    transport.close();
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9a-z]{20}$/);
    const { envelope, message } = await spooled(fixture, queueIdOf({ raw: info.response }));
    assert.equal(envelope.sender, 'news@shop.example');
    assert.deepEqual(envelope.recipients.map((r) => [r.address, r.state]), [['alice@a.example', 'pending'], ['bob@b.example', 'pending']]);
    assert.equal(envelope.user, TEST_USER.name);
    assert.equal(envelope.client.address, '127.0.0.1');
    assert.match(envelope.client.tls!.version, /^TLSv1\.[23]$/);
    assert.equal(envelope.size, message.length);
    const text = message.toString('utf8');
    assert.match(text, /^Received: from \S+ \(unknown \[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby relay\.test \(mta-relay\) with ESMTPSA id [0-9a-z]{20}; /);
    assert.match(text, /X-Acelle-Message-Id: abc-123\r\n/i);
    assert.match(text, /\r\n\.\r\nafter a lone dot\r\n/, 'the lone dot line is content, stored unstuffed');
    assert.doesNotMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'only CRLF line endings in the spool');
  });

  test('spool files are 0600 in 0700 directories and nothing is left in tmp/', async () => {
    for (const dir of ['', 'data', 'incoming', 'tmp']) assert.equal((await stat(path.join(fixture.spool, dir))).mode & 0o777, 0o700, `${dir || 'spool root'} mode`);
    for (const name of await spoolFiles(fixture)) {
      assert.ok(!name.startsWith('tmp/'), `leftover ${name}`);
      assert.equal((await stat(path.join(fixture.spool, name))).mode & 0o777, 0o600, `${name} mode`);
    }
  });

  test('a message missing Message-ID and Date gets both; the body stays byte-exact after CRLF normalisation', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    await client.command('MAIL FROM:<app@shop.example>');
    await client.command('RCPT TO:<one@a.example>');
    assert.equal((await client.command('DATA')).code, 354);
    const body = 'Body line 1\nline 2 with bare LF\r\nline 3 \u00e9t\u00e9\r\n..leading dot\r\n';
    client.write(Buffer.from(`From: app@shop.example\r\nSubject: no ids\r\n\r\n${body}.\r\n`, 'utf8'));
    const reply = await client.read();
    assert.equal(reply.code, 250);
    const { message } = await spooled(fixture, queueIdOf(reply));
    const [header, ...rest] = message.toString('utf8').split('\r\n\r\n');
    assert.match(header!, /^Received: .*\r\n\tby relay\.test \(mta-relay\) with ESMTPSA id [0-9a-z]{20}\r\n\tfor <one@a\.example>; \w{3}, \d{2} \w{3} \d{4} [\d:]{8} \+0000\r\n/s);
    assert.match(header!, /\r\nFrom: app@shop\.example\r\nSubject: no ids\r\nMessage-ID: <[0-9a-z]{20}@relay\.test>\r\nDate: \w{3}, \d{2} \w{3} \d{4} [\d:]{8} \+0000$/);
    assert.equal(rest.join('\r\n\r\n'), 'Body line 1\r\nline 2 with bare LF\r\nline 3 \u00e9t\u00e9\r\n.leading dot\r\n');
    await client.command('QUIT');
  });

  test('a message with its own Message-ID and Date keeps them and gains nothing but Received', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    await client.command('MAIL FROM:<app@shop.example>');
    await client.command('RCPT TO:<one@a.example>');
    await client.command('DATA');
    const original = 'Message-ID: <own@shop.example>\r\nDATE: Tue, 24 Nov 2026 08:00:00 +0100\r\nSubject: s\r\n\r\nbody\r\n';
    const reply = await client.command(`${original}.`);
    const { message } = await spooled(fixture, queueIdOf(reply));
    assert.equal(message.toString('utf8').replace(/^Received: [^]*?\+0000\r\n/, ''), original);
  });

  test('AUTH is neither offered nor accepted before STARTTLS', async () => {
    const { client } = await RawSmtpClient.connect(fixture.port);
    const ehlo = await client.command('EHLO test.example');
    assert.ok(ehlo.lines.includes('STARTTLS'));
    assert.ok(!ehlo.lines.some((line) => line.startsWith('AUTH')), ehlo.raw);
    const auth = await client.command(`AUTH PLAIN ${Buffer.from(`\0${TEST_USER.name}\0${TEST_USER.password}`).toString('base64')}`);
    assert.equal(auth.code, 500, auth.raw);
    await client.startTls();
    const secured = await client.command('EHLO test.example');
    assert.ok(secured.lines.includes('AUTH PLAIN LOGIN'), secured.raw);
    assert.ok(secured.lines.includes('SIZE 65536'), secured.raw);
    client.close();
  });

  test('without AUTH a client outside the trusted networks gets 530 5.7.0 at MAIL and RCPT', async () => {
    const { client } = await RawSmtpClient.connect(fixture.port);
    await client.command('EHLO test.example');
    assert.match((await client.command('MAIL FROM:<a@shop.example>')).raw, /^530 5\.7\.0 /);
    assert.match((await client.command('RCPT TO:<b@a.example>')).raw, /^5\d\d /);
    await client.startTls();
    await client.command('EHLO test.example');
    assert.match((await client.command('MAIL FROM:<a@shop.example>')).raw, /^530 5\.7\.0 Authentication required/, 'TLS alone is not enough');
    client.close();
  });

  test('a trusted network sends without AUTH or TLS', async () => {
    const { client } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.0.2' });
    await client.command('EHLO trusted.example');
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    assert.equal((await client.command('RCPT TO:<x@a.example>')).code, 250);
    await client.command('DATA');
    const reply = await client.command('Subject: trusted\r\n\r\nhi\r\n.');
    assert.equal(reply.code, 250, reply.raw);
    const { envelope, message } = await spooled(fixture, queueIdOf(reply));
    assert.equal(envelope.user, null);
    assert.equal(envelope.client.tls, null);
    assert.match(message.toString(), /with ESMTP id/);
    client.close();
  });

  test('sessions ending DATA together share batch files (group commit), each message whole and in its own record', async () => {
    const sessions = await Promise.all(
      Array.from({ length: 10 }, async (_, index) => {
        const { client } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.0.2' });
        await client.command('EHLO group.example');
        await client.command('MAIL FROM:<app@shop.example>');
        await client.command(`RCPT TO:<g${index}@a.example>`);
        await client.command('DATA');
        client.write(`Subject: group ${index}\r\n\r\nbody of group ${index}\r\n`);
        return client;
      }),
    );
    const before = new Set(await readdir(path.join(fixture.spool, 'incoming')));
    // Every final dot in the same tick: they reach the server while the first commit runs.
    const replies = await Promise.all(sessions.map((client) => client.command('.')));
    for (const client of sessions) client.close();
    const ids = replies.map((reply) => queueIdOf(reply));
    const files = (await readdir(path.join(fixture.spool, 'incoming'))).filter((name) => !before.has(name));
    assert.ok(files.length < ids.length, `${files.length} batch files for ${ids.length} messages`);
    for (const [index, id] of ids.entries()) {
      const { envelope, message, file } = await spooled(fixture, id);
      assert.deepEqual(envelope.recipients.map((recipient) => recipient.address), [`g${index}@a.example`]);
      assert.match(message.toString(), new RegExp(`\r\n\r\nbody of group ${index}\r\n$`));
      assert.ok(files.includes(path.basename(file)), `${id} is in one of the new batch files`);
    }
  });

  test('a wrong password gets 535 5.7.8, and the password never reaches the log', async () => {
    const { client } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.0.3' });
    await client.command('EHLO test.example');
    await client.startTls();
    await client.command('EHLO test.example');
    const reply = await client.command(`AUTH PLAIN ${Buffer.from(`\0${TEST_USER.name}\0not-the-password`).toString('base64')}`);
    assert.match(reply.raw, /^535 5\.7\.8 /);
    const login = await client.command(`AUTH PLAIN ${Buffer.from(`\0${TEST_USER.name}\0${TEST_USER.password}`).toString('base64')}`);
    assert.equal(login.code, 235, 'the session goes on after a failure');
    client.close();
    const fail = fixture.logs.events('auth').find((line) => line.result === 'fail' && line.client === '127.0.0.3');
    assert.ok(fail, 'auth failure logged');
    assert.equal(fail.user, TEST_USER.name);
    assert.ok(!fixture.logs.text().includes('not-the-password'));
    assert.ok(!fixture.logs.text().includes(TEST_USER.password));
  });

  test('five failed AUTH from one address within ten minutes block it with 421 4.7.0, other addresses unaffected', async () => {
    const localAddress = '127.0.0.4';
    const { client } = await RawSmtpClient.connect(fixture.port, { localAddress });
    await client.command('EHLO test.example');
    await client.startTls();
    await client.command('EHLO test.example');
    const bad = `AUTH PLAIN ${Buffer.from(`\0${TEST_USER.name}\0guess`).toString('base64')}`;
    for (let attempt = 1; attempt <= 4; attempt++) assert.equal((await client.command(bad)).code, 535, `attempt ${attempt}`);
    assert.match((await client.command(bad)).raw, /^421 4\.7\.0 /);
    await client.closed();
    const again = await RawSmtpClient.connect(fixture.port, { localAddress });
    assert.match(again.greeting.raw, /^421 4\.7\.0 /, 'still blocked on a new connection');
    await again.client.closed();
    assert.ok(fixture.logs.events('client-blocked').some((line) => line.client === localAddress));
    const other = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password, '127.0.0.5');
    other.close();
  });

  test('oversize message: 552 5.3.4, nothing spooled, and the session goes on', async () => {
    const before = await spoolFiles(fixture);
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    await client.command('MAIL FROM:<app@shop.example>');
    await client.command('RCPT TO:<one@a.example>');
    await client.command('DATA');
    const line = 'x'.repeat(998) + '\r\n';
    client.write(`Subject: big\r\n\r\n${line.repeat(100)}.\r\n`);
    assert.match((await client.read()).raw, /^552 5\.3\.4 /);
    assert.deepEqual(await spoolFiles(fixture), before);
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250, 'session usable after 552');
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 503, 'nested MAIL refused: the transaction is open');
    client.close();
  });

  test('too many recipients get 452 4.5.3, the accepted ones still go through', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    await client.command('MAIL FROM:<app@shop.example>');
    for (const n of [1, 2, 3]) assert.equal((await client.command(`RCPT TO:<r${n}@a.example>`)).code, 250);
    assert.match((await client.command('RCPT TO:<r4@a.example>')).raw, /^452 4\.5\.3 /);
    await client.command('DATA');
    const reply = await client.command('Subject: three\r\n\r\nhi\r\n.');
    assert.equal(reply.code, 250);
    assert.equal((await spooled(fixture, queueIdOf(reply))).envelope.recipients.length, 3);
    client.close();
  });

  test('syntactically invalid addresses and commands get their codes and the session goes on', async () => {
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.match((await client.command('MAIL FROM:<not an address>')).raw, /^5(01|53) /);
    assert.match((await client.command('MAIL FROM:<no-at-sign>')).raw, /^5(01|53) 5\.1\.7 /);
    assert.match((await client.command('MAIL FROM:<app@-shop-.example>')).raw, /^5(01|53) 5\.1\.7 /);
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    assert.match((await client.command('RCPT TO:<two@@a.example>')).raw, /^5(01|53) 5\.1\.3 /);
    assert.match((await client.command('RCPT TO:<user@-bad-.example>')).raw, /^5(01|53) 5\.1\.3 /);
    assert.match((await client.command('RCPT TO:bob')).raw, /^501 /);
    assert.match((await client.command('FOO bar')).raw, /^500 /);
    assert.equal((await client.command('RCPT TO:<ok@a.example>')).code, 250);
    await client.command('DATA');
    assert.equal((await client.command('Subject: after errors\r\n\r\nhi\r\n.')).code, 250);
    client.close();
  });

  for (const [name, payload] of [
    ['\\n.\\n', 'Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<evil@attacker.example>\nRCPT TO:<victim@a.example>\nDATA\nSubject: smuggled\n\nowned\n.\n'],
    ['\\r.\\r', 'Subject: smuggle\r\n\r\nfirst\r.\rMAIL FROM:<evil@attacker.example>\rRCPT TO:<victim@a.example>\rDATA\rSubject: smuggled\r\rowned\r.\r'],
    ['\\r\\n.\\n', 'Subject: smuggle\r\n\r\nfirst\r\n.\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@a.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n.\n'],
  ] as const) {
    test(`SMTP smuggling with ${name} stays one message whose line endings are all CRLF`, async () => {
      const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
      await client.command('MAIL FROM:<app@shop.example>');
      await client.command('RCPT TO:<one@a.example>');
      await client.command('DATA');
      client.write(payload + '\r\n.\r\n');
      const reply = await client.read();
      assert.equal(reply.code, 250, reply.raw);
      assert.equal((await client.command('NOOP')).code, 250, 'nothing else was answered: the smuggled commands were content');
      const { message, envelope } = await spooled(fixture, queueIdOf(reply));
      assert.deepEqual(envelope.recipients.map((r) => r.address), ['one@a.example']);
      const text = message.toString('latin1');
      assert.doesNotMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'no bare CR or LF left');
      assert.match(text, /\r\nfirst\r\n\.\r\nMAIL FROM:<evil@attacker\.example>\r\n/, 'the smuggled lines are body text');
      client.close();
    });
  }
});

describe('mta-server connection limits', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ maxConnectionsPerIp: 2, sessionTimeLimit: 1500 });
  });
  after(() => fixture.close());

  test('a third connection from one address gets 421 4.7.0; another address still gets in', async () => {
    const first = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.1.1' });
    const second = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.1.1' });
    const third = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.1.1' });
    assert.equal(first.greeting.code, 220);
    assert.equal(second.greeting.code, 220);
    assert.match(third.greeting.raw, /^421 4\.7\.0 /);
    await third.client.closed();
    const other = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.1.2' });
    assert.equal(other.greeting.code, 220);
    first.client.close();
    await first.client.closed();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const again = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.1.1' });
    assert.equal(again.greeting.code, 220, 'a slot freed by a closed connection is usable again');
    for (const client of [second.client, other.client, again.client]) client.close();
  });

  test('closed STARTTLS sessions free their slot too: more of them in a row than the cap all get in', async () => {
    // smtp-server's STARTTLS strips the plain socket's listeners; a slot released on its 'close' leaked for good.
    for (let session = 1; session <= 4; session++) {
      const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password, '127.0.1.4');
      assert.equal((await client.command('QUIT')).code, 221, `session ${session}`);
      await client.closed();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  test('a session that keeps talking is still cut off at the session time limit with 421 4.4.2', async () => {
    const { client } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.1.3' });
    const started = Date.now();
    let reply;
    do {
      reply = await client.command('NOOP');
      if (reply.code === 250) await new Promise((resolve) => setTimeout(resolve, 200));
    } while (reply.code === 250 && Date.now() - started < 5000);
    assert.match(reply.raw, /^421 4\.4\.2 .*Session time limit/);
    await client.closed();
    assert.ok(fixture.logs.events('session-timeout').length >= 1);
  });
});

describe('mta-server implicit TLS (--smtps-port)', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ smtpsPort: 0 });
  });
  after(() => fixture.close());

  test('TLS from the first byte: banner with our hostname, AUTH offered at once, message spooled', async () => {
    const { client, greeting } = await RawSmtpClient.connect(fixture.server.ports.smtps!, { implicitTls: true });
    assert.match(greeting.raw, /^220 relay\.test ESMTP/);
    const ehlo = await client.command('EHLO app.example');
    assert.ok(ehlo.lines.includes('AUTH PLAIN LOGIN'), ehlo.raw);
    assert.ok(!ehlo.lines.includes('STARTTLS'));
    assert.equal((await client.command(`AUTH PLAIN ${Buffer.from(`\0${TEST_USER.name}\0${TEST_USER.password}`).toString('base64')}`)).code, 235);
    await client.command('MAIL FROM:<app@shop.example>');
    await client.command('RCPT TO:<x@a.example>');
    await client.command('DATA');
    const reply = await client.command('Subject: implicit\r\n\r\nhi\r\n.');
    const { envelope } = await spooled(fixture, queueIdOf(reply));
    assert.match(envelope.client.tls!.version, /^TLSv1\.[23]$/);
    client.close();
  });
});
