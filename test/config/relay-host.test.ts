import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { rootCertificates } from 'node:tls';
import { resolveQueueConfig } from '../../src/config/queue-config.js';
import { parseRelayHost } from '../../src/config/relay-host.js';
import { ConfigError } from '../../src/shared/errors.js';
import { makeTestCa, type TestCa } from '../helpers/certs.js';
import { tempDir } from '../helpers/temp.js';

let dir: { dir: string; cleanup(): Promise<void> };
let ca: TestCa;
let other: TestCa;
const file = (name: string) => path.join(dir.dir, name);
before(async () => {
  dir = await tempDir('mta-relay-config-');
  await writeFile(file('good'), 'relay-user:pa:ss word\n', { mode: 0o600 });
  await writeFile(file('crlf'), 'relay-user:secret\r\n\r\n', { mode: 0o600 });
  ca = await makeTestCa(dir.dir, 'relay-');
  other = await makeTestCa(dir.dir, 'other-');
  await writeFile(file('broken.pem'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
  for (const [name, text] of [['empty', ''], ['nocolon', 'relay-user\n'], ['nouser', ':secret\n'], ['nopass', 'relay-user:\n'], ['twolines', 'a:b\nc:d\n']] as const) {
    await writeFile(file(name), text, { mode: 0o600 });
  }
});
after(() => dir.cleanup());

test('--relay-host: off by default; HOST[:PORT], port 25 by default, IP literals, IPv6 in brackets', () => {
  assert.equal(resolveQueueConfig({}, 'h').relayHost, null);
  for (const [text, expected] of [
    ['smtp.example.net', { host: 'smtp.example.net', port: 25 }],
    ['SMTP.Example.NET.:587', { host: 'smtp.example.net', port: 587 }],
    ['localhost:2525', { host: 'localhost', port: 2525 }],
    ['192.0.2.25', { host: '192.0.2.25', port: 25 }],
    ['192.0.2.25:587', { host: '192.0.2.25', port: 587 }],
    ['[::1]:2525', { host: '::1', port: 2525 }],
    ['[2001:db8::25]', { host: '2001:db8::25', port: 25 }],
  ] as const) assert.deepEqual(parseRelayHost(text), expected, text);
  for (const bad of ['::1', '::1:2525', '[::1', '[example.com]:25', 'host:0', 'host:65536', 'host:', ':25', 'host:port', '999.1.1.1', 'bad_host!', 'a..b', 'http://host', 'host:25:25']) {
    assert.throws(() => resolveQueueConfig({ relayHost: bad }, 'h'), (error: unknown) => error instanceof ConfigError && error.message.startsWith('--relay-host:'), bad);
  }
});

test('--relay-tls: may without auth, verify with auth, as given otherwise; a bad value names the flag', () => {
  assert.equal(resolveQueueConfig({ relayHost: 'smtp.example.net' }, 'h').relayHost?.tls, 'may');
  assert.equal(resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file('good') }, 'h').relayHost?.tls, 'verify');
  assert.equal(resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file('good'), relayTls: 'require' }, 'h').relayHost?.tls, 'require');
  assert.equal(resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file('good'), relayTls: 'may' }, 'h').relayHost?.tls, 'may');
  assert.equal(resolveQueueConfig({ relayHost: 'smtp.example.net', relayTls: 'verify' }, 'h').relayHost?.tls, 'verify');
  for (const bad of ['encrypt', 'VERIFY', 'secure', 'none', 'yes']) {
    assert.throws(() => resolveQueueConfig({ relayHost: 'smtp.example.net', relayTls: bad }, 'h'), /^ConfigError: --relay-tls: .* is not verify, require or may$/, bad);
  }
  assert.throws(() => resolveQueueConfig({ relayTls: 'require' }, 'h'), /^ConfigError: --relay-tls needs --relay-host/);
});

test('--relay-ca: PEM certificates added to the CAs Node trusts and NODE_EXTRA_CA_CERTS; unreadable, empty or misplaced names the flag', async () => {
  const relay = (flags: Record<string, string>, extra?: string) => resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file('good'), ...flags }, 'h', extra).relayHost;
  assert.equal(relay({})?.trustedCas, null, "without --relay-ca, Node's own store");
  const trusted = relay({ relayCa: ca.certFile }, other.certFile)?.trustedCas ?? [];
  assert.ok(trusted.includes(ca.cert.trim()) && trusted.includes(other.cert.trim()), 'the file and NODE_EXTRA_CA_CERTS');
  assert.ok(rootCertificates.every((root) => trusted.includes(root)), "Node's bundled CAs");
  assert.deepEqual(relay({ relayCa: ca.certFile }, file('missing'))?.trustedCas?.length, rootCertificates.length + 1, 'an unreadable NODE_EXTRA_CA_CERTS is left out, as Node does');
  for (const [flags, pattern] of [
    [{ relayCa: file('missing') }, /^ConfigError: --relay-ca: cannot read .*missing \(ENOENT\)$/],
    [{ relayCa: file('good') }, /^ConfigError: --relay-ca: .*good holds no PEM certificate$/],
    [{ relayCa: file('broken.pem') }, /^ConfigError: --relay-ca: .* holds a certificate that does not parse$/],
    [{ relayCa: ca.certFile, relayTls: 'require' }, /^ConfigError: --relay-ca applies to --relay-tls verify, not require$/],
  ] as const) {
    assert.throws(() => relay(flags), pattern);
  }
  assert.throws(() => resolveQueueConfig({ relayCa: ca.certFile }, 'h'), /^ConfigError: --relay-ca needs --relay-host/);
});

test('--relay-auth-file: one user:password line (the password may hold ":"); unreadable or malformed names the flag, never the password', async () => {
  assert.deepEqual(resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file('good') }, 'h').relayHost?.credentials, { file: file('good'), user: 'relay-user', password: 'pa:ss word' });
  assert.deepEqual(resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file('crlf') }, 'h').relayHost?.credentials, { file: file('crlf'), user: 'relay-user', password: 'secret' });
  assert.equal(resolveQueueConfig({ relayHost: 'smtp.example.net' }, 'h').relayHost?.credentials, null);
  for (const name of ['missing', 'empty', 'nocolon', 'nouser', 'nopass', 'twolines']) {
    assert.throws(
      () => resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file(name) }, 'h'),
      (error: unknown) => error instanceof ConfigError && error.message.startsWith('--relay-auth-file:') && !error.message.includes('\n') && !error.message.includes('secret'),
      name,
    );
  }
  if (process.getuid?.() !== 0) {
    await writeFile(file('locked'), 'relay-user:secret\n');
    await chmod(file('locked'), 0o000);
    assert.throws(() => resolveQueueConfig({ relayHost: 'smtp.example.net', relayAuthFile: file('locked') }, 'h'), /^ConfigError: --relay-auth-file: cannot read .* \(EACCES\)$/);
  }
  assert.throws(() => resolveQueueConfig({ relayAuthFile: file('good') }, 'h'), /^ConfigError: --relay-auth-file needs --relay-host/);
});
