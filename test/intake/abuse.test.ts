import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parseNetworks } from '../../src/config/units.js';
import { hashPassword } from '../../src/shared/password-hash.js';
import { startIntake, TEST_USER, type IntakeFixture } from '../helpers/intake-fixture.js';
import { RawSmtpClient, type Reply } from '../helpers/raw-smtp.js';

const authPlain = (user: string, password: string) => `AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A session over STARTTLS, ready for AUTH. */
async function tlsSession(port: number, localAddress: string): Promise<RawSmtpClient> {
  const { client, greeting } = await RawSmtpClient.connect(port, { localAddress });
  assert.equal(greeting.code, 220, greeting.raw);
  await client.command('EHLO test.example');
  await client.startTls();
  await client.command('EHLO test.example');
  return client;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe('intake under abuse: connection caps', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ maxConnectionsPerIp: 50 });
  });
  after(() => fixture.close());

  test('60 connections opened at once from one address with a cap of 50: exactly 50 greeted, only the 10 beyond refused 421 4.7.0', async () => {
    const results = await Promise.all(Array.from({ length: 60 }, () => RawSmtpClient.connect(fixture.port, { localAddress: '127.0.3.1' })));
    const greeted = results.filter(({ greeting }) => greeting.code === 220);
    const refused = results.filter(({ greeting }) => greeting.code === 421);
    assert.equal(greeted.length, 50);
    assert.equal(refused.length, 10);
    for (const { greeting } of refused) assert.match(greeting.raw, /^421 4\.7\.0 /);
    await Promise.all(refused.map(({ client }) => client.closed()));
    for (const { client } of results) client.close();
  });
});

describe('intake under abuse: the total cap counts implicit-TLS handshakes', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ maxConnections: 3, smtpsPort: 0 });
  });
  after(() => fixture.close());

  test('two sockets stalled before their TLS handshake on --smtps-port hold two of three slots', async () => {
    const smtpsPort = fixture.server.ports.smtps!;
    const stalled = await Promise.all(
      [1, 2].map(
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect({ host: '127.0.0.1', port: smtpsPort, localAddress: '127.0.3.10' }, () => resolve(socket));
            socket.once('error', reject);
          }),
      ),
    );
    await sleep(100);
    const first = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.3.11' });
    assert.equal(first.greeting.code, 220, 'one slot left');
    const second = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.3.12' });
    assert.match(second.greeting.raw, /^421 4\.7\.0 /, 'the server is full: two handshakes and one session');
    await second.client.closed();
    const third = net.connect({ host: '127.0.0.1', port: smtpsPort, localAddress: '127.0.3.13' });
    third.on('error', () => undefined);
    const closed = await Promise.race([new Promise((resolve) => third.once('close', () => resolve(true))), sleep(3000).then(() => false)]);
    third.destroy();
    assert.equal(closed, true, 'a handshake beyond the total cap is closed at once');
    for (const socket of stalled) socket.destroy();
    await sleep(100);
    const again = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.3.12' });
    assert.equal(again.greeting.code, 220, 'slots freed by the closed handshakes');
    first.client.close();
    again.client.close();
  });
});

describe('intake under abuse: AUTH lockout', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ maxConnectionsPerIp: 100 });
  });
  after(() => fixture.close());

  test('a successful login between failures clears nothing: the fifth failure in the window still blocks', async () => {
    const guesser = await tlsSession(fixture.port, '127.0.4.1');
    for (let attempt = 1; attempt <= 4; attempt++) assert.equal((await guesser.command(authPlain(TEST_USER.name, `guess${attempt}`))).code, 535);
    const good = await tlsSession(fixture.port, '127.0.4.1');
    assert.equal((await good.command(authPlain(TEST_USER.name, TEST_USER.password))).code, 235);
    assert.match((await guesser.command(authPlain(TEST_USER.name, 'guess5'))).raw, /^421 4\.7\.0 /);
    good.close();
  });

  test('30 parallel AUTHs from one address do not race past the limit: five are checked, the rest refused 421', async () => {
    const address = '127.0.4.2';
    const sessions = await Promise.all(Array.from({ length: 30 }, () => tlsSession(fixture.port, address)));
    const replies = await Promise.all(sessions.map((client, index) => client.command(authPlain(TEST_USER.name, `parallel-guess-${index}`))));
    const codes = replies.map((reply) => reply.code);
    assert.equal(codes.filter((code) => code === 535).length, 4, codes.join(' '));
    assert.equal(codes.filter((code) => code === 421).length, 26, codes.join(' '));
    const checked = fixture.logs.events('auth').filter((line) => line.client === address && line.result === 'fail');
    assert.equal(checked.length, 5, 'exactly maxFailures passwords were checked');
    for (const client of sessions) client.close();
  });

  test('the right password is refused once the address is blocked, also when it arrived while the guesses were being checked', async () => {
    const address = '127.0.4.3';
    const sessions = await Promise.all(Array.from({ length: 7 }, () => tlsSession(fixture.port, address)));
    const guesses = sessions.slice(0, 6).map((client, index) => client.command(authPlain(TEST_USER.name, `race-guess-${index}`)));
    await sleep(30); // the guesses are being checked now (five hashes take well over this)
    const right = await sessions[6]!.command(authPlain(TEST_USER.name, TEST_USER.password));
    assert.match(right.raw, /^421 4\.7\.0 /, right.raw);
    await Promise.all(guesses);
    for (const client of sessions) client.close();
  });

  test('a refused user name reaches the log escaped and cut to about 100 characters', async () => {
    const client = await tlsSession(fixture.port, '127.0.4.4');
    // smtp-server itself refuses C0/C1 control characters in AUTH (501); line separators and overrides get through.
    const name = `${'n'.repeat(40)}\u2028\u202e\\${'x'.repeat(400)}`;
    assert.equal((await client.command(authPlain(name, 'whatever'))).code, 535);
    client.close();
    const line = fixture.logs.events('auth').find((entry) => entry.client === '127.0.4.4');
    assert.ok(line, 'auth failure logged');
    const user = String(line.user);
    assert.ok(user.length <= 101, `logged user name is ${user.length} characters`);
    assert.ok(user.startsWith(`${'n'.repeat(40)}\\u2028\\u202e\\x5cxxx`), user);
    assert.doesNotMatch(user, /[\u2028\u202e]/);
  });
});

describe('intake under abuse: timing of failed AUTH', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({}, { authThrottle: { maxFailures: 1000, window: 60_000, blockFor: 60_000 } });
    await writeFile(fixture.usersFile, `plainuser:plain-secret\nhasheduser:${await hashPassword('hashed-secret')}\n`, { mode: 0o600 });
    await fixture.server.reload();
  });
  after(() => fixture.close());

  test('unknown user, plain-line user and scrypt user answer a wrong password in the same time (medians within 0.5×–2×)', async () => {
    const kinds = ['nosuchuser', 'plainuser', 'hasheduser'] as const;
    const sessions = await Promise.all(kinds.map((_, index) => tlsSession(fixture.port, `127.0.4.${20 + index}`)));
    const times = new Map<string, number[]>(kinds.map((kind) => [kind, []]));
    for (let round = 0; round < 9; round++) {
      for (const [index, kind] of kinds.entries()) {
        const started = process.hrtime.bigint();
        const reply = await sessions[index]!.command(authPlain(kind, 'wrong-password'));
        times.get(kind)!.push(Number(process.hrtime.bigint() - started) / 1e6);
        assert.equal(reply.code, 535, `${kind}: ${reply.raw}`);
      }
    }
    const medians = kinds.map((kind) => median(times.get(kind)!));
    const [unknown, plain, hashed] = medians as [number, number, number];
    for (const [name, value] of [['plain', plain], ['scrypt', hashed]] as const) {
      const ratio = value / unknown;
      assert.ok(ratio > 0.5 && ratio < 2, `median ${name} ${value.toFixed(1)} ms vs unknown ${unknown.toFixed(1)} ms (×${ratio.toFixed(2)})`);
    }
    for (const client of sessions) client.close();
  });
});

describe('intake under abuse: error floods', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake();
  });
  after(() => fixture.close());

  test('5,000 pipelined MAIL FROM from an untrusted client: 20 errors, then 421 4.7.0 and the connection closed', async () => {
    const { client } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.5.1' });
    assert.equal((await client.command('EHLO flood.example')).code, 250);
    const logLinesBefore = fixture.logs.raw.length;
    client.write('MAIL FROM:<flood@flood.example>\r\n'.repeat(5000));
    const replies: Reply[] = [];
    for (;;) {
      try {
        replies.push(await client.read(10_000));
      } catch {
        break;
      }
    }
    await client.closed();
    assert.ok(replies.length <= 21, `${replies.length} replies`);
    assert.deepEqual(replies.slice(0, -1).map((reply) => reply.code), Array<number>(20).fill(530));
    assert.match(replies.at(-1)!.raw, /^421 4\.7\.0 /);
    await sleep(50);
    const logged = fixture.logs.raw.length - logLinesBefore;
    assert.ok(logged <= 25, `${logged} log lines`);
    assert.equal(fixture.logs.events('too-many-errors').length, 1);
  });

  test('an accepted message starts the count again: a long session of good mail is not cut for old mistakes', async () => {
    const trusted = await startIntake({ trustedNetworks: parseNetworks('127.0.5.2', 'test') });
    try {
      const { client } = await RawSmtpClient.connect(trusted.port, { localAddress: '127.0.5.2' });
      await client.command('EHLO app.example');
      for (let round = 0; round < 3; round++) {
        for (let error = 0; error < 15; error++) assert.match((await client.command('RCPT TO:<nobody@a.example>')).raw, /^503 /);
        assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
        assert.equal((await client.command('RCPT TO:<x@a.example>')).code, 250);
        assert.equal((await client.command('DATA')).code, 354);
        assert.equal((await client.command(`Subject: round ${round}\r\n\r\nhi\r\n.`)).code, 250);
      }
      client.close();
    } finally {
      await trusted.close();
    }
  });
});

describe('intake under abuse: password hashing does not starve the spool', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake(
      { maxConnectionsPerIp: 500, trustedNetworks: parseNetworks('127.0.6.1', 'test') },
      { authThrottle: { maxFailures: 1_000_000, window: 60_000, blockFor: 60_000 } },
    );
  });
  after(() => fixture.close());

  test('a trusted submission completes promptly while 120 failing AUTHs are in flight', async () => {
    const sessions = await Promise.all(Array.from({ length: 120 }, () => tlsSession(fixture.port, '127.0.6.2')));
    let stop = false;
    let attempts = 0;
    const guessing = sessions.map(async (client, index) => {
      for (let n = 0; !stop && n < 19; n++) {
        attempts++;
        const reply = await client.command(authPlain(`nobody${index}`, `guess${n}`)).catch(() => null);
        if (!reply || reply.code !== 535) return;
      }
    });
    await sleep(300); // the hashes are queued now
    const started = Date.now();
    const { client } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.6.1' });
    await client.command('EHLO app.example');
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
    assert.equal((await client.command('RCPT TO:<x@a.example>')).code, 250);
    assert.equal((await client.command('DATA')).code, 354);
    const reply = await client.command('Subject: during a guessing storm\r\n\r\nhi\r\n.');
    const elapsed = Date.now() - started;
    stop = true;
    assert.equal(reply.code, 250, reply.raw);
    assert.ok(attempts > 120, `only ${attempts} AUTH attempts were made`);
    assert.ok(elapsed < 2500, `the submission took ${elapsed} ms`);
    client.close();
    for (const session of sessions) session.close();
    await Promise.all(guessing);
  });
});
