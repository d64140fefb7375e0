import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { activateKey, removeKey, retireKey } from '../../src/dkim/key-states.js';
import type { DkimKeyRecord, DkimKeyState, DkimKeyType } from '../../src/dkim/key-store.js';

const NOW = Date.UTC(2026, 0, 15);
const T0 = Date.UTC(2025, 6, 1);

function key(selector: string, state: DkimKeyState, type: DkimKeyType = 'rsa', domain = 'shop.example'): DkimKeyRecord {
  return { domain, selector, type, bits: type === 'rsa' ? 2048 : null, state, created: T0, activated: state === 'pending' ? null : T0, retired: state === 'retired' ? T0 : null };
}

/** A compact picture of a transition: `selector:state` of each changed record, in write order, or the refusal. */
function outcome(result: ReturnType<typeof activateKey>): string[] | string {
  return result.ok ? result.changes.map((record) => `${record.domain}/${record.selector}:${record.state}`) : result.reason;
}

describe('DKIM key states', () => {
  const cases: { name: string; records: DkimKeyRecord[]; selector: string; expect: string[] | RegExp }[] = [
    { name: 'first key of a domain', records: [key('new', 'pending')], selector: 'new', expect: ['shop.example/new:active'] },
    {
      name: 'rotation: the active key of the same type becomes retiring, written after the new one',
      records: [key('old', 'active'), key('new', 'pending')],
      selector: 'new',
      expect: ['shop.example/new:active', 'shop.example/old:retiring'],
    },
    {
      name: 'the active key of the other type keeps signing (rsa and ed25519 both sign)',
      records: [key('ed', 'active', 'ed25519'), key('new', 'pending')],
      selector: 'new',
      expect: ['shop.example/new:active'],
    },
    {
      name: "another domain's active key is untouched",
      records: [key('old', 'active', 'rsa', 'other.example'), key('new', 'pending')],
      selector: 'new',
      expect: ['shop.example/new:active'],
    },
    {
      name: 'a retiring key can be activated again (rollback)',
      records: [key('old', 'retiring'), key('new', 'active')],
      selector: 'old',
      expect: ['shop.example/old:active', 'shop.example/new:retiring'],
    },
    { name: 'already active', records: [key('cur', 'active')], selector: 'cur', expect: /already active/ },
    { name: 'retired keys never come back', records: [key('gone', 'retired')], selector: 'gone', expect: /retired/ },
    { name: 'unknown selector', records: [key('cur', 'active')], selector: 'nope', expect: /no key with selector nope/ },
    { name: 'same selector at another domain is not this key', records: [key('s1', 'pending', 'rsa', 'other.example')], selector: 's1', expect: /no key/ },
  ];
  for (const c of cases) {
    test(`activate: ${c.name}`, () => {
      const result = activateKey(c.records, 'shop.example', c.selector, NOW);
      if (c.expect instanceof RegExp) assert.match(outcome(result) as string, c.expect);
      else assert.deepEqual(outcome(result), c.expect);
    });
  }

  test('activate stamps the activation time and leaves the retiring key otherwise as it was', () => {
    const old = key('old', 'active');
    const result = activateKey([old, key('new', 'pending')], 'shop.example', 'new', NOW);
    assert.ok(result.ok);
    assert.equal(result.changes[0]!.activated, NOW);
    assert.deepEqual(result.changes[1], { ...old, state: 'retiring' });
  });

  const retireCases: [DkimKeyState, string | RegExp][] = [
    ['active', 'retired'],
    ['retiring', 'retired'],
    ['pending', /pending; only an active or retiring key can be retired/],
    ['retired', /retired; only an active or retiring/],
  ];
  for (const [state, expect] of retireCases) {
    test(`retire: ${state}`, () => {
      const result = retireKey([key('k', state)], 'shop.example', 'k', NOW);
      if (expect instanceof RegExp) return assert.match(outcome(result) as string, expect);
      assert.deepEqual(outcome(result), [`shop.example/k:${expect}`]);
      assert.ok(result.ok);
      assert.equal(result.changes[0]!.retired, NOW);
    });
  }

  const removeCases: [DkimKeyState, boolean][] = [
    ['retired', true],
    ['retiring', false],
    ['active', false],
    ['pending', false],
  ];
  for (const [state, allowed] of removeCases) {
    test(`remove: ${state} → ${allowed ? 'removed' : 'refused'}`, () => {
      const result = removeKey([key('k', state)], 'shop.example', 'k');
      assert.equal(result.ok, allowed, JSON.stringify(result));
      if (!result.ok) assert.match(result.reason, /only a retired key can be removed/);
    });
  }
});
