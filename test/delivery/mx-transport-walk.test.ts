import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, test } from 'node:test';
import { MxTransport } from '../../src/delivery/mx-transport.js';
import { startDnsServer, type DnsZone } from '../helpers/dns-server.js';
import { startRawMx, startRawMxGroup, type RawMxScript } from '../helpers/hostile-mx.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const message = { sender: 'a@relay.test', body: () => Buffer.from('Subject: hi\r\n\r\nhello\r\n'), needsSmtpUtf8: false };

async function transportFor(zone: DnsZone, port: number): Promise<MxTransport> {
  const dns = await startDnsServer(zone);
  cleanups.push(() => dns.close());
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([dns.address]);
  const transport = new MxTransport({ resolver, port, allowPrivateDestinations: true, ehloName: 'relay.test', maxConnectionsPerDestination: 2, deadlines: { connect: 1_000, greeting: 1_000 }, idleTimeout: 1_000 });
  cleanups.push(async () => transport.close());
  return transport;
}

const hangUp: RawMxScript = (c) => void c.socket.destroy();
const busy: RawMxScript = (c) => void c.socket.end('421 4.3.2 too busy, try another MX\r\n');

test('one delivery tries at most 5 MX addresses and at most 2 greeted sessions (Postfix smtp_mx_*_limit)', async () => {
  // Eight MXes in preference order: three hang up before greeting, the other five greet with 421.
  const scripts = [hangUp, hangUp, hangUp, busy, busy, busy, busy, busy];
  const group = await startRawMxGroup(scripts, '127.0.0.31');
  cleanups.push(() => group.close());
  const zone: DnsZone = { 'many.test': { mx: group.mxes.map((_, i) => ({ preference: 10 * (i + 1), exchange: `mx${i}.many.test` })) } };
  group.mxes.forEach((mx, i) => (zone[`mx${i}.many.test`] = { a: [mx.host] }));
  const attempt = await (await transportFor(zone, group.port)).deliver('many.test', ['bob@many.test'], message);

  assert.deepEqual(group.mxes.map((mx) => mx.connections), [1, 1, 1, 1, 1, 0, 0, 0], 'three silent addresses, then two greeted sessions, then stop');
  const outcome = attempt.outcomes.get('bob@many.test')!;
  assert.equal(outcome.verdict, 'transient');
  assert.equal(outcome.reply.code, 421);
  assert.equal(attempt.mx, 'mx4.many.test', 'the last MX tried answers for the recipient');

  // All eight greet 421: two sessions, then stop.
  const all = await startRawMxGroup(Array(8).fill(busy), '127.0.0.41');
  cleanups.push(() => all.close());
  const zone2: DnsZone = { 'busy.test': { mx: all.mxes.map((_, i) => ({ preference: 10 * (i + 1), exchange: `mx${i}.busy.test` })) } };
  all.mxes.forEach((mx, i) => (zone2[`mx${i}.busy.test`] = { a: [mx.host] }));
  await (await transportFor(zone2, all.port)).deliver('busy.test', ['bob@busy.test'], message);
  assert.deepEqual(all.mxes.map((mx) => mx.connections), [1, 1, 0, 0, 0, 0, 0, 0]);
});

test('an MX resolving to an unspecified address is never connected to; the recipient defers with why', async () => {
  // On Linux, connecting to 0.0.0.0 reaches this machine's own listeners: one is waiting there to be (not) reached.
  const local = await startRawMx({ host: '0.0.0.0', script: busy });
  cleanups.push(() => local.close());
  const transport = await transportFor(
    { 'zero.test': { mx: [{ preference: 10, exchange: 'mx.zero.test' }, { preference: 20, exchange: 'mx2.zero.test' }] }, 'mx.zero.test': { a: ['0.0.0.0'] }, 'mx2.zero.test': { a: ['0.1.2.3'] } },
    local.port,
  );
  const attempt = await transport.deliver('zero.test', ['bob@zero.test'], message);
  assert.equal(local.connections, 0, 'nothing connected to 0.0.0.0');
  assert.deepEqual(attempt.outcomes.get('bob@zero.test'), {
    verdict: 'transient',
    reply: { code: null, enhanced: '4.4.4', text: 'MX mx2.zero.test resolves only to unspecified address 0.1.2.3; not connecting' },
  });
  assert.deepEqual([attempt.mx, attempt.ip], ['mx2.zero.test', '0.1.2.3']);
});
