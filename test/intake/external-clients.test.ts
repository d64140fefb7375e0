import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { phpMailer, queueIdIn, smtplib, swaks, toolAvailable, TOOLS, transcript } from '../helpers/external-clients.js';
import { queuedIds, readSpooled, type SpooledMessage } from '../helpers/spool-reader.js';
import { startIntake, TEST_USER, type IntakeFixture } from '../helpers/intake-fixture.js';

interface ExpectedSubmission {
  sender: string;
  recipients: string[];
  /** Only for clients whose EHLO name the test chose. */
  helo?: string;
  subject: string;
  /** The start of the spooled body, CRLF line endings, dots unstuffed. */
  body: string;
}

/** What every authenticated STARTTLS submission must look like in the spool, whichever client sent it. */
function assertSpooledSubmission({ queueId, envelope, message }: SpooledMessage, expected: ExpectedSubmission): void {
  assert.equal(envelope.id, queueId);
  assert.equal(envelope.sender, expected.sender);
  assert.deepEqual(
    envelope.recipients.map((recipient) => [recipient.address, recipient.state]),
    expected.recipients.map((address) => [address, 'pending']),
  );
  assert.equal(envelope.user, TEST_USER.name);
  assert.equal(envelope.client.address, '127.0.0.1');
  assert.ok(envelope.client.tls, 'the session was encrypted, so the envelope must say how');
  assert.match(envelope.client.tls.version, /^TLSv1\.[23]$/);
  if (expected.helo) assert.equal(envelope.client.helo, expected.helo);
  assert.equal(envelope.size, message.length);

  const text = message.toString('utf8');
  assert.doesNotMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'only CRLF line endings in the spool');
  const received = /^Received: from (\S+) \(unknown \[127\.0\.0\.1\]\)\r\n\t\(using (\S+) with cipher (\S+)\)\r\n\tby relay\.test \(mta-relay\) with ESMTPSA id ([0-9a-z]{20})[;\r]/.exec(text);
  assert.ok(received, `our Received line is not the first header:\n${text.slice(0, 600)}`);
  assert.deepEqual(received.slice(1), [envelope.client.helo, envelope.client.tls.version, envelope.client.tls.cipher, queueId], 'Received agrees with the envelope');
  const headerEnd = text.indexOf('\r\n\r\n');
  assert.ok(headerEnd > 0, 'the message has a header block');
  const header = text.slice(0, headerEnd + 2);
  const body = text.slice(headerEnd + 4);
  assert.ok(header.includes(`\r\nSubject: ${expected.subject}\r\n`), `Subject missing from\n${header}`);
  assert.ok(body.startsWith(expected.body), `body differs:\n${JSON.stringify(body)}\nexpected to start with\n${JSON.stringify(expected.body)}`);
}

describe('submission from third-party SMTP clients', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake();
  });
  after(() => fixture.close());

  const swaksLogin = ['--auth', 'PLAIN', '--auth-user', TEST_USER.name, '--auth-password', TEST_USER.password];

  test('swaks: EHLO, STARTTLS, AUTH PLAIN and one message spooled as sent', async (t) => {
    if (!(await toolAvailable(t, TOOLS.swaks))) return;
    const result = await swaks(fixture.port, [
      '--tls',
      ...swaksLogin,
      '--ehlo', 'swaks.client.test',
      '--from', 'news@shop.example',
      '--to', 'alice@a.example',
      '--header', 'Subject: swaks over STARTTLS',
      // swaks dot-stuffs the second line; the spool must hold it unstuffed.
      '--body', 'first line\n.leading dot\nlast line',
    ]);
    assert.equal(result.code, 0, transcript(result));
    assertSpooledSubmission(await readSpooled(fixture.spool, queueIdIn(result)), {
      sender: 'news@shop.example',
      recipients: ['alice@a.example'],
      helo: 'swaks.client.test',
      subject: 'swaks over STARTTLS',
      body: 'first line\r\n.leading dot\r\nlast line\r\n',
    });
  });

  test('swaks with AUTH but without --tls is refused: AUTH is not offered in clear text and nothing is spooled', async (t) => {
    if (!(await toolAvailable(t, TOOLS.swaks))) return;
    const queued = await queuedIds(fixture.spool);
    const result = await swaks(fixture.port, [...swaksLogin, '--from', 'news@shop.example', '--to', 'alice@a.example']);
    // 28 is swaks's "error in AUTH transaction": it found no AUTH in the EHLO reply and gave up before MAIL.
    assert.equal(result.code, 28, transcript(result));
    assert.match(`${result.stdout}${result.stderr}`, /did not advertise authentication/, transcript(result));
    assert.match(result.stdout, /<- {2}250[- ]STARTTLS/, `the way to encryption is offered\n${transcript(result)}`);
    assert.doesNotMatch(result.stdout, /MAIL FROM/, transcript(result));
    assert.deepEqual(await queuedIds(fixture.spool), queued);
  });

  const smtplibSession = { helo: 'python.client.test', user: TEST_USER.name, from: 'app@shop.example', to: ['alice@a.example', 'bob@b.example'] };

  test('Python smtplib: starttls, login and sendmail to two recipients', async (t) => {
    if (!(await toolAvailable(t, TOOLS.smtplib))) return;
    const { result, outcome } = await smtplib({
      ...smtplibSession,
      port: fixture.port,
      source: '127.0.0.1',
      password: TEST_USER.password,
      // Bare LF endings on purpose: smtplib turns them into CRLF and dot-stuffs, as it does for every caller.
      message: 'From: App <app@shop.example>\nTo: alice@a.example, bob@b.example\nSubject: smtplib over STARTTLS\n\nLine one\n.leading dot\nlast line\n',
    });
    assert.deepEqual(outcome, { refused: {} }, transcript(result));
    assertSpooledSubmission(await readSpooled(fixture.spool, queueIdIn(result)), {
      sender: 'app@shop.example',
      recipients: ['alice@a.example', 'bob@b.example'],
      helo: 'python.client.test',
      subject: 'smtplib over STARTTLS',
      body: 'Line one\r\n.leading dot\r\nlast line\r\n',
    });
  });

  test('Python smtplib: a wrong password raises SMTPAuthenticationError 535 and nothing is spooled', async (t) => {
    if (!(await toolAvailable(t, TOOLS.smtplib))) return;
    const queued = await queuedIds(fixture.spool);
    // smtplib retries a refused login with every mechanism offered: keep those failures off 127.0.0.1.
    const source = '127.0.0.9';
    const { result, outcome } = await smtplib({ ...smtplibSession, port: fixture.port, source, password: 'not the password', message: 'Subject: never sent\n\nx\n' });
    assert.ok('authError' in outcome, transcript(result));
    assert.equal(outcome.authError.code, 535, transcript(result));
    assert.match(outcome.authError.message, /^5\.7\.8 /);
    assert.deepEqual(await queuedIds(fixture.spool), queued);
    const failures = fixture.logs.events('auth').filter((line) => line.client === source && line.result === 'fail');
    assert.ok(failures.length > 0 && failures.every((line) => line.user === TEST_USER.name), 'the failed login is logged against the user');
  });

  test('PHPMailer as Acelle Mail uses it: the message and X-Acelle-Message-Id reach the spool byte for byte', async (t) => {
    if (!(await toolAvailable(t, TOOLS.phpmailer))) return;
    const acelleMessageId = '<1764151200.6745a1b0c3d2e@acelle.example>';
    const { result, sent } = await phpMailer({
      port: fixture.port,
      user: TEST_USER.name,
      password: TEST_USER.password,
      from: 'campaigns@shop.example',
      to: 'carol@c.example',
      subject: 'November newsletter',
      html: '<p>Hello Carol, caf\u00e9 offers inside.</p>\n<p><a href="https://shop.example/t/abc">Open</a></p>',
      text: 'Hello Carol, caf\u00e9 offers inside.\n.leading dot\nhttps://shop.example/t/abc',
      acelleMessageId,
    });
    const stored = await readSpooled(fixture.spool, queueIdIn(result));
    const sentText = sent.toString('utf8');
    assertSpooledSubmission(stored, {
      sender: 'campaigns@shop.example',
      recipients: ['carol@c.example'],
      subject: 'November newsletter',
      body: sentText.slice(sentText.indexOf('\r\n\r\n') + 4),
    });
    assert.ok(stored.message.includes(Buffer.from(`\r\nX-Acelle-Message-Id: ${acelleMessageId}\r\n`)), 'Acelle matches bounces and opens by this header');
    // The Received line is the one thing we add: PHPMailer sets Message-ID and Date itself.
    const ours = /^Received: [^]*?\r\n(?![ \t])/.exec(stored.message.toString('latin1'))![0].length;
    const rest = stored.message.subarray(ours);
    assert.ok(rest.subarray(0, sent.length).equals(sent), `spooled message differs from what PHPMailer sent\n${transcript(result)}`);
    // PHPMailer's SMTP::data sends an empty line after a message that already ends in CRLF; that line is content.
    assert.match(rest.subarray(sent.length).toString('latin1'), /^(\r\n)*$/);
  });
});
