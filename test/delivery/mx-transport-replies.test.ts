import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, test } from 'node:test';
import { REPLY_EXCERPT } from '../../src/delivery/classify.js';
import { MxTransport } from '../../src/delivery/mx-transport.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { converse, startRawMx } from '../helpers/hostile-mx.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const message = { sender: 'a@relay.test', body: () => Buffer.from('Subject: hi\r\n\r\nhello\r\n'), needsSmtpUtf8: false };

/** A multi-line 451 of about `bytes`, each line saying which it is. */
function hugeReply(bytes: number): string {
  const lines: string[] = [];
  for (let size = 0, n = 0; size < bytes; n++) {
    const line = `451-4.7.1 line ${n} ${'x'.repeat(100)}\r\n`;
    lines.push(line);
    size += line.length;
  }
  return `${lines.join('')}451 4.7.1 end of the story\r\n`;
}

async function deliverAgainst(host: string, reply: string) {
  let closedByPeer = false;
  const mx = await startRawMx({
    host,
    script: async (c) => {
      c.socket.once('end', () => (closedByPeer = true));
      await converse(c, { rcpt: () => reply });
    },
  });
  cleanups.push(() => mx.close());
  const dns = await startDnsServer({ 'big.test': { mx: [{ preference: 10, exchange: 'mx.big.test' }] }, 'mx.big.test': { a: [host] } });
  cleanups.push(() => dns.close());
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([dns.address]);
  const transport = new MxTransport({ resolver, port: mx.port, allowPrivateDestinations: true, ehloName: 'relay.test', maxConnectionsPerDestination: 2, idleTimeout: 1_000 });
  cleanups.push(async () => transport.close());
  const attempt = await transport.deliver('big.test', ['bob@big.test'], message);
  return { outcome: attempt.outcomes.get('bob@big.test')!, closedByPeer: () => closedByPeer };
}

const BOUND = REPLY_EXCERPT.maxBytes + 16;

test('an 865 KB multi-line 451 to RCPT is not read whole: the connection closes and the recipient defers', async () => {
  const { outcome, closedByPeer } = await deliverAgainst('127.0.0.51', hugeReply(865 * 1024));
  assert.equal(outcome.verdict, 'transient');
  assert.equal(outcome.reply.code, null);
  assert.equal(outcome.reply.enhanced, '4.4.2');
  assert.match(outcome.reply.text, /exceeds maximum allowed size/);
  assert.ok(Buffer.byteLength(outcome.reply.text) <= BOUND, `${Buffer.byteLength(outcome.reply.text)} bytes kept`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(closedByPeer(), 'the relay closed the connection');
});

test('a 30 KB multi-line 451 is kept as its first lines, a few KB at most, marked as cut', async () => {
  const { outcome } = await deliverAgainst('127.0.0.52', hugeReply(30 * 1024));
  assert.equal(outcome.verdict, 'transient');
  assert.equal(outcome.reply.code, 451);
  assert.equal(outcome.reply.enhanced, '4.7.1');
  assert.match(outcome.reply.text, /^line 0 x+ line 1 x+/);
  assert.ok(outcome.reply.text.endsWith(REPLY_EXCERPT.marker), 'marked as cut');
  assert.ok(Buffer.byteLength(outcome.reply.text) <= BOUND, `${Buffer.byteLength(outcome.reply.text)} bytes kept`);
  assert.doesNotMatch(outcome.reply.text, /end of the story/);
});
