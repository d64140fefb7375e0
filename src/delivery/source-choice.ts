import type { Policy } from '../config/policy.js';

/**
 * Which local address a message leaves from (shared/design/cli.md "Sources and sharing"): the pool of its AUTH
 * user, else the pool of its sender's domain, else none (the machine's own address, source `default`). Pure, so
 * the choice is a table in the tests.
 */
export function poolFor(policy: Policy, user: string | null, senderDomain: string | null): string | null {
  // A user's pool wins over a [senders] entry: the tenant who submitted it chose where its mail leaves from.
  const byUser = user === null ? undefined : policy.users.get(user)?.pool;
  if (byUser !== undefined) return byUser;
  return senderDomain === null ? null : (policy.senders.get(senderDomain)?.pool ?? null);
}

/** Until when an address may not take the site's mail (a back-off, its warm-up cap), or null: it may now. */
export type BlockedUntil = (address: string) => number | null;

/**
 * Round robin inside a pool from `next`: the first address not blocked for the site; when every one is, the one
 * free soonest (its site queue then holds the transaction until then). `next` is where the following call starts.
 */
export function chooseSource(addresses: readonly string[], next: number, blockedUntil: BlockedUntil): { address: string; next: number } {
  let soonest: { index: number; until: number } | null = null;
  for (let step = 0; step < addresses.length; step++) {
    const index = (next + step) % addresses.length;
    const until = blockedUntil(addresses[index]!);
    if (until === null) return { address: addresses[index]!, next: index + 1 };
    if (soonest === null || until < soonest.until) soonest = { index, until };
  }
  if (soonest === null) throw new RangeError('a pool has at least one address');
  return { address: addresses[soonest.index]!, next: soonest.index + 1 };
}
