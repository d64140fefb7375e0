import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, test } from 'node:test';
import { CachingResolver } from '../../src/delivery/dns-cache.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

let dns: DnsServer;
let resolver: Resolver;
before(async () => {
  dns = await startDnsServer({ 'cached.test': { mx: [{ preference: 10, exchange: 'mx.cached.test' }] }, 'flaky.test': { rcode: 'SERVFAIL' } });
  resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([dns.address]);
});
after(() => dns.close());

const queriesFor = (name: string) => dns.queries.filter((query) => query.name === name).length;

test('answers are reused until they expire, concurrent look-ups share one query', async () => {
  let now = 0;
  const cache = new CachingResolver(resolver, 60_000, () => now);
  const [first, second] = await Promise.all([cache.resolveMx('cached.test'), cache.resolveMx('cached.test')]);
  assert.deepEqual(first, [{ exchange: 'mx.cached.test', priority: 10 }]);
  assert.deepEqual(second, first);
  await cache.resolveMx('cached.test');
  assert.equal(queriesFor('cached.test'), 1);
  now += 60_000;
  await cache.resolveMx('cached.test');
  assert.equal(queriesFor('cached.test'), 2, 'asked again once expired');
});

test('failures are not kept: the next look-up asks again and sees a repaired zone', async () => {
  const cache = new CachingResolver(resolver, 60_000, () => 0);
  await assert.rejects(cache.resolveMx('flaky.test'), { code: 'ESERVFAIL' });
  dns.setZone('flaky.test', { mx: [{ preference: 5, exchange: 'mx.flaky.test' }] });
  assert.deepEqual(await cache.resolveMx('flaky.test'), [{ exchange: 'mx.flaky.test', priority: 5 }]);
});

test('no such name and no records of the type are answers, kept like others (RFC 2308); a SERVFAIL is not', async () => {
  let now = 0;
  const cache = new CachingResolver(resolver, 60_000, () => now);
  for (let i = 0; i < 3; i++) await assert.rejects(cache.resolve6('mx.cached.test'), { code: 'ENOTFOUND' });
  for (let i = 0; i < 3; i++) await assert.rejects(cache.resolve6('cached.test'), { code: 'ENODATA' });
  const asked = (name: string) => dns.queries.filter((query) => query.name === name && query.type === 'AAAA').length;
  assert.deepEqual([asked('mx.cached.test'), asked('cached.test')], [1, 1]);
  now += 60_000;
  await assert.rejects(cache.resolve6('cached.test'), { code: 'ENODATA' });
  assert.equal(asked('cached.test'), 2, 'asked again once expired');
});
