import assert from 'node:assert/strict';
import { test } from 'node:test';
import { builtInPolicy } from '../../src/config/policy.js';
import { parseRate } from '../../src/config/policy-values.js';
import type { ActiveBackoff } from '../../src/delivery/backoffs.js';
import { sitesReport, SITES_SHOWN } from '../../src/delivery/site-report.js';
import type { SiteActivity } from '../../src/delivery/site-queues.js';

const NOW = Date.UTC(2026, 11, 8);
const policy = builtInPolicy({ connection_limit: 10 });
const activeSite = (site: string, connections: number, waiting: number, provider: string | null = null): SiteActivity => ({
  route: { site, mxHosts: site.split(','), firstAddress: '192.0.2.1', domain: 'example.test', provider, shaping: { connection_limit: 10 }, source: 'default', local: null, domainRate: false },
  connections,
  waiting,
});
const backoff = (site: string, until: number, action: ActiveBackoff['action'] = 'suspend', shaping: ActiveBackoff['shaping'] = {}): ActiveBackoff => ({ site, source: 'default', rule: 'built-in rule 1', action, until, reply: '421 4.7.0 [TSS04] try later', shaping });

function rate(text: string) {
  const parsed = parseRate(text);
  assert.ok(parsed.ok);
  return parsed.value;
}

test('the Sites table: busiest first, then the back-offs soonest ending first, at most SITES_SHOWN rows, the counts exact', () => {
  const activity = Array.from({ length: 60 }, (_, i) => activeSite(`mx${i}.example.test`, i % 3, i));
  const backoffs = [backoff('b.yahoodns.net', NOW + 7_200_000), backoff('a.yahoodns.net', NOW + 3_600_000, 'throttle'), backoff('gone.test', NOW - 1)];
  const report = sitesReport(activity, backoffs, policy, NOW);
  assert.equal(report.sites.length, SITES_SHOWN);
  assert.equal(report.total, 62, '60 active, 2 backed off; the ended back-off is not counted');
  assert.deepEqual(report.backoffs, { count: 2, suspend: 1, throttle: 1 });
  assert.deepEqual(report.sites.slice(0, 2).map((site) => site.site), ['mx59.example.test', 'mx58.example.test']);

  const few = sitesReport(activity.slice(0, 2), backoffs, policy, NOW);
  assert.deepEqual(few.sites.map((site) => [site.site, site.provider, site.backoff?.action ?? null]), [
    ['mx1.example.test', null, null],
    ['mx0.example.test', null, null],
    ['a.yahoodns.net', 'yahoo', 'throttle'],
    ['b.yahoodns.net', 'yahoo', 'suspend'],
  ]);
});

test("a throttle's settings are the ones shown while it is in force", () => {
  const throttled = backoff('mx.busy.test', NOW + 60_000, 'throttle', { connection_limit: 1, max_message_rate: rate('1/min') });
  const [site] = sitesReport([activeSite('mx.busy.test', 1, 4)], [throttled], policy, NOW).sites;
  assert.deepEqual(site, {
    site: 'mx.busy.test',
    source: 'default',
    provider: null,
    connections: 1,
    waiting: 4,
    connectionLimit: 1,
    messageRate: '1/min',
    backoff: { action: 'throttle', rule: 'built-in rule 1', until: NOW + 60_000, reply: '421 4.7.0 [TSS04] try later' },
  });
});
