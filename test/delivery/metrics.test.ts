import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { createMetricsRegistry } from '../../src/shared/metrics.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { healthz, scrape, type Scrape } from '../helpers/scrape.js';

const MESSAGE = 'From: news@shop.example\nTo: someone\nSubject: Hello\n\nBody\n';

/** mta-queue in this process as the CLI wires it: its own registry, --metrics on a free loopback port. */
async function startRunner(f: DeliveryFixture, overrides: Partial<DeliveryFixture['config']> = {}) {
  const runner = new QueueRunner(
    { ...f.config, metrics: { host: '127.0.0.1', port: 0 }, ...overrides },
    f.deps({ metrics: createMetricsRegistry() }),
  );
  await runner.start({ watch: false });
  return { runner, address: runner.metricsAddress! };
}

/** Every outcome × reply-class series, with 0 for the ones the test does not name. */
function assertDeliveries(sample: Scrape, expected: Record<string, number>): void {
  const series = sample.series('mta_queue_deliveries_total');
  assert.equal(series.size, 16, 'all 4 × 4 series exist from the start');
  const actual = Object.fromEntries([...series].filter(([, value]) => value !== 0));
  assert.deepEqual(actual, expected);
}

const queueGauges = (sample: Scrape) => ({
  incoming: sample.value('mta_queue_messages', { state: 'incoming' }),
  deferred: sample.value('mta_queue_messages', { state: 'deferred' }),
  active: sample.value('mta_queue_messages', { state: 'active' }),
});

describe('mta-queue metrics', () => {
  test('delivered, bounced by a 550, deferred by a 451: outcome counters, latency histogram, queue gauges, health', async () => {
    const f = await startDeliveryFixture(
      [{ name: 'mx.ok.test' }, { rcpt: [{ code: 550, message: 'No such user here' }] }, { rcpt: [{ code: 451, message: 'Greylisted, try again later' }] }],
      (hosts) => ({
        'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'shop.example': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'mx.ok.test': { a: [hosts[0]!] },
        'reject.test': { a: [hosts[1]!] },
        'greylist.test': { a: [hosts[2]!] },
      }),
    );
    try {
      await f.enqueue('news@shop.example', ['alice@ok.test'], MESSAGE);
      await f.enqueue('news@shop.example', ['bob@reject.test'], MESSAGE);
      const greylisted = await f.enqueue('news@shop.example', ['carol@greylist.test'], MESSAGE);
      const { runner, address } = await startRunner(f);
      assert.equal(f.logs.events('started')[0]?.metrics, address, 'the bound address is in the started line');
      await runner.drain();

      const sample = await scrape(address);
      // alice and the DSN for bob (to news@shop.example, at mx.ok.test) are delivered.
      assertDeliveries(sample, {
        '{outcome="delivered",reply_class="2xx"}': 2,
        '{outcome="bounced",reply_class="5xx"}': 1,
        '{outcome="deferred",reply_class="4xx"}': 1,
      });
      assert.equal(sample.value('mta_queue_delivery_duration_seconds_count'), 4, 'one observation per domain attempt');
      assert.equal(sample.value('mta_queue_delivery_duration_seconds_bucket', { le: '+Inf' }), 4);
      assert.deepEqual(queueGauges(sample), { incoming: 0, deferred: 1, active: 0 });
      assert.equal(sample.value('mta_queue_dns_failures_total', { kind: 'transient' }), 0);
      assert.equal(sample.value('mta_queue_dns_failures_total', { kind: 'permanent' }), 0);
      assert.ok(sample.value('process_resident_memory_bytes')! > 0, 'default process metrics are there');

      f.clock.advance(90_000);
      const aged = await scrape(address);
      assert.equal(aged.value('mta_queue_oldest_message_age_seconds'), 90, `the greylisted ${greylisted} has waited 90 s`);

      assert.deepEqual(await healthz(address), { status: 200, body: 'ok\n' });
      await runner.close();
      await assert.rejects(fetch(`http://${address}/healthz`), 'closed with the runner');
    } finally {
      await f.close();
    }
  });

  test('in flight and waiting: active and incoming; DNS failures by kind', async () => {
    const f = await startDeliveryFixture([{ greeting: 'silent' }], (hosts) => ({
      'silent.test': { a: [hosts[0]!] },
      'servfail.test': { rcode: 'SERVFAIL' },
    }));
    try {
      await f.enqueue('news@shop.example', ['a@silent.test'], MESSAGE);
      await f.enqueue('news@shop.example', ['b@silent.test'], MESSAGE);
      const { runner, address } = await startRunner(f, { concurrency: 1, connectTimeout: 1000 });
      // The first waits for a greeting that never comes (1 s); the second, claimed too, waits for the only slot.
      assert.deepEqual(queueGauges(await scrape(address)), { incoming: 0, deferred: 0, active: 2 });
      await runner.drain();
      let sample = await scrape(address);
      assert.deepEqual(queueGauges(sample), { incoming: 0, deferred: 2, active: 0 });
      assertDeliveries(sample, { '{outcome="deferred",reply_class="none"}': 2 });

      // <> so that no DSN follows (the DSN's own look-up would count too).
      await f.enqueue('', ['c@servfail.test', 'd@nxdomain.test'], MESSAGE);
      await runner.drain();
      sample = await scrape(address);
      assert.equal(sample.value('mta_queue_dns_failures_total', { kind: 'transient' }), 1, 'SERVFAIL');
      assert.equal(sample.value('mta_queue_dns_failures_total', { kind: 'permanent' }), 1, 'NXDOMAIN');
      assertDeliveries(sample, { '{outcome="deferred",reply_class="none"}': 3, '{outcome="bounced",reply_class="none"}': 1 });
      assert.deepEqual(queueGauges(sample), { incoming: 0, deferred: 3, active: 0 });
      await runner.close();
    } finally {
      await f.close();
    }
  });
});
