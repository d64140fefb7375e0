import assert from 'node:assert/strict';
import { test } from 'node:test';
import { domainOf } from '../../src/shared/addresses.js';
import { isValidMailbox } from '../../src/intake/address-syntax.js';

test('mailbox syntax (RFC 5321 §4.1.2, UTF-8 per RFC 6531)', () => {
  for (const [address, valid] of [
    ['user@example.com', true],
    ['first.last+tag@sub.example.co.uk', true],
    ['"quoted local"@example.com', true],
    ['user@[192.0.2.1]', true],
    ['user@[IPv6:2001:db8::1]', true],
    ['j\u00f6rg@m\u00fcller.example', true],
    ['user@localhost', true],
    ['', false],
    ['no-at-sign', false],
    ['@example.com', false],
    ['user@', false],
    ['a..b@example.com', false],
    ['.a@example.com', false],
    ['user@-bad.example', false],
    ['user@bad-.example', false],
    ['user@exa mple.com', false],
    ['user@[300.1.1.1]', false],
    [`${'a'.repeat(65)}@example.com`, false],
    [`a@${'b'.repeat(64)}.example`, false],
  ] as const) assert.equal(isValidMailbox(address), valid, address);
});

test('domainOf lower-cases the part after the last @', () => {
  assert.equal(domainOf('"a@b"@Example.COM'), 'example.com');
});
