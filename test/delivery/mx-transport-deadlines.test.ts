import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, test } from 'node:test';
import { MxTransport } from '../../src/delivery/mx-transport.js';
import { POSTFIX_DEADLINES, type SmtpDeadlines } from '../../src/delivery/smtp-deadlines.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { converse, startRawMx, type RawMx, type RawMxConnection } from '../helpers/hostile-mx.js';
import { startMx } from '../helpers/mx-server.js';

// Every reply gets 400 ms; the hostile MX sends a line every 100 ms, well inside any idle timer, forever.
const DEADLINE = 400;
const TIGHT: SmtpDeadlines = Object.fromEntries(Object.keys(POSTFIX_DEADLINES).map((stage) => [stage, DEADLINE])) as SmtpDeadlines;
const TRICKLE_MS = 100;
// Generous: the deadline plus connection set-up, far below "forever".
const BOUND_MS = 5_000;

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function resolverFor(dns: DnsServer): Promise<Resolver> {
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([dns.address]);
  return resolver;
}

/** Writes `${code}-line n` every TRICKLE_MS until the client goes away: a reply that never completes. */
function trickle(connection: RawMxConnection, code: number): Promise<void> {
  return new Promise((resolve) => {
    let n = 0;
    const timer = setInterval(() => connection.write(`${code}-still thinking ${n++}\r\n`), TRICKLE_MS);
    connection.socket.once('close', () => (clearInterval(timer), resolve()));
  });
}

async function transportTo(host: string, port: number): Promise<MxTransport> {
  const dns = await startDnsServer({ 'slow.test': { mx: [{ preference: 10, exchange: 'mx.slow.test' }] }, 'mx.slow.test': { a: [host] } });
  cleanups.push(() => dns.close());
  const transport = new MxTransport({ resolver: await resolverFor(dns), port, allowPrivateDestinations: true, ehloName: 'relay.test', maxConnectionsPerDestination: 2, deadlines: TIGHT, idleTimeout: 1_000 });
  cleanups.push(async () => transport.close());
  return transport;
}

const message = { sender: 'a@relay.test', body: () => Buffer.from('Subject: hi\r\n\r\nhello\r\n'), needsSmtpUtf8: false };

/** Resolves with the attempt, or rejects when it has not ended within BOUND_MS (the bug: it never ends). */
async function deliverWithin(transport: MxTransport, recipients: string[]) {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`delivery still running after ${BOUND_MS} ms`)), BOUND_MS)));
  try {
    return await Promise.race([transport.deliver('slow.test', recipients, message), bound]);
  } finally {
    clearTimeout(timer);
  }
}

const SCRIPTS: { stage: string; host: string; script: (connection: RawMxConnection) => Promise<void> }[] = [
  { stage: 'greeting', host: '127.0.0.21', script: (c) => trickle(c, 220) },
  {
    stage: 'ehlo',
    host: '127.0.0.22',
    script: async (c) => {
      c.write('220 slow.test ESMTP\r\n');
      await c.nextLine();
      await trickle(c, 250);
    },
  },
  {
    stage: 'rcpt',
    host: '127.0.0.23',
    script: async (c) => {
      c.write('220 slow.test ESMTP\r\n');
      await c.nextLine();
      c.write('250 slow.test\r\n'); // no PIPELINING: MAIL, then RCPT, each awaited
      await c.nextLine();
      c.write('250 2.1.0 Ok\r\n');
      await c.nextLine();
      await trickle(c, 250);
    },
  },
];

for (const { stage, host, script } of SCRIPTS) {
  test(`an MX trickling continuation lines of the ${stage} reply forever is deferred at the deadline`, async () => {
    const mx: RawMx = await startRawMx({ host, script });
    cleanups.push(() => mx.close());
    const transport = await transportTo(host, mx.port);
    const started = Date.now();
    const attempt = await deliverWithin(transport, ['bob@slow.test']);
    const elapsed = Date.now() - started;
    const outcome = attempt.outcomes.get('bob@slow.test');
    assert.equal(outcome?.verdict, 'transient');
    assert.equal(outcome?.reply.code, null);
    assert.equal(outcome?.reply.enhanced, '4.4.2');
    assert.match(outcome!.reply.text, new RegExp(`${stage}.*${DEADLINE} ms`));
    assert.ok(elapsed >= DEADLINE - 50, `ended after ${elapsed} ms, before the deadline`);
    assert.equal(attempt.mx, 'mx.slow.test');
    assert.equal(attempt.ip, host);
  });
}

test('with the same tight deadlines, MXes that answer promptly still take the mail (smtp-server and a raw one)', async () => {
  const real = await startMx({ host: '127.0.0.24' });
  cleanups.push(() => real.close());
  const delivered = await deliverWithin(await transportTo('127.0.0.24', real.port), ['bob@slow.test', 'carol@slow.test']);
  for (const address of ['bob@slow.test', 'carol@slow.test']) assert.equal(delivered.outcomes.get(address)?.verdict, 'delivered', address);
  assert.equal(real.messages.length, 1);
  assert.ok(delivered.tls, 'STARTTLS was used');

  const raw = await startRawMx({ host: '127.0.0.25', script: (c) => converse(c) });
  cleanups.push(() => raw.close());
  const transport = await transportTo('127.0.0.25', raw.port);
  // Twice over one pooled connection, with pauses longer than a deadline between them: idle is not late.
  for (let i = 0; i < 2; i++) {
    const attempt = await deliverWithin(transport, ['bob@slow.test']);
    assert.equal(attempt.outcomes.get('bob@slow.test')?.verdict, 'delivered');
    await new Promise((resolve) => setTimeout(resolve, DEADLINE * 2));
  }
  assert.equal(raw.connections, 1, 'the pooled connection was reused');
});
