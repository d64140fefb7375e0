import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createMetricsRegistry } from '../../src/shared/metrics.js';
import { startIntake, TEST_USER, type IntakeFixture } from '../helpers/intake-fixture.js';
import { loginOverStartTls, RawSmtpClient } from '../helpers/raw-smtp.js';
import { healthz, scrape, type Scrape } from '../helpers/scrape.js';

const METRICS_ON_ANY_PORT = { metrics: { host: '127.0.0.1', port: 0 } };

async function sendMessage(client: RawSmtpClient, body: string) {
  assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 250);
  assert.equal((await client.command('RCPT TO:<one@a.example>')).code, 250);
  assert.equal((await client.command('DATA')).code, 354);
  client.write(`Subject: metrics\r\n\r\n${body}.\r\n`);
  return client.read();
}

/** Scrapes until `done` holds: the server sees a client's close a moment after the client does. */
async function scrapeUntil(address: string, done: (sample: Scrape) => boolean): Promise<Scrape> {
  for (let tries = 0; ; tries++) {
    const sample = await scrape(address);
    if (done(sample) || tries === 100) return sample;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('mta-server metrics', () => {
  let fixture: IntakeFixture;
  before(async () => {
    fixture = await startIntake({ maxSize: 64 * 1024, ...METRICS_ON_ANY_PORT }, { metrics: createMetricsRegistry() });
  });
  after(() => fixture.close());

  test('one accepted message, one wrong password, one oversize message: each counter moves by exactly that', async () => {
    const address = fixture.server.metrics!;
    assert.match(address, /^127\.0\.0\.1:\d+$/);
    assert.equal(fixture.logs.events('listening')[0]?.metrics, address, 'the bound address is in the listening line');
    const start = await scrape(address);
    for (const reason of ['ETOOLARGE', 'EAUTHREQUIRED', 'ESPOOLWRITE']) assert.equal(start.value('mta_server_rejected_total', { reason }), 0, `${reason} series exists at 0`);
    assert.ok(start.value('process_cpu_user_seconds_total')! >= 0, 'default process metrics are there');
    assert.ok(start.series('nodejs_eventloop_lag_seconds').size > 0);

    const sender = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.match((await sendMessage(sender, 'hello\r\n')).raw, /^250 2\.0\.0 Ok: queued as /);
    const during = await scrape(address);
    assert.equal(during.value('mta_server_connections'), 1, 'one connection open now');
    sender.close();

    const { client: guesser } = await RawSmtpClient.connect(fixture.port);
    await guesser.command('EHLO test.example');
    await guesser.startTls();
    await guesser.command('EHLO test.example');
    assert.equal((await guesser.command(`AUTH PLAIN ${Buffer.from(`\0${TEST_USER.name}\0wrong`).toString('base64')}`)).code, 535);
    guesser.close();

    const big = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    assert.match((await sendMessage(big, `${'x'.repeat(998)}\r\n`.repeat(100))).raw, /^552 5\.3\.4 /);
    big.close();

    const end = await scrapeUntil(address, (sample) => sample.value('mta_server_connections') === 0);
    const delta = (name: string, labels?: Record<string, string>) => end.value(name, labels)! - start.value(name, labels)!;
    const accepted = fixture.logs.events('accepted');
    assert.equal(accepted.length, 1);
    assert.equal(delta('mta_server_connections_total'), 3);
    assert.equal(end.value('mta_server_connections'), 0);
    assert.equal(delta('mta_server_auth_failures_total'), 1);
    assert.equal(delta('mta_server_messages_accepted_total'), 1);
    assert.equal(delta('mta_server_accepted_bytes_total'), accepted[0]!.size, 'the spooled size of the accepted message');
    assert.equal(delta('mta_server_rejected_total', { reason: 'ETOOLARGE' }), 1);
    const rejected = [...end.series('mta_server_rejected_total').values()].reduce((sum, value) => sum + value, 0);
    assert.equal(rejected, 1, 'no other refusal counted');
    assert.equal(fixture.logs.events('rejected').length, 1, 'one rejected log line, one count');
  });

  test('a refusal before AUTH is counted under its code', async () => {
    const address = fixture.server.metrics!;
    const start = (await scrape(address)).value('mta_server_rejected_total', { reason: 'EAUTHREQUIRED' })!;
    const { client } = await RawSmtpClient.connect(fixture.port);
    await client.command('EHLO test.example');
    assert.equal((await client.command('MAIL FROM:<app@shop.example>')).code, 530);
    client.close();
    assert.equal((await scrape(address)).value('mta_server_rejected_total', { reason: 'EAUTHREQUIRED' }), start + 1);
  });
});

describe('mta-server health endpoint', () => {
  test('200 ok while running, 503 while shutting down, gone once closed; unknown paths 404', async () => {
    const fixture = await startIntake(METRICS_ON_ANY_PORT);
    const address = fixture.server.metrics!;
    assert.deepEqual(await healthz(address), { status: 200, body: 'ok\n' });
    assert.equal((await fetch(`http://${address}/`)).status, 404);
    assert.equal((await scrape(address)).value('mta_server_connections_total'), 0, 'without a registry passed in: a private one, served all the same');

    // A session in DATA holds the shutdown open: the endpoint says so meanwhile.
    const client = await loginOverStartTls(fixture.port, TEST_USER.name, TEST_USER.password);
    await client.command('MAIL FROM:<app@shop.example>');
    await client.command('RCPT TO:<one@a.example>');
    assert.equal((await client.command('DATA')).code, 354);
    const closed = fixture.close();
    assert.deepEqual(await healthz(address), { status: 503, body: 'stopping\n' });
    client.write('Subject: last\r\n\r\nbody\r\n.\r\n');
    assert.equal((await client.read()).code, 250);
    client.close();
    await closed;
    await assert.rejects(fetch(`http://${address}/healthz`), 'the endpoint is closed with the daemon');
  });
});
