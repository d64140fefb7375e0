import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveServerConfig } from '../../src/config/server-config.js';
import { parseDuration, parseNetworks, parsePort, parseSize } from '../../src/config/units.js';
import { ConfigError } from '../../src/shared/errors.js';

test('durations: ms, s, m, h, d; anything else is a ConfigError', () => {
  for (const [text, ms] of [['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['2h', 7_200_000], ['5d', 432_000_000]] as const) assert.equal(parseDuration(text), ms, text);
  for (const bad of ['', '5', '5 m', '-1s', '1.5h', '5w', 'm']) assert.throws(() => parseDuration(bad), ConfigError, bad);
});

test('sizes: bytes, k, m, g; zero and junk refused', () => {
  for (const [text, bytes] of [['1000', 1000], ['10k', 10_240], ['25m', 26_214_400], ['1G', 1_073_741_824]] as const) assert.equal(parseSize(text), bytes, text);
  for (const bad of ['', '0', '10kb', '-5', '1.5m', 'big']) assert.throws(() => parseSize(bad), ConfigError, bad);
});

test('ports: 0 to 65535', () => {
  assert.equal(parsePort('0', 'p'), 0);
  assert.equal(parsePort('65535', 'p'), 65535);
  for (const bad of ['65536', '-1', 'x', '']) assert.throws(() => parsePort(bad, 'p'), ConfigError, bad);
});

test('trusted networks: CIDRs and single hosts of both families', () => {
  const list = parseNetworks('10.0.0.0/8, 192.0.2.7,::1,2001:db8::/32', 'n');
  for (const [address, family, expected] of [
    ['10.1.2.3', 'ipv4', true],
    ['11.0.0.1', 'ipv4', false],
    ['192.0.2.7', 'ipv4', true],
    ['192.0.2.8', 'ipv4', false],
    ['::1', 'ipv6', true],
    ['2001:db8:1::5', 'ipv6', true],
    ['2001:db9::1', 'ipv6', false],
  ] as const) assert.equal(list.check(address, family), expected, address);
  assert.equal(parseNetworks('0.0.0.0/0', 'n').check('203.0.113.9', 'ipv4'), true, 'prefix 0 is a network too');
});

test('networks: every malformed item is refused, naming the flag and the item', () => {
  for (const [bad, why] of [
    ['10.0.0.0/8/9', 'two prefixes'],
    ['10.0.0.0/33', 'IPv4 prefix beyond 32'],
    ['::1/129', 'IPv6 prefix beyond 128'],
    ['10.0.0.0/08', 'prefix with a leading zero'],
    ['10.0.0.0/+8', 'signed prefix'],
    ['10.0.0.0/', 'empty prefix'],
    ['10.0.0.0/8x', 'junk after the prefix'],
    ['10.0.0.0 /8', 'space inside the item'],
    ['/8', 'prefix without an address'],
    ['010.0.0.0/8', 'octet with a leading zero'],
    ['10.0.0/8', 'three octets'],
    ['fe80::1%eth0', 'zone index'],
    ['example.com', 'a name'],
    ['1.2.3.4/x', 'a word for a prefix'],
    ['10.0.0.0/8,,::1', 'empty item between two'],
    ['10.0.0.0/8,', 'trailing comma'],
    [',10.0.0.0/8', 'leading comma'],
    ['', 'nothing at all'],
  ] as const) {
    assert.throws(() => parseNetworks(bad, '--trusted-networks'), (error: unknown) => error instanceof ConfigError && /^--trusted-networks: /.test(error.message) && !error.message.includes('\n'), `${why}: ${bad}`);
  }
  assert.throws(() => parseNetworks('10.0.0.0/8/9', '--trusted-networks'), /"10\.0\.0\.0\/8\/9"/);
});

test('server config: defaults from the CLI contract, flags override, bad values name their flag', () => {
  const config = resolveServerConfig({}, 'host.example');
  assert.equal(config.port, 587);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.spool, '/var/mailqueue');
  assert.equal(config.maxSize, 25 * 1024 * 1024);
  assert.equal(config.maxRecipients, 100);
  assert.equal(config.smtpsPort, null);
  assert.equal(config.trustedNetworks, null);
  assert.equal(config.hostname, 'host.example');
  assert.equal(resolveServerConfig({ smtpsPort: '465', hostname: 'mx.example' }, 'h').smtpsPort, 465);
  assert.throws(() => resolveServerConfig({ maxRecipients: '0' }, 'h'), /--max-recipients/);
  assert.throws(() => resolveServerConfig({ logLevel: 'loud' }, 'h'), /--log-level/);
});
