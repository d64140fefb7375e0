import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { recordHeader } from '../../src/spool/batch-file.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { FakeMx } from '../helpers/mx-server.js';
import type { LogLine } from '../helpers/log-capture.js';
import { readSpooled } from '../helpers/spool-reader.js';

const MESSAGE = 'From: news@shop.example\nTo: someone\nSubject: Hello\nX-Acelle-Message-Id: abc-123\n\nBody line\n.\nafter a lone dot\n';

/** The MXes, in order, at 127.0.0.2 … on one port. */
const MX = { ok: 0, dead: 1, greylist: 2, reject: 3, brokenTls: 4, noUtf8: 5, plain: 6 } as const;

describe('mta-queue delivery', () => {
  let f: DeliveryFixture;
  const mx = (name: keyof typeof MX): FakeMx => f.mx.mxes[MX[name]]!;
  const logFor = (queueId: string, event?: string): LogLine[] => f.logs.lines().filter((line) => line.queueId === queueId && (!event || line.event === event));

  before(async () => {
    f = await startDeliveryFixture(
      [
        { name: 'mx.ok.test' },
        { dead: true },
        { rcpt: [{ code: 451, message: 'Greylisted, try again later', times: 1 }] },
        { rcpt: [{ code: 550, message: 'No such user here' }] },
        { tls: 'broken' },
        { smtpUtf8: false },
        { tls: 'none' },
      ],
      (hosts) => ({
        'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'mx.ok.test': { a: [hosts[MX.ok]!] },
        'shop.example': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'fallback.test': { mx: [{ preference: 10, exchange: 'mx.dead.test' }, { preference: 20, exchange: 'mx.ok.test' }] },
        'mx.dead.test': { a: [hosts[MX.dead]!] },
        'aonly.test': { a: [hosts[MX.ok]!] },
        'nullmx.test': { mx: [{ preference: 0, exchange: '.' }] },
        'servfail.test': { rcode: 'SERVFAIL' },
        'loop.test': { cname: 'loop2.test' },
        'loop2.test': { cname: 'loop.test' },
        'alias.test': { cname: 'aonly.test' },
        'dangling.test': { cname: 'nomail.test' },
        'nomail.test': { txt: ['v=spf1 -all'] },
        'greylist.test': { mx: [{ preference: 5, exchange: 'mx.greylist.test' }] },
        'mx.greylist.test': { a: [hosts[MX.greylist]!] },
        'reject.test': { mx: [{ preference: 5, exchange: 'mx.reject.test' }] },
        'mx.reject.test': { a: [hosts[MX.reject]!] },
        'brokentls.test': { a: [hosts[MX.brokenTls]!] },
        'noutf8.test': { a: [hosts[MX.noUtf8]!] },
        'plain.test': { a: [hosts[MX.plain]!] },
      }),
    );
  });
  after(() => f.close());

  test('delivers over STARTTLS with the body byte for byte and leaves nothing in the spool', async () => {
    const id = await f.enqueue('news@shop.example', ['alice@ok.test'], MESSAGE);
    const spooled = (await readSpooled(f.layout.root, id)).message;
    await f.runOnce();
    const [received] = mx('ok').messages.filter((m) => m.to.includes('alice@ok.test'));
    assert.ok(received, 'the MX got the message');
    assert.deepEqual(received.raw, spooled, 'body intact (dot-stuffing undone by the MX)');
    assert.equal(received.from, 'news@shop.example');
    assert.equal(received.ehloName, 'relay.test');
    assert.match(received.tls!.version, /^TLSv1\.[23]$/);
    const [line] = logFor(id, 'delivered');
    assert.equal(line?.mx, 'mx.ok.test');
    assert.equal(line?.code, 250);
    assert.deepEqual((line?.tls as { verified: boolean }).verified, false, 'self-signed: encrypted but not verified');
    assert.ok(logFor(id, 'completed').length === 1);
    assert.deepEqual([...(await f.files('incoming')), ...(await f.files('deferred')), ...(await f.files('data'))], []);
  });

  test('the first MX dead: the next MX by preference takes it', async () => {
    const id = await f.enqueue('news@shop.example', ['bob@fallback.test'], MESSAGE);
    await f.runOnce();
    assert.ok(mx('ok').messages.some((m) => m.to.includes('bob@fallback.test')));
    assert.equal(logFor(id, 'delivered')[0]?.mx, 'mx.ok.test');
  });

  test('no MX record: the A record is the implicit MX', async () => {
    const id = await f.enqueue('news@shop.example', ['carol@aonly.test'], MESSAGE);
    await f.runOnce();
    assert.ok(mx('ok').messages.some((m) => m.to.includes('carol@aonly.test')));
    assert.equal(logFor(id, 'delivered')[0]?.mx, 'aonly.test');
  });

  test('each DNS failure is classified: null MX and NXDOMAIN bounce, SERVFAIL defers', async () => {
    const id = await f.enqueue('', ['a@nullmx.test', 'b@nxdomain.test', 'c@servfail.test'], MESSAGE);
    await f.runOnce();
    const bounced = logFor(id, 'bounced');
    const byDomain = Object.fromEntries(bounced.map((line) => [line.domain, line.enhanced]));
    assert.deepEqual(byDomain, { 'nullmx.test': '5.1.10', 'nxdomain.test': '5.1.2' });
    const [deferred] = logFor(id, 'deferred');
    assert.equal(deferred?.domain, 'servfail.test');
    assert.match(String(deferred?.enhanced), /^4\./);
    assert.equal((await f.files('deferred')).filter((name) => name.includes(id)).length, 1, 'still queued for the deferred recipient');
  });

  test('a domain whose CNAME loops defers (4.4.3, a DNS failure); an alias that ends in no records still bounces', async () => {
    const id = await f.enqueue('news@shop.example', ['a@loop.test', 'b@alias.test', 'c@dangling.test'], MESSAGE);
    await f.runOnce();
    const [deferred] = logFor(id, 'deferred');
    assert.deepEqual([deferred?.domain, deferred?.enhanced, deferred?.reply], ['loop.test', '4.4.3', 'CNAME loop: loop.test → loop2.test → loop.test']);
    assert.ok(mx('ok').messages.some((m) => m.to.includes('b@alias.test')), 'a working alias delivers');
    assert.deepEqual(logFor(id, 'bounced').map((line) => [line.domain, line.enhanced]), [['dangling.test', '5.1.2']]);
  });

  test('a TLS handshake that fails is retried once in clear and delivered', async () => {
    const id = await f.enqueue('news@shop.example', ['dan@brokentls.test'], MESSAGE);
    await f.runOnce();
    const [received] = mx('brokenTls').messages;
    assert.ok(received, 'delivered');
    assert.equal(received.tls, null);
    assert.equal(logFor(id, 'delivered')[0]?.tls, null);
  });

  test('an MX without STARTTLS still gets the mail in clear', async () => {
    await f.enqueue('news@shop.example', ['erin@plain.test'], MESSAGE);
    await f.runOnce();
    assert.equal(mx('plain').messages[0]?.tls, null);
  });

  test('550: bounced at once with one DSN to the sender that mailparser reads back, headers included', async () => {
    const id = await f.enqueue('news@shop.example', ['ghost@reject.test'], MESSAGE);
    await f.runOnce();
    assert.equal(logFor(id, 'bounced')[0]?.code, 550);
    const dsn = mx('ok').messages.find((m) => m.from === '' && m.to.includes('news@shop.example') && m.raw.includes(id));
    assert.ok(dsn, 'the DSN was delivered to the sender, from <>');
    const parsed = await simpleParser(dsn.raw);
    assert.match(String(parsed.headers.get('content-type') && (parsed.headers.get('content-type') as { value: string }).value), /multipart\/report/);
    assert.match(parsed.from!.text, /MAILER-DAEMON@relay\.test/);
    assert.match(parsed.text ?? '', /ghost@reject\.test/);
    const raw = dsn.raw.toString();
    assert.match(raw, /Final-Recipient: rfc822; ?ghost@reject\.test/i);
    assert.match(raw, /Status: 5\.1\.1/);
    assert.match(raw, /X-Acelle-Message-Id: abc-123/);
  });

  test('a message from <> is never bounced', async () => {
    const id = await f.enqueue('', ['ghost2@reject.test'], MESSAGE);
    const before = mx('ok').messages.length;
    await f.runOnce();
    assert.equal(logFor(id, 'bounced').length, 1);
    assert.equal(logFor(id, 'bounce-suppressed').length, 1);
    assert.equal(mx('ok').messages.length, before, 'no DSN sent anywhere');
    assert.deepEqual(await f.files('incoming'), []);
  });

  test('451 defers, and the next attempt after the retry wait delivers', async () => {
    const id = await f.enqueue('news@shop.example', ['grey@greylist.test'], MESSAGE);
    await f.runOnce();
    assert.equal(logFor(id, 'deferred')[0]?.code, 451);
    assert.equal(mx('greylist').messages.length, 0);
    await f.runOnce();
    assert.equal(mx('greylist').messages.length, 0, 'not due yet: nothing tried');
    f.clock.advance(61_000);
    await f.runOnce();
    assert.equal(mx('greylist').messages.length, 1);
    const [delivered] = logFor(id, 'delivered');
    assert.equal(delivered?.attempt, 2);
  });

  test('mixed recipients on three domains: one transaction per domain, each recipient once in its own final state', async () => {
    const okBefore = mx('ok').messages.length;
    const id = await f.enqueue('news@shop.example', ['m1@ok.test', 'm2@ok.test', 'm3@reject.test', 'm4@greylist.test'], MESSAGE);
    await f.runOnce();
    f.clock.advance(61_000);
    await f.runOnce();
    const okMessages = mx('ok').messages.slice(okBefore).filter((m) => m.from === 'news@shop.example');
    assert.equal(okMessages.length, 1, 'one transaction for both ok.test recipients');
    assert.deepEqual(okMessages[0]!.to.sort(), ['m1@ok.test', 'm2@ok.test']);
    assert.equal(mx('greylist').messages.filter((m) => m.to.includes('m4@greylist.test')).length, 1);
    const states = f.logs.lines().filter((line) => line.queueId === id && Array.isArray(line.recipients));
    const finals = states.flatMap((line) => (line.event === 'deferred' ? [] : (line.recipients as string[]).map((r) => `${r}:${line.event}`)));
    assert.deepEqual(finals.sort(), ['m1@ok.test:delivered', 'm2@ok.test:delivered', 'm3@reject.test:bounced', 'm4@greylist.test:delivered']);
    const dsns = mx('ok').messages.filter((m) => m.from === '' && m.raw.includes(id));
    assert.equal(dsns.length, 1, 'one DSN naming the bounced recipient only');
    assert.ok(dsns[0]!.raw.includes('m3@reject.test') && !dsns[0]!.raw.includes('Final-Recipient: rfc822; m1@ok.test'));
  });

  test('transient failures until the queue lifetime ends: expired, with a DSN', async () => {
    const id = await f.enqueue('news@shop.example', ['late@servfail.test'], MESSAGE);
    for (let round = 0; round < 20 && !logFor(id, 'expired').length; round++) {
      await f.runOnce();
      f.clock.advance(10 * 60_000);
    }
    const [expired] = logFor(id, 'expired');
    assert.ok(expired, 'expired after the lifetime');
    assert.ok(logFor(id, 'deferred').length >= 2, 'deferred before that');
    await f.runOnce();
    const dsn = mx('ok').messages.find((m) => m.from === '' && m.raw.includes(id));
    assert.ok(dsn, 'DSN delivered');
    assert.match(dsn.raw.toString(), /late@servfail\.test/);
  });

  test('SMTPUTF8: refused with 5.6.7 by an MX that does not offer it, delivered by one that does', async () => {
    const id = await f.enqueue('news@shop.example', ['j\u00f6rg@noutf8.test', 'j\u00f6rg@ok.test'], MESSAGE, { smtpUtf8: true });
    await f.runOnce();
    assert.equal(mx('noUtf8').messages.length, 0);
    const bounced = logFor(id, 'bounced')[0];
    assert.equal(bounced?.enhanced, '5.6.7');
    const received = mx('ok').messages.find((m) => m.to.includes('j\u00f6rg@ok.test'));
    assert.ok(received?.smtpUtf8, 'sent with SMTPUTF8');
  });

  test('a corrupt entry is moved to corrupt/ with a log line and the rest still flows', async () => {
    const broken = '0mwxf0000000000aaaaa';
    const truncated = '0mwxf0000000000bbbbb';
    await writeFile(path.join(f.layout.dir('incoming'), `${broken}.json`), '{ not json');
    await writeFile(path.join(f.layout.dir('incoming'), 'stray.txt'), 'junk');
    // A batch whose record claims more bytes than the file has: nothing in it can be trusted.
    await writeFile(path.join(f.layout.dir('incoming'), `${truncated}.batch`), Buffer.concat([recordHeader(5000, 300), Buffer.from('Subject: cut short\r\n')]));
    const good = await f.enqueue('news@shop.example', ['after@ok.test'], MESSAGE);
    await f.runOnce();
    assert.deepEqual(await f.files('corrupt'), [`${broken}.json`, `${truncated}.batch`, 'stray.txt']);
    assert.ok(f.logs.events('corrupt').some((line) => line.queueId === broken));
    assert.match(String(f.logs.events('corrupt').find((line) => line.queueId === truncated)?.reason), /runs past the end/);
    assert.ok(f.logs.events('corrupt').some((line) => line.file === 'incoming/stray.txt'));
    assert.equal(logFor(good, 'delivered').length, 1);
  });
});
