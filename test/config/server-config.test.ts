import assert from 'node:assert/strict';
import { chmod, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { resolveServerConfig } from '../../src/config/server-config.js';
import { setUserSecret } from '../../src/config/users-file.js';
import { ConfigError } from '../../src/shared/errors.js';
import { tempDir } from '../helpers/temp.js';

test('--max-connections defaults to 1000 and takes a positive integer', () => {
  assert.equal(resolveServerConfig({}, 'relay.test').maxConnections, 1000);
  assert.equal(resolveServerConfig({ maxConnections: '25' }, 'relay.test').maxConnections, 25);
  assert.throws(() => resolveServerConfig({ maxConnections: '0' }, 'relay.test'), ConfigError);
  assert.throws(() => resolveServerConfig({ maxConnections: 'many' }, 'relay.test'), ConfigError);
});

test('--max-handshakes-per-ip defaults to 10 and --tls-handshake-timeout to 10s; zero and junk are refused naming the flag', () => {
  const defaults = resolveServerConfig({}, 'relay.test');
  assert.equal(defaults.maxHandshakesPerIp, 10);
  assert.equal(defaults.tlsHandshakeTimeout, 10_000);
  const set = resolveServerConfig({ maxHandshakesPerIp: '3', tlsHandshakeTimeout: '1500ms' }, 'relay.test');
  assert.equal(set.maxHandshakesPerIp, 3);
  assert.equal(set.tlsHandshakeTimeout, 1500);
  for (const bad of ['0', '-1', 'ten']) assert.throws(() => resolveServerConfig({ maxHandshakesPerIp: bad }, 'relay.test'), /^ConfigError: --max-handshakes-per-ip: /, bad);
  for (const bad of ['0s', '0ms', '10', 'soon']) assert.throws(() => resolveServerConfig({ tlsHandshakeTimeout: bad }, 'relay.test'), /^ConfigError: --tls-handshake-timeout: /, bad);
});

test('setUserSecret writes the users file 0600 whatever its mode was', async () => {
  const { dir, cleanup } = await tempDir('mta-users-mode-');
  try {
    const file = path.join(dir, 'users.txt');
    await writeFile(file, 'alice:secret\n');
    await chmod(file, 0o644);
    await setUserSecret(file, 'bob', '$scrypt$ln=10,r=8,p=1$c2FsdA==$aGFzaA==');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  } finally {
    await cleanup();
  }
});
