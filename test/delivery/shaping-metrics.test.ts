import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parsePolicy } from '../../src/config/policy.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { createMetricsRegistry } from '../../src/shared/metrics.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { eventually } from '../helpers/queue-harness.js';
import { scrape, type Scrape } from '../helpers/scrape.js';

/**
 * Shaping per provider in /metrics, scraped over HTTP from a runner delivering to real MXes on loopback: a Yahoo
 * MX answering [TSS04] (a suspension), a Google MX slow at DATA (connections in flight, transactions waiting),
 * and sites of their own (provider="none"), one of them under a rate far below its queue.
 */
const MESSAGE = 'From: news@shop.example\nTo: someone\nSubject: metrics\n\nbody\n';
const TSS04 = '[TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints';
const HOLD_REASONS = ['connection-wait', 'stopping', 'suspend', 'throttle-rate', 'warm-up'];

describe('shaping metrics per provider', () => {
  let f: DeliveryFixture;
  const enqueue = async (domain: string, count: number) => {
    for (let i = 0; i < count; i++) await f.enqueue('news@shop.example', [`r${i}@${domain}`], MESSAGE);
  };
  /** mta-queue in this process as the CLI wires it: its own registry, --metrics on a free loopback port, one connection per site. */
  const startRunner = async (policyText = '') => {
    const policy = parsePolicy(policyText, 'policy.toml', { connection_limit: 1 });
    const runner = new QueueRunner({ ...f.config, concurrency: 5, maxQueueTime: 5 * 86_400_000, metrics: { host: '127.0.0.1', port: 0 } }, f.deps({ metrics: createMetricsRegistry(), policy: () => policy }));
    await runner.start({ watch: false });
    return { runner, address: runner.metricsAddress! };
  };
  const labelValues = (sample: Scrape, name: string) => [...sample.series(name).keys()].join(' ');

  before(async () => {
    f = await startDeliveryFixture(
      [{ name: 'mta5.am0.yahoodns.net', data: { code: 421, message: TSS04 } }, { name: 'mx.ok.test' }, { name: 'aspmx.l.google.com', dataDelayMs: 1_500 }],
      (hosts) => ({
        'yahoo.test': { mx: [{ preference: 1, exchange: 'mta5.am0.yahoodns.net' }] },
        'mta5.am0.yahoodns.net': { a: [hosts[0]!] },
        'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'rate.test': { mx: [{ preference: 10, exchange: 'mx.rate.test' }] },
        'mx.ok.test': { a: [hosts[1]!] },
        'mx.rate.test': { a: [hosts[1]!] },
        'gmail.test': { mx: [{ preference: 5, exchange: 'aspmx.l.google.com' }] },
        'aspmx.l.google.com': { a: [hosts[2]!] },
      }),
    );
  });
  after(() => f.close());

  // First: the next test moves the clock hours on, which makes its deferred mail due again.
  test('in flight: connections per provider and transactions waiting in site queues, at scrape time', async () => {
    await enqueue('gmail.test', 3);
    const { runner, address } = await startRunner();
    try {
      const drained = runner.drain();
      let sample: Scrape | undefined;
      await eventually(async () => {
        sample = await scrape(address);
        return sample.value('mta_queue_site_queue_waiting') === 2;
      }, 'two transactions wait behind the one connection');
      assert.equal(sample!.value('mta_queue_provider_connections', { provider: 'google' }), 1, labelValues(sample!, 'mta_queue_provider_connections'));
      await drained;
      const done = await scrape(address);
      assert.equal(done.value('mta_queue_provider_connections', { provider: 'google' }), 0, 'all closed: 0, the series stays');
      assert.equal(done.value('mta_queue_site_queue_waiting'), 0);
      assert.equal(done.value('mta_queue_provider_messages_total', { provider: 'google', outcome: 'delivered' }), 3);
    } finally {
      await runner.close();
    }
  });

  test('recipients by provider and outcome, held back by provider and reason, back-offs in force by provider and action', async () => {
    await enqueue('yahoo.test', 3);
    await enqueue('ok.test', 1);
    await enqueue('rate.test', 2);
    const { runner, address } = await startRunner('[shaping.domain."rate.test"]\nmax_message_rate = "1/hour"\n');
    try {
      await runner.drain();
      const sample = await scrape(address);
      const messages = (provider: string, outcome: string) => sample.value('mta_queue_provider_messages_total', { provider, outcome });
      const heldBack = (provider: string, reason: string) => sample.value('mta_queue_held_back_total', { provider, reason });
      assert.deepEqual([messages('yahoo', 'delivered'), messages('yahoo', 'deferred'), messages('yahoo', 'bounced')], [0, 1, 0], 'the first got the [TSS04] reply');
      assert.deepEqual([messages('none', 'delivered'), messages('none', 'deferred'), messages('none', 'bounced')], [2, 0, 0], 'ok.test and the first of rate.test');
      assert.equal(heldBack('yahoo', 'suspend'), 2, 'the other two wait for the suspension to end');
      assert.equal(heldBack('none', 'throttle-rate'), 1, 'the second to rate.test waits an hour for its token');
      for (const provider of ['yahoo', 'none']) {
        assert.deepEqual([...sample.series('mta_queue_held_back_total').keys()].filter((key) => key.includes(`provider="${provider}"`)).length, HOLD_REASONS.length, `every reason of ${provider} from 0`);
      }
      assert.equal(sample.value('mta_queue_backoffs', { provider: 'yahoo', action: 'suspend' }), 1);
      assert.equal(sample.value('mta_queue_site_queue_waiting'), 0);
      for (const name of ['mta_queue_provider_messages_total', 'mta_queue_held_back_total', 'mta_queue_backoffs', 'mta_queue_provider_connections']) {
        assert.doesNotMatch(labelValues(sample, name), /\.test|yahoodns|google\.com/, `${name}: no site or domain as a label`);
      }

      f.clock.advance(3 * 3_600_000);
      const later = await scrape(address);
      assert.equal(later.value('mta_queue_backoffs', { provider: 'yahoo', action: 'suspend' }), 0, 'the suspension ended: 0, the series stays');
    } finally {
      await runner.close();
    }
  });
});
