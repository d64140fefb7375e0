import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePolicy } from '../../src/config/policy.js';
import { chooseSource, poolFor } from '../../src/delivery/source-choice.js';

const policy = parsePolicy(`
[pools.a]
sources = ["192.0.2.1"]
[pools.b]
sources = ["192.0.2.2"]
[users.u]
pool = "a"
[users.plain]
quota = "100/day"
[senders."shop.example"]
pool = "b"
`, 'policy.toml');

test('poolFor: the user\'s pool, else the sender domain\'s, else none', () => {
  const table: [string | null, string | null, string | null][] = [
    ['u', 'shop.example', 'a'],
    ['u', null, 'a'],
    ['plain', 'shop.example', 'b'],
    [null, 'shop.example', 'b'],
    ['nobody', 'other.example', null],
    [null, null, null],
  ];
  for (const [user, domain, pool] of table) assert.equal(poolFor(policy, user, domain), pool, `${user} ${domain}`);
});

test('chooseSource: round robin, skipping blocked addresses; all blocked: the one free soonest', () => {
  const addresses = ['A', 'B', 'C'];
  const blocked = (map: Record<string, number>) => (address: string) => map[address] ?? null;
  const table: [number, Record<string, number>, string, number][] = [
    [0, {}, 'A', 1],
    [1, {}, 'B', 2],
    [2, {}, 'C', 3],
    [3, {}, 'A', 1],
    [0, { A: 50 }, 'B', 2],
    [2, { C: 50 }, 'A', 1],
    [0, { A: 50, B: 60, C: 40 }, 'C', 3],
    [1, { A: 10, B: 60, C: 40 }, 'A', 1],
  ];
  for (const [next, map, address, after] of table) assert.deepEqual(chooseSource(addresses, next, blocked(map)), { address, next: after }, `${next} ${JSON.stringify(map)}`);
});
