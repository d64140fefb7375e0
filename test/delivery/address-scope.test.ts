import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addressScope, mayConnectTo, type AddressScope } from '../../src/delivery/address-scope.js';

test('each address has its scope: this host, loopback, private, link-local or public (IPv4-mapped included)', () => {
  for (const [ip, scope] of [
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['0.255.255.255', 'unspecified'],
    ['::', 'unspecified'],
    ['0:0:0:0:0:0:0:0', 'unspecified'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['::ffff:0.9.9.9', 'unspecified'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:2', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['::ffff:10.0.0.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['febf::1', 'link-local'],
    ['1.0.0.0', 'public'],
    ['11.0.0.1', 'public'],
    ['172.15.255.255', 'public'],
    ['172.32.0.0', 'public'],
    ['192.0.2.1', 'public'],
    ['128.0.0.1', 'public'],
    ['2001:db8::1', 'public'],
    ['fec0::1', 'public'],
    ['::ffff:192.0.2.1', 'public'],
  ] as const satisfies readonly (readonly [string, AddressScope])[]) assert.equal(addressScope(ip), scope, ip);
});

test('unspecified addresses are never connected to; loopback, private and link-local only in a lab set-up', () => {
  for (const [ip, outsideLab, inLab] of [
    ['0.0.0.0', false, false],
    ['::', false, false],
    ['127.0.0.2', false, true],
    ['::1', false, true],
    ['10.1.2.3', false, true],
    ['fe80::1', false, true],
    ['192.0.2.1', true, true],
    ['2001:db8::25', true, true],
  ] as const) {
    assert.equal(mayConnectTo(ip, false), outsideLab, `${ip} outside a lab`);
    assert.equal(mayConnectTo(ip, true), inLab, `${ip} in a lab`);
  }
});
