import assert from 'node:assert/strict';
import { test } from 'node:test';
import { builtInPolicy, parsePolicy, type ShapingSettings } from '../../src/config/policy.js';
import { Backoffs } from '../../src/delivery/backoffs.js';
import type { Route } from '../../src/delivery/router.js';
import { SiteQueues, SHORT_WAIT_MS, type Admission } from '../../src/delivery/site-queues.js';
import { LocalThrottles } from '../../src/delivery/throttle.js';
import { ManualClock } from '../helpers/delivery-fixture.js';
import { LogCapture } from '../helpers/log-capture.js';

function route(site: string, shaping: ShapingSettings, extra: Partial<Route> = {}): Route {
  return { site, mxHosts: site.split(','), firstAddress: null, domain: site, provider: null, shaping, source: 'default', local: null, domainRate: false, ...extra } as Route;
}

function setup(concurrency = 10) {
  const clock = new ManualClock(1_000_000);
  const logs = new LogCapture();
  const backoffs = new Backoffs(null, logs.logger);
  const sites = new SiteQueues({ concurrency, throttles: new LocalThrottles(), backoffs, clock });
  const admit = (r: Route, recipients = 1) => {
    let settled: Admission | undefined;
    const promise = Promise.resolve(sites.admit({ route: r, recipients, hasIdleConnection: () => false })).then((admission) => (settled = admission));
    return { promise, get settled() {
      return settled;
    } };
  };
  return { clock, logs, backoffs, sites, admit };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const granted = (admission: Admission | undefined) => {
  assert.equal(admission?.kind, 'granted');
  return admission as Extract<Admission, { kind: 'granted' }>;
};

test('a site gets at most connection_limit transactions at once; the next waits in its queue and goes when one ends', async (t) => {
  const { sites, admit } = setup();
  t.after(() => sites.close());
  const slow = route('mx.slow.test', { connection_limit: 2 });
  const [a, b, c] = [admit(slow), admit(slow), admit(slow)];
  await tick();
  granted(a.settled);
  granted(b.settled);
  assert.equal(c.settled, undefined, 'waits');
  assert.equal(sites.waiting, 1);
  granted(a.settled).release();
  await tick();
  granted(c.settled);
  assert.equal(sites.waiting, 0);
});

test('no head-of-line blocking: a busy site holds only its own connections, never the shared ones', async (t) => {
  const { sites, admit } = setup(3);
  t.after(() => sites.close());
  const slow = route('mx.slow.test', { connection_limit: 2 });
  const waiting = Array.from({ length: 30 }, () => admit(slow));
  const idle = admit(route('mx.idle.test', { connection_limit: 2 }));
  await tick();
  assert.equal(waiting.filter((w) => w.settled?.kind === 'granted').length, 2);
  granted(idle.settled);
});

test('--concurrency is shared by every site: beyond it, sites wait and are served in the order they began waiting', async (t) => {
  const { sites, admit } = setup(2);
  t.after(() => sites.close());
  const [a, b] = [admit(route('a.test', {})), admit(route('b.test', {}))];
  const [c, d] = [admit(route('c.test', {})), admit(route('d.test', {}))];
  await tick();
  assert.equal(c.settled, undefined);
  granted(a.settled).release();
  await tick();
  granted(c.settled);
  assert.equal(d.settled, undefined);
  granted(b.settled).release();
  await tick();
  granted(d.settled);
});

test('provider_connection_limit counts the connections of every site of the provider; connection_limit also holds per MX address', async (t) => {
  const { sites, admit } = setup();
  t.after(() => sites.close());
  const google = (site: string) => route(site, { connection_limit: 10, provider_connection_limit: 2 }, { provider: 'google' });
  const [a, b, c] = [admit(google('aspmx.l.google.com')), admit(google('alt1.aspmx.l.google.com')), admit(google('alt2.aspmx.l.google.com'))];
  await tick();
  granted(a.settled);
  granted(b.settled);
  assert.equal(c.settled, undefined, 'a third site of the same provider waits');
  const onOneAddress = (site: string) => route(site, { connection_limit: 1 }, { firstAddress: '192.0.2.7' });
  const [x, y] = [admit(onOneAddress('mx.evil1.test')), admit(onOneAddress('mx.evil2.test'))];
  await tick();
  granted(x.settled);
  assert.equal(y.settled, undefined, 'two MX names on one address share its limit');
  granted(x.settled).release();
  await tick();
  granted(y.settled);
});

test('max_message_rate: a short wait stays in memory, a long one is held, spaced after the one held before it', async (t) => {
  const { sites, admit, clock } = setup();
  t.after(() => sites.close());
  const slow = route('mx.rate.test', { max_message_rate: parsePolicy('[shaping.default]\nmax_message_rate = "1/min"\n', 'p').default.max_message_rate! });
  const first = admit(slow);
  await first.promise;
  granted(first.settled).release();
  const second = await admit(slow).promise;
  const third = await admit(slow).promise;
  assert.equal(second.kind, 'held');
  assert.equal(third.kind, 'held');
  assert.equal((second as { until: number }).until, clock.now() + 60_000);
  assert.equal((third as { until: number }).until, clock.now() + 120_000, 'not all due again at the same moment');
  assert.match((second as { reason: string }).reason, /^held back: mx\.rate\.test at its max_message_rate 1\/min until /);
  assert.ok(60_000 > SHORT_WAIT_MS);
});

test('a rate grants fewer recipients than asked when fewer tokens are there; the caller sends the rest next', async (t) => {
  const { sites, admit } = setup();
  t.after(() => sites.close());
  const bursty = route('mx.burst.test', { max_message_rate: parsePolicy('[shaping.default]\nmax_message_rate = "600/min, max_burst=3"\n', 'p').default.max_message_rate! });
  const big = await admit(bursty, 5).promise;
  assert.equal(granted(big).recipients, 3);
});

test('a suspended site holds every transaction at once until the suspension ends, with the rule and the reply', async (t) => {
  const { sites, admit, backoffs, clock } = setup();
  t.after(() => sites.close());
  const yahoo = route('mta5.am0.yahoodns.net', {}, { provider: 'yahoo' });
  const rules = builtInPolicy().rules;
  await backoffs.observeReply(yahoo.site, 'default', { code: 421, enhanced: '4.7.0', text: '[TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints' }, rules, clock.now(), 'q1');
  const held = await admit(yahoo).promise;
  assert.equal(held.kind, 'held');
  assert.equal((held as { until: number }).until, clock.now() + 2 * 3_600_000);
  assert.match((held as { reason: string }).reason, /suspended until .* by built-in rule 1 \(421 4\.7\.0 \[TSS04\]/);
  granted(await admit(route('mx.other.test', {})).promise);
});

test("a domain's own max_message_rate is the receiver's: every source's mail to the site shares it; a provider's or the default's is per source", async (t) => {
  const { sites, admit } = setup();
  t.after(() => sites.close());
  const rate = parsePolicy('[shaping.default]\nmax_message_rate = "1/min"\n', 'p').default.max_message_rate!;
  const from = (source: string, domainRate: boolean) => route('mx.shared.test', { max_message_rate: rate }, { source, domainRate, domain: domainRate ? 'receiver.test' : 'other.test' });
  granted(await admit(from('192.0.2.10', true)).promise).release();
  assert.equal((await admit(from('192.0.2.11', true)).promise).kind, 'held', 'the second source waits for the same tokens');
  granted(await admit(from('192.0.2.10', false)).promise).release();
  granted(await admit(from('192.0.2.11', false)).promise).release();
});
