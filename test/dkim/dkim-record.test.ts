import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, test } from 'node:test';
import { judgeDkimRecords } from '../../src/dkim/dns-check.js';
import { dkimRecordName, parseDkimDomain, parseDkimSelector } from '../../src/dkim/dkim-names.js';
import { dkimZoneFileLine, parseDkimTxtRecord, parseTagList, splitTxtRecord } from '../../src/dkim/dkim-record.js';
import { dkimTxtRecord } from '../../src/dkim/key-store.js';
import { ConfigError } from '../../src/shared/errors.js';

const rsa = { type: 'rsa' as const, privateKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey };
const otherRsa = { type: 'rsa' as const, privateKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey };
const ed = { type: 'ed25519' as const, privateKey: generateKeyPairSync('ed25519').privateKey };
const spkiOf = (key: typeof rsa) => createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }).toString('base64');
const pkcs1Of = (key: typeof rsa) => createPublicKey(key.privateKey).export({ format: 'der', type: 'pkcs1' }).toString('base64');

describe('DKIM key records', () => {
  test('rsa: p= is the SubjectPublicKeyInfo, and it verifies what the private key signs', () => {
    const record = dkimTxtRecord(rsa);
    assert.match(record, /^v=DKIM1; k=rsa; p=MIIBIjAN[A-Za-z0-9+/=]+$/);
    const parsed = parseDkimTxtRecord(record);
    assert.ok(parsed.ok);
    const publicKey = createPublicKey({ key: parsed.record.publicKey, format: 'der', type: 'spki' });
    const signature = sign('sha256', Buffer.from('hello'), rsa.privateKey);
    assert.ok(verify('sha256', Buffer.from('hello'), publicKey, signature));
  });

  test('ed25519: p= is the bare 32-byte key (RFC 8463 §4.2), not an SPKI', () => {
    const record = dkimTxtRecord(ed);
    assert.match(record, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    const parsed = parseDkimTxtRecord(record);
    assert.ok(parsed.ok);
    assert.equal(parsed.record.publicKey.length, 32);
    const jwk = createPublicKey(ed.privateKey).export({ format: 'jwk' });
    assert.equal(parsed.record.publicKey.toString('base64url'), jwk.x);
  });

  test('the zone-file line: strings of at most 255 characters that join back into the record', () => {
    const big = { type: 'rsa' as const, privateKey: generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey };
    for (const key of [rsa, ed, big]) {
      const line = dkimZoneFileLine('s1._domainkey.shop.example', key);
      const match = /^s1\._domainkey\.shop\.example\. IN TXT \( ((?:"[^"]*" ?)+)\)$/.exec(line);
      assert.ok(match, line);
      const strings = [...match[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
      assert.equal(strings[0], `v=DKIM1; k=${key.type}; `);
      assert.ok(strings[1]!.startsWith('p='));
      assert.ok(strings.every((s) => s.length <= 255), strings.map((s) => s.length).join());
      assert.equal(strings.join(''), dkimTxtRecord(key));
    }
    assert.deepEqual(splitTxtRecord(`v=DKIM1; k=rsa; p=${'A'.repeat(300)}`).map((s) => s.length), [16, 255, 47]);
  });

  const tagLists: [string, Record<string, string> | null][] = [
    ['v=DKIM1; k=rsa; p=abc', { v: 'DKIM1', k: 'rsa', p: 'abc' }],
    ['v=DKIM1;k=rsa;p=abc;', { v: 'DKIM1', k: 'rsa', p: 'abc' }],
    [' v = DKIM1 ;\r\n\tp = ab c ', { v: 'DKIM1', p: 'ab c' }],
    ['p=', { p: '' }],
    ['v=DKIM1; p=a; p=b', null],
    ['v=DKIM1; ; p=a', null],
    ['just text', null],
    ['1v=x', null],
  ];
  for (const [text, expect] of tagLists) {
    test(`tag-list ${JSON.stringify(text)}`, () => {
      const tags = parseTagList(text);
      assert.deepEqual(tags && Object.fromEntries(tags), expect);
    });
  }

  const spki = spkiOf(rsa);
  const judged: [string, string[][], string, RegExp?][] = [
    ['our record', [[dkimTxtRecord(rsa)]], 'published'],
    ['our record in two strings', [splitTxtRecord(dkimTxtRecord(rsa))], 'published'],
    ['no v=, k= defaults to rsa, p= folded with spaces', [[`p=${spki.slice(0, 100)} ${spki.slice(100)}`]], 'published'],
    ['the key as a PKCS#1 RSAPublicKey', [[`v=DKIM1; p=${pkcs1Of(rsa)}`]], 'published'],
    ['h=sha256 and s=email', [[`v=DKIM1; h=sha1:sha256; s=email; p=${spki}`]], 'published'],
    ['nothing', [], 'missing'],
    ['another key', [[dkimTxtRecord(otherRsa)]], 'different', /another key/],
    ['ours and an old one: a verifier may pick either', [[dkimTxtRecord(rsa)], [dkimTxtRecord(otherRsa)]], 'different', /2 TXT records/],
    ['revoked', [['v=DKIM1; k=rsa; p=']], 'different', /revoked/],
    ['k=ed25519 for an rsa key', [[`v=DKIM1; k=ed25519; p=${spki}`]], 'different', /k=ed25519/],
    ['h=sha1 only', [[`v=DKIM1; h=sha1; p=${spki}`]], 'different', /sha256/],
    ['v= not first', [[`k=rsa; v=DKIM1; p=${spki}`]], 'unparseable', /first tag/],
    ['v=DKIM2', [[`v=DKIM2; p=${spki}`]], 'unparseable'],
    ['no p=', [['v=DKIM1; k=rsa']], 'unparseable', /no p=/],
    ['p= not base64', [['v=DKIM1; p=%%%%']], 'unparseable', /base64/],
    ['an SPF record at the name', [['v=spf1 -all']], 'unparseable'],
  ];
  for (const [name, txt, status, detail] of judged) {
    test(`judge: ${name} → ${status}`, () => {
      const result = judgeDkimRecords(rsa, txt);
      assert.equal(result.status, status, result.detail);
      if (detail) assert.match(result.detail, detail);
    });
  }

  test('judge ed25519: the raw key matches, its SPKI form or another key does not', () => {
    const raw = dkimTxtRecord(ed);
    assert.equal(judgeDkimRecords(ed, [[raw]]).status, 'published');
    assert.equal(judgeDkimRecords(ed, [[`v=DKIM1; k=ed25519; p=${createPublicKey(ed.privateKey).export({ format: 'der', type: 'spki' }).toString('base64')}`]]).status, 'different');
    assert.equal(judgeDkimRecords(ed, [[dkimTxtRecord(rsa)]]).status, 'different');
  });

  const names: [string, string, string | null][] = [
    ['domain', 'Shop.Example.', 'shop.example'],
    ['domain', 'xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['domain', '../etc', null],
    ['domain', 'shop..example', null],
    ['domain', 'shop.example/x', null],
    ['domain', 'localhost', null],
    ['domain', '-bad.example', null],
    ['domain', 'bücher.example', null],
    ['selector', 'S1', 's1'],
    ['selector', '2026-01.mail', '2026-01.mail'],
    ['selector', '..', null],
    ['selector', '.hidden', null],
    ['selector', 'a/b', null],
    ['selector', 'a_b', null],
    ['selector', '', null],
    ['selector', 'x'.repeat(64), null],
  ];
  for (const [kind, text, expect] of names) {
    test(`${kind} ${JSON.stringify(text)} → ${expect ?? 'refused'}`, () => {
      const parse = kind === 'domain' ? parseDkimDomain : parseDkimSelector;
      if (expect === null) assert.throws(() => parse(text), ConfigError);
      else assert.equal(parse(text), expect);
    });
  }

  test('a record name over 253 characters is refused', () => {
    const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.example`;
    assert.throws(() => dkimRecordName(`${'s'.repeat(60)}.x`, long), ConfigError);
  });
});
