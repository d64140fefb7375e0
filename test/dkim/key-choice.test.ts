import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { activeKeysByDomain, chooseSigningKeys, singleFromDomain, type ChoosableKey } from '../../src/dkim/key-choice.js';

type Key = ChoosableKey & { selector: string };
const key = (domain: string, selector: string, type: Key['type'], state: Key['state'] = 'active', activated: number | null = 1): Key => ({ domain, selector, type, state, activated });

const KEYS: Key[] = [
  key('example.com', 'rsa1', 'rsa'),
  key('example.com', 'ed1', 'ed25519'),
  key('shop.example', 'old', 'rsa', 'retiring', 1),
  key('shop.example', 'new', 'rsa', 'active', 2),
  key('pending.example', 'p1', 'rsa', 'pending', null),
  key('retired.example', 'r1', 'rsa', 'retired', 1),
  key('relay.example', 'k1', 'ed25519'),
  key('fallback.example', 'f1', 'rsa'),
  key('deep.a.example', 'd1', 'rsa'),
];

describe('which key signs (key-choice.ts)', () => {
  const active = activeKeysByDomain(KEYS);
  const choose = (fromDomain: string | null, defaultDomain: string | null = null) => {
    const choice = chooseSigningKeys(fromDomain, active, defaultDomain);
    return choice.signed ? { domain: choice.domain, alignment: choice.alignment, selectors: choice.keys.map((k) => k.selector) } : { unsigned: choice.reason };
  };

  const table: [string, string | null, string | null, ReturnType<typeof choose>][] = [
    ['From: domain with rsa and ed25519 keys: both, rsa first', 'example.com', null, { domain: 'example.com', alignment: 'aligned', selectors: ['rsa1', 'ed1'] }],
    ['subdomain: the parent key (relaxed alignment)', 'news.example.com', null, { domain: 'example.com', alignment: 'parent', selectors: ['rsa1', 'ed1'] }],
    ['deeper subdomain: the nearest parent with a key', 'x.y.deep.a.example', null, { domain: 'deep.a.example', alignment: 'parent', selectors: ['d1'] }],
    ['the nearest parent wins over a farther one', 'b.deep.a.example', 'example.com', { domain: 'deep.a.example', alignment: 'parent', selectors: ['d1'] }],
    ['only active keys sign (retiring is not used)', 'shop.example', null, { domain: 'shop.example', alignment: 'aligned', selectors: ['new'] }],
    ['a pending key never signs', 'pending.example', null, { unsigned: 'no-key' }],
    ['a retired key never signs', 'retired.example', null, { unsigned: 'no-key' }],
    ['no key anywhere: unsigned', 'other.test', null, { unsigned: 'no-key' }],
    ['no key: --dkim-default-domain', 'other.test', 'fallback.example', { domain: 'fallback.example', alignment: 'default', selectors: ['f1'] }],
    ['pending key, default given: the default', 'pending.example', 'fallback.example', { domain: 'fallback.example', alignment: 'default', selectors: ['f1'] }],
    ['a default domain without an active key: unsigned', 'other.test', 'pending.example', { unsigned: 'no-key' }],
    ['From: not one address: unsigned even with a default', null, 'fallback.example', { unsigned: 'no-single-from' }],
    ['a DSN from MAILER-DAEMON@<hostname>: the hostname domain key', 'mx1.relay.example', null, { domain: 'relay.example', alignment: 'parent', selectors: ['k1'] }],
    ['a bare TLD is never a parent', 'com', null, { unsigned: 'no-key' }],
  ];
  for (const [name, fromDomain, defaultDomain, expected] of table) {
    test(name, () => assert.deepEqual(choose(fromDomain, defaultDomain), expected));
  }

  test('two active keys of one type (between the two writes of an activation): the latest activated', () => {
    const keys = activeKeysByDomain([key('two.example', 'a', 'rsa', 'active', 5), key('two.example', 'b', 'rsa', 'active', 9), key('two.example', 'c', 'rsa', 'active', 7)]);
    assert.deepEqual(keys.get('two.example')!.map((k) => k.selector), ['b']);
  });
});

describe('the From: domain (singleFromDomain)', () => {
  const table: [string, string[], string | null][] = [
    ['plain address', [' app@Shop.Example'], 'shop.example'],
    ['display name and angle brackets', [' "Shop, Inc." <news@mail.shop.example>'], 'mail.shop.example'],
    ['encoded display name, folded', [' =?utf-8?q?Caf=C3=A9?=\r\n <a@cafe.example>'], 'cafe.example'],
    ['final dot', [' a@example.com.'], 'example.com'],
    ['two addresses: nobody to align with', [' a@one.example, b@two.example'], null],
    ['a group of two', [' team: a@one.example, b@one.example;'], null],
    ['a group of one', [' team: a@one.example;'], 'one.example'],
    ['two From: fields', [' a@one.example', ' a@one.example'], null],
    ['no From: field', [], null],
    ['no address', [' undisclosed'], null],
    ['empty', [' '], null],
    ['no dot in the domain', [' root@localhost'], null],
    ['an IDN From: domain: its A-label', [Buffer.from(' a@b\u00fccher.example', 'utf8').toString('latin1')], 'xn--bcher-kva.example'],
  ];
  for (const [name, fields, expected] of table) {
    test(name, () => assert.equal(singleFromDomain(fields), expected));
  }
});
