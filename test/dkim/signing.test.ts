import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { startDkimSigning } from '../../src/cli/dkim-signing.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { newTestKey, setTestKeyState, signWithDkimpy, verifyWithDkimpy, writeTestKey, type TestKey } from '../helpers/dkim-keys.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { ReceivedMail } from '../helpers/mx-server.js';
import { parseScrape } from '../helpers/scrape.js';
import { toolAvailable, TOOLS } from '../helpers/external-clients.js';
import { tempDir } from '../helpers/temp.js';

/**
 * Signing through the real path: spool → QueueRunner → signing transport (built by mta-queue's composition code)
 * → MX transport → loopback MX; every signature is checked by dkimpy, a verifier we did not write.
 */

const crlf = (text: string) => Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8');

/** A bulk-mail message as Acelle sends it: RFC 8058 headers, Feedback-ID, a raw UTF-8 Subject (bytes C3 A0 in "à"), odd spacing. */
function newsletter(from: string, tag: string): string {
  return [
    `From: "Shop News" <${from}>`,
    'To: reader@ok.test',
    `Subject: Voilà  les\tsoldes ${tag}`,
    '  (suite)',
    'Date: Tue, 01 Dec 2026 22:00:00 +0000',
    `Message-ID: <${tag}@shop.example>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    'List-Unsubscribe: <https://shop.example/u/1>, <mailto:u@shop.example>',
    'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
    'List-Id: Shop News <news.shop.example>',
    'Feedback-ID: 1:news:shop:acelle',
    'X-Seq: ' + tag,
    '',
    'Bonjour,   voilà   nos soldes.   ',
    '\tLigne avec tabulation\t',
    '',
    '',
  ].join('\n');
}

/** The DKIM-Signature fields we put before the message, and what follows them. */
function splitOurSignatures(raw: Buffer): { head: string; rest: Buffer } {
  const text = raw.toString('latin1');
  const match = /^(?:DKIM-Signature:[^\r]*\r\n(?:[ \t][^\r]*\r\n)*)*/.exec(text)!;
  return { head: match[0], rest: raw.subarray(match[0].length) };
}

describe('DKIM signing at delivery (verified by dkimpy)', () => {
  let f: DeliveryFixture;
  let keys: Record<string, TestKey>;
  const all = () => Object.values(keys);

  before(async () => {
    f = await startDeliveryFixture(
      [
        { name: 'mx.ok.test', rcpt: [{ code: 451, message: 'Try later', recipients: ['rotate@ok.test'], times: 1 }, { code: 451, message: 'Try later', recipients: ['rehash@ok.test'], times: 1 }, { code: 550, message: 'No such user', recipients: ['nobody@ok.test'] }] },
        { name: 'mx.seven.test', eightBitMime: false },
      ],
      (hosts) => ({
        'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'other.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'sender.example': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'mx.ok.test': { a: [hosts[0]!] },
        'seven.test': { mx: [{ preference: 10, exchange: 'mx.seven.test' }] },
        'mx.seven.test': { a: [hosts[1]!] },
      }),
    );
    keys = {
      rsa: await newTestKey('rsa.example', 'r2026', 'rsa'),
      ed: await newTestKey('ed.example', 'e2026', 'ed25519'),
      bothRsa: await newTestKey('both.example', 'br', 'rsa'),
      bothEd: await newTestKey('both.example', 'be', 'ed25519'),
      client: await newTestKey('esp.example', 'acelle', 'rsa'),
      relay: await newTestKey('relay.example', 'dsn', 'rsa'),
      old: await newTestKey('rotate.example', 'old', 'rsa'),
      new: await newTestKey('rotate.example', 'new', 'rsa'),
    };
  });
  after(() => f.close());

  /** A key directory with `active` keys, and the composition root's signing around the fixture's MX transport. */
  async function signing(active: TestKey[], overrides: { hostname?: string } = {}) {
    const { dir, cleanup } = await tempDir('mta-dkim-');
    const dkimDir = path.join(dir, 'dkim');
    for (const key of active) await writeTestKey(dkimDir, key, 'active');
    const config = { ...f.config, ...overrides, dkimDir, dkimDefaultDomain: null };
    const registry = new Registry();
    const dkim = await startDkimSigning(config, f.transport, { logger: f.logs.logger, clock: f.clock, registry });
    const runOnce = async () => {
      const runner = new QueueRunner(config, f.deps({ transport: dkim.transport }));
      await runner.start({ watch: false });
      await runner.drain();
      await runner.close();
    };
    const count = async (result: 'signed' | 'unsigned') => parseScrape(await registry.metrics()).value('mta_queue_dkim_signed_total', { result });
    return { dkimDir, dkim, runOnce, count, cleanup };
  }

  const received = (seq: string): ReceivedMail[] => f.mx.mxes[0]!.messages.filter((m) => m.raw.includes(`X-Seq: ${seq}\r\n`));

  test('rsa, ed25519 and both: every signature verifies at the MX, and ours is all that was added', async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const s = await signing([keys.rsa!, keys.ed!, keys.bothRsa!, keys.bothEd!]);
    const originals = new Map<string, Buffer>();
    for (const [tag, from] of [['rsa', 'news@rsa.example'], ['ed', 'news@ed.example'], ['both', 'news@both.example']] as const) {
      const text = newsletter(from, `sig-${tag}`);
      originals.set(tag, crlf(text));
      await f.enqueue(from, ['reader@ok.test'], text);
    }
    await s.runOnce();
    const expected = { rsa: [['rsa.example', 'r2026', 'rsa-sha256']], ed: [['ed.example', 'e2026', 'ed25519-sha256']], both: [['both.example', 'br', 'rsa-sha256'], ['both.example', 'be', 'ed25519-sha256']] };
    for (const [tag, signatures] of Object.entries(expected)) {
      const [mail] = received(`sig-${tag}`);
      assert.ok(mail, `sig-${tag} delivered`);
      const results = await verifyWithDkimpy(mail.raw, all());
      assert.deepEqual(results.map((r) => [r.d, r.s, r.a]), signatures);
      for (const result of results) {
        assert.equal(result.ok, true, `${tag}: ${JSON.stringify(result)}`);
        assert.equal(result.h, 'From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:Content-Transfer-Encoding:List-Unsubscribe:List-Unsubscribe-Post:List-Id:Feedback-ID:From');
      }
      const { head, rest } = splitOurSignatures(mail.raw);
      assert.match(head, /\bt=\d{10};/);
      assert.ok(rest.equals(originals.get(tag)!), 'not one byte of the message changed');

      // The test can fail: a body byte or a signed header changed in transit breaks every signature.
      const bodyAltered = Buffer.from(mail.raw.toString('latin1').replace('nos soldes', 'nos Soldes'), 'latin1');
      const headerAltered = Buffer.from(mail.raw.toString('latin1').replace('List-Unsubscribe=One-Click', 'List-Unsubscribe=Two-Click'), 'latin1');
      for (const altered of [bodyAltered, headerAltered]) {
        assert.notDeepEqual(altered, mail.raw);
        for (const result of await verifyWithDkimpy(altered, all())) assert.equal(result.ok, false, `${tag} altered: ${JSON.stringify(result)}`);
      }
    }
    assert.equal(await s.count('signed'), 3);
    await s.cleanup();
  });

  test('a message the client signed itself: its signature and ours both verify', async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const s = await signing([keys.bothRsa!, keys.bothEd!]);
    const original = crlf(newsletter('news@both.example', 'presigned'));
    const presigned = await signWithDkimpy(original, keys.client!, ['From', 'To', 'Subject', 'Date', 'Message-ID', 'List-Unsubscribe', 'List-Unsubscribe-Post']);
    assert.ok((await verifyWithDkimpy(presigned, all()))[0]!.ok, 'the client signature verifies before we touch it');
    await f.enqueue('news@both.example', ['reader@ok.test'], presigned.toString('utf8'));
    await s.runOnce();
    const [mail] = received('presigned');
    const results = await verifyWithDkimpy(mail!.raw, all());
    assert.deepEqual(results.map((r) => [r.d, r.s, r.ok]), [['both.example', 'br', true], ['both.example', 'be', true], ['esp.example', 'acelle', true]]);
    // Ours in front, then the client's message byte for byte (its own DKIM-Signature first).
    const added = mail!.raw.subarray(0, mail!.raw.length - presigned.length).toString('latin1');
    assert.ok(mail!.raw.subarray(added.length).equals(presigned));
    assert.equal(splitOurSignatures(Buffer.from(added, 'latin1')).head, added);
    assert.equal(added.match(/^DKIM-Signature:/gm)!.length, 2);
    await s.cleanup();
  });

  test('no key for the From: domain (nor a parent, nor a default): delivered unsigned, counted, logged at debug', async () => {
    const s = await signing([keys.rsa!]);
    const text = newsletter('news@nokey.test', 'unsigned');
    await f.enqueue('news@nokey.test', ['reader@ok.test'], text);
    await s.runOnce();
    const [mail] = received('unsigned');
    assert.ok(mail!.raw.equals(crlf(text)), 'delivered exactly as queued');
    assert.equal(await s.count('unsigned'), 1);
    assert.equal(await s.count('signed'), 0);
    assert.ok(f.logs.events('dkim-unsigned').some((line) => line.reason === 'no-key' && line.fromDomain === 'nokey.test'));
    await s.cleanup();
  });

  test('a message for two domains is signed once for its attempt, both copies carry the signature', async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const s = await signing([keys.rsa!]);
    await f.enqueue('news@rsa.example', ['reader@ok.test', 'reader@other.test'], newsletter('news@rsa.example', 'two-domains'));
    await s.runOnce();
    const copies = received('two-domains');
    assert.equal(copies.length, 2);
    for (const copy of copies) assert.deepEqual((await verifyWithDkimpy(copy.raw, all())).map((r) => r.ok), [true]);
    assert.equal(await s.count('signed'), 1);
    await s.cleanup();
  });

  test("a DSN we generate is signed with the key of the relay hostname's domain", async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const s = await signing([keys.relay!], { hostname: 'mx1.relay.example' });
    await f.enqueue('app@sender.example', ['nobody@ok.test'], 'From: app@sender.example\nTo: nobody@ok.test\nSubject: bounce me\nX-Seq: dsn-original\n\nbody\n');
    await s.runOnce();
    const dsn = f.mx.mxes[0]!.messages.find((m) => m.from === '' && m.raw.includes('X-Seq: dsn-original'));
    assert.ok(dsn, 'the DSN reached the sender MX');
    assert.match(dsn.raw.toString(), /^From: Mail Delivery System <MAILER-DAEMON@mx1\.relay\.example>/m);
    const results = await verifyWithDkimpy(dsn.raw, all());
    assert.deepEqual(results.map((r) => [r.d, r.s, r.ok]), [['relay.example', 'dsn', true]]);
    await s.cleanup();
  });

  test('a message deferred before a rotation and retried after it is signed with the new key', async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const s = await signing([keys.old!]);
    await f.enqueue('news@rotate.example', ['rotate@ok.test'], newsletter('news@rotate.example', 'rotation'));
    await s.runOnce();
    assert.equal(received('rotation').length, 0, 'deferred by the 451');
    assert.equal((await f.files('deferred')).length, 1);
    // The rotation as the CLI makes it: the new key pending, published, then activated (the old one retiring).
    await writeTestKey(s.dkimDir, keys.new!, 'pending');
    await setTestKeyState(s.dkimDir, keys.new!, 'active');
    await setTestKeyState(s.dkimDir, keys.old!, 'retiring');
    await s.dkim.keyring.load('sighup');
    f.clock.advance(61_000);
    await s.runOnce();
    const [mail] = received('rotation');
    assert.ok(mail, 'delivered at the retry');
    assert.deepEqual((await verifyWithDkimpy(mail.raw, all())).map((r) => [r.s, r.ok]), [['new', true]]);
    await s.cleanup();
  });

  test('to an MX without 8BITMIME: the converted message is what we sign, so our signature verifies where it arrives', async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const s = await signing([keys.rsa!]);
    const text = [
      'From: "Shop News" <news@rsa.example>',
      'To: reader@seven.test',
      'Subject: soldes',
      'Message-ID: <seven@rsa.example>',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      'X-Seq: sig-seven',
      '',
      'Voilà nos soldes : 30 € de remise.',
      '',
    ].join('\n');
    await f.enqueue('news@rsa.example', ['reader@seven.test'], text);
    await s.runOnce();
    const [mail] = f.mx.mxes[1]!.messages.filter((m) => m.raw.includes('X-Seq: sig-seven\r\n'));
    assert.ok(mail, 'delivered, not bounced 5.6.3');
    assert.equal(mail.mailParams.BODY, undefined, 'no BODY=8BITMIME to an MX that did not offer it');
    assert.ok(mail.raw.every((byte) => byte < 0x80), 'nothing 8-bit on the wire');
    const raw = mail.raw.toString('latin1');
    assert.match(raw, /^Content-Transfer-Encoding: quoted-printable\r$/m);
    assert.match(raw, /Voil=C3=A0 nos soldes : 30 =E2=82=AC de remise\./);
    const results = await verifyWithDkimpy(mail.raw, all());
    assert.deepEqual(results.map((r) => [r.d, r.s, r.ok]), [['rsa.example', 'r2026', true]], 'one signature, ours, over what was sent');
    assert.equal(await s.count('signed'), 1);
    await s.cleanup();
  });

  test('the body hash of the first attempt is kept with the deferred envelope and used at the retry, not computed again', async (t) => {
    if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
    const s = await signing([keys.rsa!]);
    await f.enqueue('news@rsa.example', ['rehash@ok.test'], newsletter('news@rsa.example', 'rehash'));
    await s.runOnce();
    const [name] = (await f.files('deferred')).filter((file) => file.endsWith('.json'));
    assert.ok(name, 'deferred by the 451');
    const file = path.join(f.layout.dir('deferred'), name);
    const envelope = JSON.parse(await readFile(file, 'utf8')) as { dkimBodyHash?: string };
    assert.match(envelope.dkimBodyHash ?? '', /^[A-Za-z0-9+/]{43}=$/, 'a sha256 body hash, base64');
    // Replaced by a wrong one: a retry that hashed the body again would still verify; one that trusts it must not.
    const planted = Buffer.alloc(32, 7).toString('base64');
    await writeFile(file, JSON.stringify({ ...envelope, dkimBodyHash: planted }));
    f.clock.advance(61_000);
    await s.runOnce();
    const [mail] = received('rehash');
    assert.ok(mail, 'delivered at the retry');
    assert.match(mail.raw.toString('latin1'), new RegExp(`bh=${planted.replace(/[+/]/g, (c) => `\\${c}`)}`), 'the stored hash is what the signature names');
    assert.deepEqual((await verifyWithDkimpy(mail.raw, all())).map((r) => r.ok), [false]);
    await s.cleanup();
  });
});
