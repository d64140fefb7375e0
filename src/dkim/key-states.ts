import type { DkimKeyRecord } from './key-store.js';

/**
 * The life of a DKIM key, as pure functions of the domain's records (tested with tables):
 *
 *     pending ──activate──▶ active ──(another key of its type activated)──▶ retiring ──retire──▶ retired ──remove──▶ gone
 *                            └─────────────────────retire──────────────────────────────────────▲
 *
 * A retiring key can be activated again (a rollback: the new key turned out wrong). Nothing here looks at DNS:
 * the CLI refuses `activate` unless the record is published (dns-check.ts). A domain has at most one active key
 * of each type (rsa and ed25519 may both be active: then mail carries both signatures).
 */

export type DkimTransition = { ok: true; changes: DkimKeyRecord[] } | { ok: false; reason: string };

const find = (records: readonly DkimKeyRecord[], domain: string, selector: string) => records.find((record) => record.domain === domain && record.selector === selector);
const unknown = (domain: string, selector: string): DkimTransition => ({ ok: false, reason: `${domain} has no key with selector ${selector}` });

/**
 * `selector` becomes the active key of its type for `domain`; the key of that type active until now becomes
 * retiring (it stops signing, its record must stay published until mail signed with it has been verified).
 * The changes come in the order to write them: the new active key first, so a reader between the two writes sees
 * two active keys (and signs with the latest activated: key-choice.ts activeKeysByDomain), never none.
 */
export function activateKey(records: readonly DkimKeyRecord[], domain: string, selector: string, now: number): DkimTransition {
  const key = find(records, domain, selector);
  if (!key) return unknown(domain, selector);
  if (key.state === 'active') return { ok: false, reason: `${domain} ${selector} is already active` };
  if (key.state === 'retired') return { ok: false, reason: `${domain} ${selector} is retired; a retired key is never used again (generate a new one)` };
  const previous = records.filter((record) => record.domain === domain && record.type === key.type && record.state === 'active');
  return { ok: true, changes: [{ ...key, state: 'active', activated: now }, ...previous.map((record) => ({ ...record, state: 'retiring' as const }))] };
}

/** The key stops signing for good (active or retiring → retired); its record can be withdrawn afterwards. */
export function retireKey(records: readonly DkimKeyRecord[], domain: string, selector: string, now: number): DkimTransition {
  const key = find(records, domain, selector);
  if (!key) return unknown(domain, selector);
  if (key.state !== 'active' && key.state !== 'retiring') return { ok: false, reason: `${domain} ${selector} is ${key.state}; only an active or retiring key can be retired` };
  return { ok: true, changes: [{ ...key, state: 'retired', retired: now }] };
}

/** Only a retired key may be deleted: one still signing, or still verifying mail in flight, never is. */
export function removeKey(records: readonly DkimKeyRecord[], domain: string, selector: string): DkimTransition {
  const key = find(records, domain, selector);
  if (!key) return unknown(domain, selector);
  if (key.state !== 'retired') return { ok: false, reason: `${domain} ${selector} is ${key.state}; only a retired key can be removed (retire it first)` };
  return { ok: true, changes: [key] };
}

