import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newRecipient, type Envelope, type RecipientRecord } from '../../src/spool/envelope.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { FakeMx } from '../helpers/mx-server.js';
import { readSpooled } from '../helpers/spool-reader.js';

/** The MXes, in order, at 127.0.0.2 … on one port. */
const MX = { ok: 0, small: 1, noDsn: 2, reject: 3, refuses: 4, refusesToo: 5, second: 6 } as const;
const SMALL = 10_000;

/**
 * What goes on MAIL and RCPT (RFC 6531 SMTPUTF8, RFC 1870 SIZE, RFC 3461 DSN), what NOTIFY makes of our own
 * DSNs, and a 5xx greeting (Postfix smtp_skip_5xx_greeting): observed at real loopback MXes.
 */
describe('SMTP extensions on delivery', () => {
  let f: DeliveryFixture;
  const mx = (name: keyof typeof MX): FakeMx => f.mx.mxes[MX[name]]!;
  const logFor = (queueId: string, event: string) => f.logs.lines().filter((line) => line.queueId === queueId && line.event === event);
  const dsnFor = (queueId: string) => mx('ok').messages.find((m) => m.from === '' && m.raw.includes(queueId));

  before(async () => {
    f = await startDeliveryFixture(
      [
        { name: 'mx.ok.test' },
        { name: 'mx.small.test', size: SMALL },
        { name: 'mx.nodsn.test', dsn: false },
        { rcpt: [{ code: 550, message: 'No such user here' }] },
        { greeting: { code: 554, message: 'go away' } },
        { greeting: { code: 554, message: 'not today' } },
        { name: 'mx.second.test' },
      ],
      (hosts) => ({
        'ok.test': { a: [hosts[MX.ok]!] },
        'shop.example': { a: [hosts[MX.ok]!] },
        'small.test': { a: [hosts[MX.small]!] },
        'nodsn.test': { a: [hosts[MX.noDsn]!] },
        'reject.test': { a: [hosts[MX.reject]!] },
        'fallback.test': { mx: [{ preference: 10, exchange: 'mx.refuses.test' }, { preference: 20, exchange: 'mx.second.test' }] },
        'refusing.test': { mx: [{ preference: 10, exchange: 'mx.refuses.test' }, { preference: 20, exchange: 'mx.refuses-too.test' }] },
        'mx.refuses.test': { a: [hosts[MX.refuses]!] },
        'mx.refuses-too.test': { a: [hosts[MX.refusesToo]!] },
        'mx.second.test': { a: [hosts[MX.second]!] },
      }),
    );
  });
  after(() => f.close());

  async function enqueue(recipients: RecipientRecord[], message: string, extra: Partial<Envelope> = {}): Promise<string> {
    const id = newQueueId(f.clock.now());
    const draft = new MessageWriter(f.layout).create(id);
    await draft.append([Buffer.from(message.replace(/\r?\n/g, '\r\n'))]);
    const now = f.clock.now();
    await draft.commit({
      version: 1, sender: 'news@shop.example', recipients, user: 't', client: { address: '127.0.0.1', hostname: null, helo: 'x', tls: null },
      arrivedAt: now, smtpUtf8: false, bodyType: '7bit', nextAttemptAt: now, bounceOf: null, ...extra,
    });
    return id;
  }
  const rcpt = (address: string, extra: Partial<RecipientRecord> = {}): RecipientRecord => ({ ...newRecipient(address), ...extra });

  test('SMTPUTF8: a message submitted with SMTPUTF8 and ASCII addresses goes out with the parameter (RFC 6531 §3.4)', async () => {
    await enqueue([rcpt('utf8@ok.test')], 'Subject: \u00e7a marche\nFrom: J\u00fcrgen <news@shop.example>\n\nbody\n', { smtpUtf8: true, bodyType: '8bitmime' });
    await f.runOnce();
    const received = mx('ok').messages.find((m) => m.to.includes('utf8@ok.test'));
    assert.ok(received);
    assert.equal(received.mailParams.SMTPUTF8, true);
    assert.equal(received.smtpUtf8, true);
  });

  test('SIZE: the message size goes on MAIL when the MX offers SIZE', async () => {
    const id = await enqueue([rcpt('fits@small.test')], 'Subject: small\n\nfits\n');
    const { message } = await readSpooled(f.layout.root, id);
    await f.runOnce();
    const received = mx('small').messages.find((m) => m.to.includes('fits@small.test'));
    assert.equal(received?.mailParams.SIZE, String(message.length));
  });

  test('SIZE: larger than the MX announced: bounced at once with 5.3.4, no MAIL and no body sent', async () => {
    const id = await enqueue([rcpt('big@small.test')], `Subject: big\n\n${'x'.repeat(70)}\n`.repeat(200));
    await f.runOnce();
    assert.deepEqual(mx('small').mailAttempts.filter((mail) => mail.params.SIZE && Number(mail.params.SIZE) > SMALL), [], 'no MAIL for it');
    assert.equal(mx('small').messages.some((m) => m.to.includes('big@small.test')), false);
    const [bounced] = logFor(id, 'bounced');
    assert.deepEqual([bounced?.code, bounced?.enhanced], [null, '5.3.4']);
    assert.match(String(bounced?.reply), /at most 10000/);
    assert.match(dsnFor(id)?.raw.toString() ?? '', /Status: 5\.3\.4/);
  });

  test('DSN: RET, ENVID, NOTIFY and ORCPT go on to an MX that offers DSN, and we send no success DSN ourselves', async () => {
    const id = await enqueue([rcpt('tracked@ok.test', { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;orig+tag@shop.example' }), rcpt('plain@ok.test')], 'Subject: dsn\n\nbody\n', {
      dsn: { ret: 'HDRS', envid: 'ENV-42' },
    });
    await f.runOnce();
    const received = mx('ok').messages.find((m) => m.to.includes('tracked@ok.test'));
    assert.ok(received);
    assert.equal(received.mailParams.RET, 'HDRS');
    assert.equal(received.mailParams.ENVID, 'ENV-42');
    assert.equal(received.rcptParams['tracked@ok.test']?.NOTIFY, 'SUCCESS,FAILURE');
    assert.match(String(received.rcptParams['tracked@ok.test']?.ORCPT), /^rfc822;orig(\+2B|\+)tag@shop\.example$/);
    assert.deepEqual(received.rcptParams['plain@ok.test'], {}, 'a recipient without DSN parameters gets none');
    assert.equal(dsnFor(id), undefined, 'the next hop reports success (RFC 3461 §5.2.1)');
  });

  test('NOTIFY=SUCCESS to an MX without DSN: a success DSN with Action: relayed, ENVID and ORCPT', async () => {
    const id = await enqueue([rcpt('watched@nodsn.test', { notify: ['SUCCESS'], orcpt: 'rfc822;watched@nodsn.test' })], 'Subject: relayed\n\nbody\n', { dsn: { ret: null, envid: 'ENV-43' } });
    await f.runOnce();
    const received = mx('noDsn').messages.find((m) => m.to.includes('watched@nodsn.test'));
    assert.ok(received);
    assert.deepEqual(received.rcptParams['watched@nodsn.test'], {}, 'no NOTIFY to an MX that did not offer DSN');
    const dsn = dsnFor(id)?.raw.toString() ?? '';
    assert.match(dsn, /Subject: Successful Mail Delivery Report/);
    assert.match(dsn, /Original-Envelope-Id: ENV-43/);
    assert.match(dsn, /Original-Recipient: rfc822; watched@nodsn\.test\r\nFinal-Recipient: rfc822; watched@nodsn\.test\r\nAction: relayed\r\nStatus: 2\.6\.0\r\n/, 'the MX\'s own 2.x.x (smtp-server says 250 2.6.0)');
  });

  test('NOTIFY=NEVER and a 550: bounced, and no DSN queued', async () => {
    const id = await enqueue([rcpt('ghost@reject.test', { notify: 'NEVER' })], 'Subject: never\n\nbody\n');
    await f.runOnce();
    assert.equal(logFor(id, 'bounced')[0]?.code, 550);
    assert.equal(f.logs.lines().filter((l) => l.event === 'bounce-queued' && l.bounceOf === id).length, 0);
    assert.equal(logFor(id, 'bounce-not-requested').length, 1);
    assert.equal(dsnFor(id), undefined);
    assert.deepEqual([...(await f.files('incoming')), ...(await f.files('deferred'))], []);
  });

  test('NOTIFY without FAILURE: no failure DSN either; the default (no NOTIFY) still gets one', async () => {
    const quiet = await enqueue([rcpt('ghost2@reject.test', { notify: ['DELAY'] })], 'Subject: delay only\n\nbody\n');
    const loud = await enqueue([rcpt('ghost3@reject.test')], 'Subject: default\n\nbody\n');
    await f.runOnce();
    assert.equal(dsnFor(quiet), undefined);
    assert.ok(dsnFor(loud));
  });

  test('5xx greeting: the next MX takes the mail (Postfix smtp_skip_5xx_greeting)', async () => {
    const id = await enqueue([rcpt('bob@fallback.test')], 'Subject: fallback\n\nbody\n');
    await f.runOnce();
    assert.ok(mx('second').messages.some((m) => m.to.includes('bob@fallback.test')));
    assert.equal(logFor(id, 'delivered')[0]?.mx, 'mx.second.test');
  });

  test('5xx greeting from every MX: deferred with a 4.x.x status and the remote text, not bounced', async () => {
    const id = await enqueue([rcpt('bob@refusing.test')], 'Subject: refused\n\nbody\n');
    await f.runOnce();
    assert.equal(logFor(id, 'bounced').length, 0);
    const [deferred] = logFor(id, 'deferred');
    assert.deepEqual([deferred?.code, deferred?.enhanced, deferred?.reply], [554, '4.0.0', 'not today']);
    assert.equal(dsnFor(id), undefined);
    assert.equal((await f.files('deferred')).filter((name) => name.includes(id)).length, 1);
  });
});
