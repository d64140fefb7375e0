import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTestCa, type TestCa } from '../helpers/certs.js';
import { runCli } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { tempDir } from '../helpers/temp.js';

const CREDENTIALS = { user: 'relay-user', pass: 'S3cret-relay-password' };
const MESSAGE = 'From: app@shop.example\nSubject: relay\n\nbody\n';

describe('mta-queue --relay-tls as operators run it', () => {
  let f: DeliveryFixture;
  let dir: { dir: string; cleanup(): Promise<void> };
  let ca: TestCa;
  let privateAuth: string;
  let sharedAuth: string;
  const [SELF_SIGNED, PRIVATE_CA] = [0, 1];
  const relay = (index: number) => f.mx.mxes[index]!;
  const args = (index: number, extra: string[]) => ['--once', '--spool', f.layout.root, '--hostname', 'relay.test', '--connect-timeout', '2s', '--relay-host', `${relay(index).host}:${f.mx.port}`, ...extra];

  before(async () => {
    dir = await tempDir('mta-relay-tls-cli-');
    ca = await makeTestCa(dir.dir);
    privateAuth = path.join(dir.dir, 'relay-auth.txt');
    sharedAuth = path.join(dir.dir, 'relay-auth-0644.txt');
    await writeFile(privateAuth, `${CREDENTIALS.user}:${CREDENTIALS.pass}\n`, { mode: 0o600 });
    await writeFile(sharedAuth, `${CREDENTIALS.user}:${CREDENTIALS.pass}\n`, { mode: 0o644 });
    f = await startDeliveryFixture(
      [
        { name: 'relay.test', auth: CREDENTIALS },
        { name: 'relay.test', auth: CREDENTIALS, ca },
      ],
      () => ({}),
    );
  });
  after(async () => {
    await f.close();
    await dir.cleanup();
  });

  test('--relay-tls require with credentials: delivered to a self-signed relay, relay-tls-unverified logged; a 0644 auth file logs file-readable-by-others', async () => {
    await f.enqueue('app@shop.example', ['a@one.test'], MESSAGE);
    const result = await runCli('mta-queue', args(SELF_SIGNED, ['--relay-auth-file', sharedAuth, '--relay-tls', 'require']));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(relay(SELF_SIGNED).messages.filter((mail) => mail.to.includes('a@one.test')).length, 1);
    const unverified = result.logs.filter((line) => line.event === 'relay-tls-unverified');
    assert.deepEqual(unverified.map((line) => ({ level: line.level, tls: line.tls, relayHost: line.relayHost })), [{ level: 40, tls: 'require', relayHost: relay(SELF_SIGNED).host }]);
    const readable = result.logs.filter((line) => line.event === 'file-readable-by-others');
    assert.deepEqual(readable.map((line) => ({ what: line.what, file: line.file, mode: line.mode })), [{ what: 'relay-auth', file: sharedAuth, mode: '0644' }]);
    assert.ok(!JSON.stringify(result.logs).includes(CREDENTIALS.pass), 'the password is never logged');
  });

  test('the default (verify) with NODE_EXTRA_CA_CERTS: delivered with AUTH to the CA-signed relay; a 0600 file and a checked relay log no warning', async () => {
    await f.enqueue('app@shop.example', ['b@one.test'], MESSAGE);
    const result = await runCli('mta-queue', args(PRIVATE_CA, ['--relay-auth-file', privateAuth]), { env: { NODE_EXTRA_CA_CERTS: ca.certFile } });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(relay(PRIVATE_CA).messages.filter((mail) => mail.to.includes('b@one.test')).length, 1);
    assert.deepEqual(relay(PRIVATE_CA).authAttempts.map(({ tls, accepted }) => ({ tls, accepted })), [{ tls: true, accepted: true }]);
    assert.deepEqual(result.logs.filter((line) => ['relay-tls-unverified', 'file-readable-by-others'].includes(String(line.event))), []);
  });

  test('the default (verify) against the self-signed relay: deferred with the reason in the log, no AUTH', async () => {
    const id = await f.enqueue('app@shop.example', ['c@one.test'], MESSAGE);
    const attempts = relay(SELF_SIGNED).authAttempts.length;
    const result = await runCli('mta-queue', args(SELF_SIGNED, ['--relay-auth-file', privateAuth]));
    assert.equal(result.code, 0, result.stderr);
    const deferred = result.logs.find((line) => line.event === 'deferred' && line.queueId === id);
    assert.equal(deferred?.enhanced, '4.7.5');
    assert.match(String(deferred?.reply), /^relay certificate not trusted: self-signed certificate/);
    assert.equal(relay(SELF_SIGNED).authAttempts.length, attempts);
  });

  test('--relay-ca unreadable, or with --relay-tls require: one line, exit 2', async () => {
    for (const [extra, pattern] of [
      [['--relay-ca', path.join(dir.dir, 'missing.pem')], /^mta-queue: --relay-ca: cannot read .*missing\.pem \(ENOENT\)$/],
      [['--relay-ca', ca.certFile, '--relay-tls', 'require'], /^mta-queue: --relay-ca applies to --relay-tls verify, not require$/],
    ] as const) {
      const result = await runCli('mta-queue', args(PRIVATE_CA, ['--relay-auth-file', privateAuth, ...extra]));
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr.trimEnd(), pattern);
    }
  });
});
