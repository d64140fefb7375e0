import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { QueueConfig } from '../../src/config/queue-config.js';
import { resolveRelayHost, type RelayHostFlags } from '../../src/config/relay-host.js';
import { mxTransport } from '../../src/delivery/mx-transport.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { makeTestCa, type TestCa } from '../helpers/certs.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { FakeMx } from '../helpers/mx-server.js';
import { readSpooled } from '../helpers/spool-reader.js';
import { tempDir } from '../helpers/temp.js';

const MESSAGE = 'From: app@shop.example\nTo: someone\nSubject: Via a verified relay\n\nBody\n';
const CREDENTIALS = { user: 'relay-user', pass: 'S3cret-relay-password' };

/** At 127.0.0.2, .3 on one port: an impostor with a self-signed certificate, and the real relay, its certificate signed by a private CA. */
const HOST = { selfSigned: 0, privateCa: 1 } as const;

describe('mta-queue --relay-tls verify: the relay password goes only to a relay whose certificate checks out', () => {
  let f: DeliveryFixture;
  let dir: { dir: string; cleanup(): Promise<void> };
  let ca: TestCa;
  let otherCa: TestCa;
  let authFile: string;
  const server = (name: keyof typeof HOST): FakeMx => f.mx.mxes[HOST[name]]!;

  /** One `mta-queue --once` pass with the relay host as these flags (real files) configure it. */
  async function runOnceVia(flags: Partial<RelayHostFlags> & { host: string }): Promise<void> {
    const relayHost = resolveRelayHost({ authFile, tls: '', ca: '', ...flags, host: `${flags.host}:${f.mx.port}` });
    const config: QueueConfig = { ...f.config, relayHost };
    const runner = new QueueRunner(config, f.deps({ transport: mxTransport(config, f.resolver, f.clock) }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
  }

  async function onlyRecipientOf(id: string) {
    const [recipient] = (await readSpooled(f.layout.root, id)).envelope.recipients;
    return recipient!;
  }

  const delivered = (name: keyof typeof HOST, address: string) => server(name).messages.filter((mail) => mail.to.includes(address));

  before(async () => {
    dir = await tempDir('mta-relay-tls-');
    ca = await makeTestCa(dir.dir, 'private-');
    otherCa = await makeTestCa(dir.dir, 'other-');
    authFile = path.join(dir.dir, 'relay-auth.txt');
    await writeFile(authFile, `${CREDENTIALS.user}:${CREDENTIALS.pass}\n`, { mode: 0o600 });
    f = await startDeliveryFixture(
      [
        { name: 'relay.test', auth: CREDENTIALS },
        { name: 'relay.test', auth: CREDENTIALS, ca },
      ],
      (hosts) => ({
        'relay.test': { a: [hosts[HOST.privateCa]!] },
        // Resolves to the real relay, but the certificate does not name it.
        'unnamed.test': { a: [hosts[HOST.privateCa]!] },
      }),
    );
  });
  after(async () => {
    await f.close();
    await dir.cleanup();
  });

  test('the default with credentials: a self-signed relay never sees AUTH or MAIL; deferred 4.7.5 saying why', async () => {
    const id = await f.enqueue('app@shop.example', ['a@one.test'], MESSAGE);
    await runOnceVia({ host: server('selfSigned').host });
    const recipient = await onlyRecipientOf(id);
    assert.equal(recipient.state, 'deferred');
    assert.equal(recipient.lastReply?.enhanced, '4.7.5');
    assert.match(String(recipient.lastReply?.text), /^relay certificate not trusted: self-signed certificate \(127\.0\.0\.\d+; --relay-ca FILE for a private CA\)$/);
    assert.ok(server('selfSigned').sessions > 0, 'the relay was reached');
    assert.deepEqual(server('selfSigned').authAttempts, [], 'no AUTH to an unverified relay');
    assert.deepEqual(server('selfSigned').mailAttempts, [], 'no MAIL either');
    const [line] = f.logs.events('deferred').filter((entry) => entry.queueId === id);
    assert.equal(line?.enhanced, '4.7.5');
    assert.match(String(line?.reply), /certificate not trusted/);
    assert.ok(!f.logs.text().includes(CREDENTIALS.pass));
  });

  test('a relay signed by a CA that is not trusted is refused the same way', async () => {
    const id = await f.enqueue('app@shop.example', ['b@one.test'], MESSAGE);
    await runOnceVia({ host: server('privateCa').host });
    const recipient = await onlyRecipientOf(id);
    assert.equal(recipient.state, 'deferred');
    assert.equal(recipient.lastReply?.enhanced, '4.7.5');
    assert.match(String(recipient.lastReply?.text), /^relay certificate not trusted: unable to verify the first certificate/);
    assert.deepEqual(server('privateCa').authAttempts, []);
  });

  test('--relay-ca: an IP-literal relay checked against its IP SAN gets AUTH and the message, over TLS', async () => {
    await f.enqueue('app@shop.example', ['c@one.test'], MESSAGE);
    await runOnceVia({ host: server('privateCa').host, ca: ca.certFile });
    assert.equal(delivered('privateCa', 'c@one.test').length, 1);
    assert.notEqual(delivered('privateCa', 'c@one.test')[0]!.tls, null);
    assert.deepEqual(server('privateCa').authAttempts.map(({ username, tls, accepted }) => ({ username, tls, accepted })), [{ username: CREDENTIALS.user, tls: true, accepted: true }]);
  });

  test('--relay-ca: a relay by name, found by its A record, checked against that name', async () => {
    await f.enqueue('app@shop.example', ['d@one.test'], MESSAGE);
    await runOnceVia({ host: 'relay.test', ca: ca.certFile });
    assert.equal(delivered('privateCa', 'd@one.test').length, 1);
  });

  test('--relay-ca: a trusted certificate for another name is refused (4.7.5), no AUTH', async () => {
    const id = await f.enqueue('app@shop.example', ['e@one.test'], MESSAGE);
    const attempts = server('privateCa').authAttempts.length;
    await runOnceVia({ host: 'unnamed.test', ca: ca.certFile });
    const recipient = await onlyRecipientOf(id);
    assert.equal(recipient.state, 'deferred');
    assert.equal(recipient.lastReply?.enhanced, '4.7.5');
    assert.match(String(recipient.lastReply?.text), /^relay certificate not trusted: Hostname\/IP does not match certificate's altnames/);
    assert.equal(server('privateCa').authAttempts.length, attempts, 'no AUTH');
    assert.equal(delivered('privateCa', 'e@one.test').length, 0);
  });

  test('--relay-ca adds to the CAs Node trusts (NODE_EXTRA_CA_CERTS included), it does not replace them', async () => {
    await f.enqueue('app@shop.example', ['g@one.test'], MESSAGE);
    await runOnceVia({ host: server('privateCa').host, ca: otherCa.certFile, nodeExtraCaCerts: ca.certFile });
    assert.equal(delivered('privateCa', 'g@one.test').length, 1);
  });

  test('--relay-tls require: encrypted but unchecked, so the self-signed relay gets AUTH and the message', async () => {
    await f.enqueue('app@shop.example', ['h@one.test'], MESSAGE);
    await runOnceVia({ host: server('selfSigned').host, tls: 'require' });
    assert.equal(delivered('selfSigned', 'h@one.test').length, 1);
    assert.deepEqual(server('selfSigned').authAttempts.map(({ tls, accepted }) => ({ tls, accepted })), [{ tls: true, accepted: true }]);
  });
});
