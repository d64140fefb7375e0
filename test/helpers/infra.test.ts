import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { promises as dns } from 'node:dns';
import { after, before, describe, test } from 'node:test';
import dnsPacket from 'dns-packet';
import nodemailer, { type SendMailOptions } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import { startDnsServer, type DnsServer, type DnsZone } from './dns-server.js';
import { startMx, startMxGroup, type FakeMx, type MxGroup } from './mx-server.js';
import { RawSmtpClient } from './raw-smtp.js';

// Self-test of the delivery test infrastructure over real loopback sockets: what node's resolver and nodemailer
// make of each scripted DNS answer and MX behaviour. The error codes pinned here are the ones mta-queue branches on.

const ZONE: DnsZone = {
  'a.test': { mx: [{ preference: 10, exchange: 'mx1.a.test' }, { preference: 20, exchange: 'mx2.a.test' }] },
  'mx1.a.test': { a: ['127.0.0.2'], aaaa: ['::1'] },
  'mx2.a.test': { a: ['127.0.0.3'] },
  'null.test': { mx: [{ preference: 0, exchange: '.' }] },
  'servfail.test': { rcode: 'SERVFAIL' },
  'refused.test': { rcode: 'REFUSED' },
  'silent.test': { drop: true },
  // 100 A records are 1.6 kB, over the 1232 bytes c-ares offers over UDP: truncated, then asked over TCP.
  'big.test': { a: Array.from({ length: 100 }, (_, i) => `127.0.1.${i}`) },
  'alias.test': { cname: 'mx2.a.test' },
  'loop.test': { cname: 'loop2.test' },
  'loop2.test': { cname: 'loop.test' },
};

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: NodeJS.ErrnoException) => (assert.equal(error.code, code), true));
}

describe('dns-server', () => {
  let server: DnsServer;
  let resolver: dns.Resolver;
  before(async () => {
    server = await startDnsServer(ZONE);
    resolver = new dns.Resolver({ timeout: 300, tries: 1 });
    resolver.setServers([server.address]);
  });
  after(() => server.close());

  test('MX, A with its TTL, AAAA and a null MX resolve; names are case-insensitive', async () => {
    assert.deepEqual(await resolver.resolveMx('A.Test.'), [{ exchange: 'mx1.a.test', priority: 10 }, { exchange: 'mx2.a.test', priority: 20 }]);
    assert.deepEqual(await resolver.resolve4('mx1.a.test', { ttl: true }), [{ address: '127.0.0.2', ttl: 300 }]);
    assert.deepEqual(await resolver.resolve6('mx1.a.test'), ['::1']);
    assert.deepEqual(await resolver.resolveMx('null.test'), [{ exchange: '', priority: 0 }], 'RFC 7505 null MX: the root name comes back empty');
  });

  test('each failure has its own node error code', async () => {
    await rejectsWithCode(resolver.resolveMx('absent.test'), 'ENOTFOUND');
    await rejectsWithCode(resolver.resolveMx('mx2.a.test'), 'ENODATA');
    await rejectsWithCode(resolver.resolve6('mx2.a.test'), 'ENODATA');
    await rejectsWithCode(resolver.resolveMx('servfail.test'), 'ESERVFAIL');
    await rejectsWithCode(resolver.resolveMx('refused.test'), 'EREFUSED');
    const started = Date.now();
    await rejectsWithCode(resolver.resolveMx('silent.test'), 'ETIMEOUT');
    assert.ok(Date.now() - started < 2_000, 'bounded by the resolver timeout');
  });

  test('a CNAME is followed within the zone; a CNAME loop answers no records and no error', async () => {
    assert.deepEqual(await resolver.resolve4('alias.test'), ['127.0.0.3']);
    assert.deepEqual(await resolver.resolveMx('alias.test'), [], 'the chain ends without MX: an empty answer, not ENODATA');
    assert.deepEqual(await resolver.resolveCname('alias.test'), ['mx2.a.test']);
    for (const lookup of ['resolveMx', 'resolve4', 'resolve6'] as const) assert.deepEqual(await resolver[lookup]('loop.test'), [], lookup);
    assert.deepEqual(await resolver.resolveCname('loop2.test'), ['loop.test']);
  });

  test('setZone applies to the next query: node does not cache answers', async () => {
    server.setZone('late.test', { mx: [{ preference: 5, exchange: 'mx1.a.test' }] });
    assert.deepEqual(await resolver.resolveMx('late.test'), [{ exchange: 'mx1.a.test', priority: 5 }]);
    server.setZone('late.test', undefined);
    await rejectsWithCode(resolver.resolveMx('late.test'), 'ENOTFOUND');
    assert.equal(server.queries.filter((query) => query.name === 'late.test').length, 2);
  });

  test('an answer too big for UDP is truncated and asked again over TCP', async () => {
    assert.equal((await resolver.resolve4('big.test')).length, 100);
    assert.deepEqual(server.queries.filter((query) => query.name === 'big.test').map((query) => query.transport), ['udp', 'tcp']);
  });

  test('answers are authoritative and echo the question', async () => {
    const socket = dgram.createSocket('udp4');
    try {
      socket.send(dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'MX', name: 'A.test' }] }), server.port, server.host);
      const [message] = (await once(socket, 'message', { signal: AbortSignal.timeout(2_000) })) as [Buffer];
      const reply = dnsPacket.decode(message);
      assert.equal(reply.id, 4242);
      assert.ok(reply.flag_qr && reply.flag_aa && reply.flag_rd && !reply.flag_ra);
      assert.deepEqual(reply.questions, [{ type: 'MX', name: 'A.test', class: 'IN' }]);
      assert.deepEqual(reply.answers?.map((answer) => answer.type === 'MX' && [answer.name, answer.ttl]), [['A.test', 300], ['A.test', 300]]);
    } finally {
      socket.close();
    }
  });
});

const MAIL = { from: 'news@shop.example', subject: 'Hi', text: 'Hello\n' };

/** nodemailer straight to a fake MX, as an MTA would: no AUTH, STARTTLS when offered, any certificate. */
function sendTo(mx: Pick<FakeMx, 'host' | 'port'>, message: SendMailOptions, options: SMTPTransport.Options = {}): Promise<SMTPTransport.SentMessageInfo> {
  const transport = nodemailer.createTransport({
    host: mx.host,
    port: mx.port,
    name: 'relay.test',
    tls: { rejectUnauthorized: false },
    connectionTimeout: 2_000,
    greetingTimeout: 2_000,
    socketTimeout: 5_000,
    ...options,
  });
  return transport.sendMail({ ...MAIL, ...message }).finally(() => transport.close());
}

describe('mx-server', () => {
  let group: MxGroup;
  let [tls, plain, dead, refusing, broken, noUtf8, rejecting]: FakeMx[] = [];
  before(async () => {
    group = await startMxGroup([
      {},
      { tls: 'none' },
      { dead: true },
      { greeting: { code: 421, message: 'mx.test too busy, try later' } },
      { tls: 'broken' },
      { smtpUtf8: false },
      { rcpt: [{ code: 451, message: 'Greylisted', recipients: ['grey@b.test'], times: 1 }, { code: 550, message: 'No such user', recipients: ['gone@b.test'] }], data: { code: 554, message: 'Spam' } },
    ]);
    [tls, plain, dead, refusing, broken, noUtf8, rejecting] = group.mxes;
  });
  after(() => group.close());

  test('a group shares one port over consecutive loopback addresses', () => {
    assert.deepEqual(group.mxes.map((mx) => `${mx.host}:${mx.port}`), [2, 3, 4, 5, 6, 7, 8].map((d) => `127.0.0.${d}:${group.port}`));
  });

  test('delivery over STARTTLS records envelope, TLS, EHLO name and the raw message', async () => {
    const info = await sendTo(tls!, { to: ['alice@b.test', 'bob@b.test'] });
    assert.match(info.response, /^250 2\.6\.0 OK: queued as 1$/);
    const [mail] = await tls!.waitForMessages(1, 2_000);
    assert.equal(mail!.from, 'news@shop.example');
    assert.deepEqual(mail!.to, ['alice@b.test', 'bob@b.test']);
    assert.match(mail!.tls!.version, /^TLSv1\.[23]$/);
    assert.ok(mail!.tls!.cipher);
    assert.equal(mail!.ehloName, 'relay.test');
    assert.equal(mail!.smtpUtf8, false);
    assert.match(mail!.raw.toString(), /\r\nSubject: Hi\r\n[^]*\r\n\r\nHello\r\n$/);
    await assert.rejects(tls!.waitForMessages(2, 50), /1 of 2 messages within 50 ms/);
  });

  test('SMTPUTF8 is recorded when used, and a non-UTF8 MX makes nodemailer refuse the address', async () => {
    await sendTo(tls!, { to: 'jörg@b.test' });
    assert.equal(tls!.messages.at(-1)!.smtpUtf8, true);
    // nodemailer sends a non-ASCII address without SMTPUTF8 to an MX that does not offer it; the fake MX refuses.
    await assert.rejects(sendTo(noUtf8!, { to: 'jörg@b.test' }), { code: 'EENVELOPE', responseCode: 553 });
    assert.deepEqual(noUtf8!.rcptAttempts, [{ address: 'jörg@b.test', code: 553 }]);
    const { client } = await RawSmtpClient.connect(noUtf8!.port, { host: noUtf8!.host });
    try {
      assert.doesNotMatch((await client.command('EHLO relay.test')).raw, /SMTPUTF8/);
      assert.equal((await client.command('MAIL FROM:<a@b.test> SMTPUTF8')).raw, '555 5.5.4 SMTPUTF8 not supported');
    } finally {
      client.close();
    }
  });

  test('plain only: no STARTTLS, the message arrives in clear', async () => {
    await sendTo(plain!, { to: 'carol@b.test' });
    assert.equal(plain!.messages[0]!.tls, null);
    await assert.rejects(sendTo(plain!, { to: 'carol@b.test' }, { requireTLS: true }), { code: 'ETLS' });
  });

  test('RCPT rules: 451 for the first attempt then accepted, 550 always, DATA refused with 554', async () => {
    await assert.rejects(sendTo(rejecting!, { to: 'grey@b.test' }), { code: 'EENVELOPE', responseCode: 451, response: '451 4.3.0 Greylisted' });
    await assert.rejects(sendTo(rejecting!, { to: ['grey@b.test', 'gone@b.test'] }), { code: 'EMESSAGE', responseCode: 554, response: '554 5.6.0 Spam' });
    assert.deepEqual(rejecting!.rcptAttempts, [{ address: 'grey@b.test', code: 451 }, { address: 'grey@b.test', code: 250 }, { address: 'gone@b.test', code: 550 }]);
    assert.equal(rejecting!.messages.length, 0);
  });

  test('one recipient refused among several: info.rejected and rejectedErrors carry the 550', async () => {
    const mx = await startMx({ host: '127.0.0.20', behaviour: { rcpt: [{ code: 550, message: 'No such user', recipients: ['gone@b.test'] }] } });
    try {
      const info = await sendTo(mx, { to: ['alice@b.test', 'gone@b.test'] });
      assert.deepEqual([info.accepted, info.rejected], [['alice@b.test'], ['gone@b.test']]);
      const [rejected] = info.rejectedErrors!;
      assert.deepEqual([rejected!.responseCode, rejected!.response, (rejected as { recipient?: string }).recipient], [550, '550 5.1.1 No such user', 'gone@b.test']);
      assert.deepEqual(mx.messages[0]!.to, ['alice@b.test']);
    } finally {
      await mx.close();
    }
  });

  test('421 greeting, dead address, failed TLS handshake', async () => {
    await assert.rejects(sendTo(refusing!, { to: 'x@b.test' }), { code: 'EPROTOCOL', responseCode: 421 });
    assert.equal(refusing!.sessions, 1);
    await assert.rejects(sendTo(dead!, { to: 'x@b.test' }), { code: 'ESOCKET', message: /ECONNREFUSED/ });
    await assert.rejects(sendTo(broken!, { to: 'x@b.test' }), { code: 'ESOCKET', message: /handshake failure/ });
    assert.equal(broken!.errors[0]?.code, 'ERR_SSL_NO_SHARED_CIPHER');
    // The way an opportunistic MTA falls back: a new session that does not try STARTTLS.
    await sendTo(broken!, { to: 'x@b.test' }, { ignoreTLS: true });
    assert.equal(broken!.messages[0]!.tls, null);
  });

  test('a silent MX times the client out and still closes promptly', async () => {
    const mx = await startMx({ host: '127.0.0.21', behaviour: { greeting: 'silent' } });
    await assert.rejects(sendTo(mx, { to: 'x@b.test' }, { greetingTimeout: 200 }), { code: 'ETIMEDOUT' });
    const started = Date.now();
    await mx.close();
    assert.ok(Date.now() - started < 2_000);
  });
});
