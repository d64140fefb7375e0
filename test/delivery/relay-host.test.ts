import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { QueueConfig } from '../../src/config/queue-config.js';
import type { RelayHostConfig } from '../../src/config/relay-host.js';
import { mxTransport } from '../../src/delivery/mx-transport.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { FakeMx } from '../helpers/mx-server.js';
import { readSpooled } from '../helpers/spool-reader.js';

const MESSAGE = 'From: app@shop.example\nTo: someone\nSubject: Via the relay\n\nBody\n';
const CREDENTIALS = { user: 'relay-user', pass: 'S3cret:with-colon' };
/** As --relay-auth-file gives them; the file itself matters only for the permission warning (test/cli/relay-tls.test.ts). */
const configured = (password = CREDENTIALS.pass) => ({ file: 'relay-auth.txt', user: CREDENTIALS.user, password });

/** At 127.0.0.2 … on one port: the relay hosts, and the MX the recipients' domains really publish. */
const HOST = { plain: 0, auth: 1, clearAuth: 2, realMx: 3, brokenTls: 4, clear: 5 } as const;

describe('mta-queue --relay-host', () => {
  let f: DeliveryFixture;
  const server = (name: keyof typeof HOST): FakeMx => f.mx.mxes[HOST[name]]!;
  const relay = (name: keyof typeof HOST, extra: Partial<RelayHostConfig> = {}): RelayHostConfig => ({ host: server(name).host, port: f.mx.port, credentials: null, tls: 'may', trustedCas: null, ...extra });

  /** One `mta-queue --once` pass with this relay host configured. */
  async function runOnceVia(relayHost: RelayHostConfig): Promise<void> {
    const config: QueueConfig = { ...f.config, relayHost };
    const runner = new QueueRunner(config, f.deps({ transport: mxTransport(config, f.resolver, f.clock) }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
  }

  async function recipientsOf(id: string) {
    return (await readSpooled(f.layout.root, id)).envelope.recipients;
  }

  before(async () => {
    f = await startDeliveryFixture(
      [
        { name: 'relay-plain.test' },
        { name: 'relay-auth.test', auth: CREDENTIALS },
        { name: 'relay-clear.test', tls: 'none', auth: CREDENTIALS },
        { name: 'mx.real.test' },
        { name: 'relay-broken.test', tls: 'broken' },
        { name: 'relay-open-clear.test', tls: 'none' },
      ],
      (hosts) => ({
        'one.test': { mx: [{ preference: 10, exchange: 'mx.real.test' }] },
        'two.test': { mx: [{ preference: 10, exchange: 'mx.real.test' }] },
        'mx.real.test': { a: [hosts[HOST.realMx]!] },
        'smtp.relay.test': { a: [hosts[HOST.plain]!] },
      }),
    );
  });
  after(() => f.close());

  test('mail for two domains goes to the relay host (found by its A record), one transaction per domain, none to the MXes', async () => {
    await f.enqueue('app@shop.example', ['a@one.test', 'b@two.test'], MESSAGE);
    await runOnceVia({ host: 'smtp.relay.test', port: f.mx.port, credentials: null, tls: 'may', trustedCas: null });
    const received = server('plain').messages;
    assert.deepEqual(received.map((mail) => mail.to).sort(), [['a@one.test'], ['b@two.test']]);
    assert.ok(received.every((mail) => mail.tls !== null), 'STARTTLS used when offered');
    assert.equal(server('realMx').sessions, 0, "the recipients' MX was never contacted");
    assert.deepEqual(server('plain').authAttempts, []);
  });

  test('AUTH with the right credentials, after STARTTLS, delivers (an IP literal; --relay-tls require takes its self-signed certificate)', async () => {
    const id = await f.enqueue('app@shop.example', ['c@one.test'], MESSAGE);
    await runOnceVia(relay('auth', { credentials: configured(), tls: 'require' }));
    assert.deepEqual(server('auth').messages.map((mail) => mail.to), [['c@one.test']]);
    assert.deepEqual(server('auth').authAttempts.map(({ username, tls, accepted }) => ({ username, tls, accepted })), [{ username: CREDENTIALS.user, tls: true, accepted: true }]);
    assert.equal(f.logs.lines().filter((line) => line.queueId === id && line.event === 'delivered').length, 1);
    assert.ok(!JSON.stringify(f.logs.lines()).includes(CREDENTIALS.pass), 'the password is never logged');
  });

  test('AUTH PLAIN or LOGIN, whichever the relay names', async () => {
    // LOGIN goes in three lines; a relay that names only LOGIN must get it.
    const login = await startDeliveryFixture([{ name: 'relay-login.test', auth: { ...CREDENTIALS, methods: ['LOGIN'] } }], () => ({}));
    try {
      await login.enqueue('app@shop.example', ['l@one.test'], MESSAGE);
      const config: QueueConfig = { ...login.config, relayHost: { host: login.mx.mxes[0]!.host, port: login.mx.port, credentials: configured(), tls: 'require', trustedCas: null } };
      const runner = new QueueRunner(config, login.deps({ transport: mxTransport(config, login.resolver, login.clock) }));
      await runner.start({ watch: false });
      await runner.drain();
      await runner.close();
      assert.deepEqual(login.mx.mxes[0]!.authAttempts.map(({ method, accepted }) => ({ method, accepted })), [{ method: 'LOGIN', accepted: true }]);
      assert.equal(login.mx.mxes[0]!.messages.length, 1);
    } finally {
      await login.close();
    }
  });

  test('wrong credentials (535) defer the recipients with 4.7.x: a SASL failure is temporary', async () => {
    const id = await f.enqueue('app@shop.example', ['d@one.test', 'e@two.test'], MESSAGE);
    await runOnceVia(relay('auth', { credentials: configured('wrong-password'), tls: 'require' }));
    for (const recipient of await recipientsOf(id)) {
      assert.equal(recipient.state, 'deferred', recipient.address);
      assert.match(String(recipient.lastReply?.enhanced), /^4\.7\./, recipient.address);
      assert.match(String(recipient.lastReply?.text), /refused AUTH/);
    }
    assert.ok(!server('auth').messages.some((mail) => mail.to.includes('d@one.test')));
    assert.ok(server('auth').authAttempts.some((attempt) => !attempt.accepted), 'the relay was asked');
    assert.ok(!JSON.stringify(f.logs.lines()).includes('wrong-password'), 'the password is never logged');
  });

  test('--relay-tls require against a relay without STARTTLS defers (4.7.x) and sends neither AUTH nor MAIL', async () => {
    const id = await f.enqueue('app@shop.example', ['f@one.test'], MESSAGE);
    await runOnceVia(relay('clearAuth', { credentials: configured(), tls: 'require' }));
    const [recipient] = await recipientsOf(id);
    assert.equal(recipient?.state, 'deferred');
    assert.match(String(recipient?.lastReply?.enhanced), /^4\.7\./);
    assert.match(String(recipient?.lastReply?.text), /STARTTLS/);
    assert.ok(server('clearAuth').sessions > 0, 'the relay was reached');
    assert.deepEqual(server('clearAuth').authAttempts, [], 'no AUTH in clear text');
    assert.deepEqual(server('clearAuth').mailAttempts, [], 'no MAIL in clear text');
  });

  test('--relay-tls require with a failed handshake defers (4.7.x) instead of falling back to clear text', async () => {
    const id = await f.enqueue('app@shop.example', ['i@one.test'], MESSAGE);
    await runOnceVia(relay('brokenTls', { tls: 'require' }));
    const [recipient] = await recipientsOf(id);
    assert.equal(recipient?.state, 'deferred');
    assert.match(String(recipient?.lastReply?.enhanced), /^4\.7\./);
    assert.match(String(recipient?.lastReply?.text), /TLS handshake/);
    assert.ok(server('brokenTls').errors.length > 0, 'a handshake was attempted');
    assert.deepEqual(server('brokenTls').mailAttempts, [], 'no MAIL in clear text');
  });

  test('--relay-tls may with credentials against a relay without STARTTLS: no AUTH in clear text, deferred (4.7.10)', async () => {
    const id = await f.enqueue('app@shop.example', ['g@one.test'], MESSAGE);
    const sessions = server('clearAuth').sessions;
    await runOnceVia(relay('clearAuth', { credentials: configured(), tls: 'may' }));
    const [recipient] = await recipientsOf(id);
    assert.equal(recipient?.state, 'deferred');
    assert.equal(recipient?.lastReply?.enhanced, '4.7.10');
    assert.match(String(recipient?.lastReply?.text), /never sent in clear text/);
    assert.ok(server('clearAuth').sessions > sessions, 'the relay was reached');
    assert.deepEqual(server('clearAuth').authAttempts, [], 'no AUTH in clear text');
    assert.ok(!server('clearAuth').messages.some((mail) => mail.to.includes('g@one.test')));
  });

  test('--relay-tls may without credentials still delivers in clear to a relay without STARTTLS (the operator chose it)', async () => {
    const id = await f.enqueue('app@shop.example', ['k@one.test'], MESSAGE);
    await runOnceVia(relay('clear', { tls: 'may' }));
    const received = server('clear').messages.filter((mail) => mail.to.includes('k@one.test'));
    assert.equal(received.length, 1);
    assert.equal(received[0]!.tls, null);
    assert.equal((await f.files('deferred')).filter((name) => name.includes(id)).length, 0);
  });

  test('the unspecified-address guard still applies: --relay-host 0.0.0.0 defers (4.4.4) without connecting', async () => {
    const id = await f.enqueue('app@shop.example', ['j@one.test'], MESSAGE);
    await runOnceVia({ host: '0.0.0.0', port: f.mx.port, credentials: null, tls: 'may', trustedCas: null });
    const [recipient] = await recipientsOf(id);
    assert.equal(recipient?.state, 'deferred');
    assert.equal(recipient?.lastReply?.enhanced, '4.4.4');
    assert.match(String(recipient?.lastReply?.text), /unspecified address/);
  });

  test('a relay host name without addresses defers (4.4.3), never bounces', async () => {
    const id = await f.enqueue('app@shop.example', ['h@one.test'], MESSAGE);
    await runOnceVia({ host: 'missing.relay.test', port: f.mx.port, credentials: null, tls: 'may', trustedCas: null });
    const [recipient] = await recipientsOf(id);
    assert.equal(recipient?.state, 'deferred');
    assert.equal(recipient?.lastReply?.enhanced, '4.4.3');
    assert.equal(server('realMx').sessions, 0);
  });
});
