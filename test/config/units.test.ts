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
  for (const bad of ['10.0.0.0/33', 'example.com', '1.2.3.4/x', '::1/129']) assert.throws(() => parseNetworks(bad, 'n'), ConfigError, bad);
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
