import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseListenAddress } from '../../src/config/observability.js';
import { resolveQueueConfig } from '../../src/config/queue-config.js';
import { resolveServerConfig } from '../../src/config/server-config.js';
import { ConfigError } from '../../src/shared/errors.js';
import { isLoopback } from '../../src/shared/metrics.js';

test('--metrics: off by default; a bare port is loopback; only a written-out address leaves it', () => {
  assert.equal(resolveServerConfig({}, 'h').metrics, null);
  assert.equal(resolveQueueConfig({}, 'h').metrics, null);
  for (const [text, expected] of [
    ['9587', { host: '127.0.0.1', port: 9587 }],
    ['127.0.0.1:9587', { host: '127.0.0.1', port: 9587 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:9588', { host: '::1', port: 9588 }],
    ['0.0.0.0:9587', { host: '0.0.0.0', port: 9587 }],
    ['[::]:9587', { host: '::', port: 9587 }],
    ['', null],
    ['off', null],
  ] as const) assert.deepEqual(parseListenAddress(text, '--metrics'), expected, text);
  for (const bad of ['localhost:9587', '127.0.0.1', '1.2.3:80', '::1:9587', '[::1]', '127.0.0.1:70000', 'on', '127.0.0.1:-1', 'http://127.0.0.1:9587']) {
    assert.throws(() => parseListenAddress(bad, '--metrics'), ConfigError, bad);
  }
  assert.deepEqual(resolveQueueConfig({ metrics: '9588' }, 'h').metrics, { host: '127.0.0.1', port: 9588 });
  assert.throws(() => resolveServerConfig({ metrics: 'everywhere' }, 'h'), /^ConfigError: --metrics: "everywhere"/);
  for (const host of ['127.0.0.1', '127.1.2.3', '::1']) assert.ok(isLoopback(host), host);
  for (const host of ['0.0.0.0', '10.0.0.1', '::', '2001:db8::1']) assert.ok(!isLoopback(host), host);
});

test('--log-file: stdout by default; size, daily or both; keep; bad values name their flag', () => {
  assert.equal(resolveServerConfig({}, 'h').logFile, null);
  assert.deepEqual(resolveServerConfig({ logFile: '/var/log/mta-relay/mta-server.log' }, 'h').logFile, {
    path: '/var/log/mta-relay/mta-server.log',
    maxSize: 100 * 1024 * 1024,
    daily: false,
    keep: 7,
  });
  assert.deepEqual(resolveQueueConfig({ logFile: 'q.log', logRotate: 'daily', logKeep: '30' }, 'h').logFile, { path: 'q.log', maxSize: null, daily: true, keep: 30 });
  assert.deepEqual(resolveQueueConfig({ logFile: 'q.log', logRotate: 'both', logMaxSize: '20m' }, 'h').logFile, { path: 'q.log', maxSize: 20 * 1024 * 1024, daily: true, keep: 7 });
  for (const [flags, pattern] of [
    [{ logFile: 'x.log', logFormat: 'pretty' }, /--log-format pretty is for a terminal; use json/],
    [{ logRotate: 'hourly' }, /--log-rotate: "hourly"/],
    [{ logMaxSize: '0' }, /--log-max-size/],
    [{ logKeep: '0' }, /--log-keep/],
    [{ logKeep: 'all' }, /--log-keep/],
  ] as const) {
    assert.throws(() => resolveServerConfig(flags, 'h'), (error: unknown) => error instanceof ConfigError && pattern.test(error.message), JSON.stringify(flags));
    assert.throws(() => resolveQueueConfig(flags, 'h'), (error: unknown) => error instanceof ConfigError && pattern.test(error.message), JSON.stringify(flags));
  }
  assert.equal(resolveServerConfig({ logFormat: 'pretty' }, 'h').logFile, null, 'pretty on stdout is fine');
});
