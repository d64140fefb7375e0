import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mayTryAnotherAddress, MX_LIMITS, planMxHosts } from '../../src/delivery/mx-order.js';

/** A random source that replays fixed numbers, so a shuffle is reproducible. */
function sequence(...values: number[]): () => number {
  let index = 0;
  return () => values[index++ % values.length]!;
}

test('MX plans: preference order, implicit MX, null MX, duplicates and trailing dots', () => {
  for (const [name, records, expected] of [
    ['no records: the domain is its own MX', [], { kind: 'implicit' }],
    ['null MX', [{ priority: 0, exchange: '' }], { kind: 'null-mx' }],
    ['null MX written with a dot', [{ priority: 0, exchange: '.' }], { kind: 'null-mx' }],
    ['ascending preference', [{ priority: 20, exchange: 'b.test' }, { priority: 5, exchange: 'a.test' }, { priority: 10, exchange: 'c.test' }], { kind: 'hosts', hosts: ['a.test', 'c.test', 'b.test'] }],
    ['names lower-cased, trailing dot dropped, duplicates once', [{ priority: 10, exchange: 'MX.Test.' }, { priority: 20, exchange: 'mx.test' }], { kind: 'hosts', hosts: ['mx.test'] }],
  ] as const) {
    assert.deepEqual(planMxHosts([...records]), expected, name);
  }
});

test('equal preferences are shuffled, but never ahead of a better preference', () => {
  const records = [
    { priority: 10, exchange: 'a.test' },
    { priority: 10, exchange: 'b.test' },
    { priority: 10, exchange: 'c.test' },
    { priority: 20, exchange: 'backup.test' },
  ];
  assert.deepEqual(planMxHosts(records, sequence(0, 0)), { kind: 'hosts', hosts: ['b.test', 'c.test', 'a.test', 'backup.test'] });
  assert.deepEqual(planMxHosts(records, sequence(0.99, 0.99)), { kind: 'hosts', hosts: ['a.test', 'b.test', 'c.test', 'backup.test'] });
  const firsts = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const plan = planMxHosts(records);
    assert.equal(plan.kind === 'hosts' && plan.hosts[3], 'backup.test');
    if (plan.kind === 'hosts') firsts.add(plan.hosts[0]!);
  }
  assert.deepEqual([...firsts].sort(), ['a.test', 'b.test', 'c.test'], 'every equal MX comes first sometimes');
});

test('MX walk limits: at most 5 addresses, at most 2 greeted sessions (Postfix defaults)', () => {
  assert.deepEqual(MX_LIMITS, { addresses: 5, sessions: 2 });
  for (const [addressesTried, sessionsGreeted, allowed] of [
    [0, 0, true],
    [4, 0, true],
    [5, 0, false],
    [3, 1, true],
    [2, 2, false],
    [9, 9, false],
  ] as const) assert.equal(mayTryAnotherAddress({ addressesTried, sessionsGreeted }), allowed, `${addressesTried} tried, ${sessionsGreeted} greeted`);
  assert.equal(mayTryAnotherAddress({ addressesTried: 5, sessionsGreeted: 0 }, { addresses: 10, sessions: 3 }), true);
});
