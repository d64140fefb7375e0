import { domainToASCII } from 'node:url';
import addressparser from 'nodemailer/lib/addressparser';

/**
 * Which keys sign a message: a pure function of its From: header and the active keys (style.md: "which key
 * signs" is policy, tested with a table). DMARC (RFC 7489 §3.1.1) passes on DKIM when d= is the From: domain
 * (strict alignment) or shares its organizational domain (relaxed, the default `adkim=r`).
 */

/** The part of a key the choice needs (key-store.ts DkimKey satisfies it). */
export interface ChoosableKey {
  domain: string;
  type: 'rsa' | 'ed25519';
  state: 'pending' | 'active' | 'retiring' | 'retired';
  activated: number | null;
}

export type KeyChoice<K extends ChoosableKey> =
  /** aligned: d= is the From: domain; parent: a parent domain of it (relaxed alignment); default: --dkim-default-domain (passes DKIM, not DMARC). */
  | { signed: true; domain: string; keys: K[]; alignment: 'aligned' | 'parent' | 'default' }
  | { signed: false; reason: 'no-single-from' | 'no-key' };

/** Active keys by domain, at most one of each type (the newest activation wins if the directory says more). */
export function activeKeysByDomain<K extends ChoosableKey>(keys: readonly K[]): Map<string, K[]> {
  const byDomain = new Map<string, Map<K['type'], K>>();
  for (const key of keys) {
    if (key.state !== 'active') continue;
    const types = byDomain.get(key.domain) ?? new Map<K['type'], K>();
    const held = types.get(key.type);
    if (!held || (key.activated ?? 0) > (held.activated ?? 0)) types.set(key.type, key);
    byDomain.set(key.domain, types);
  }
  // rsa first: the signature every receiver checks leads (not all verify ed25519, RFC 8463 §1).
  return new Map([...byDomain].map(([domain, types]) => [domain, [...types.values()].sort((a, b) => (a.type === b.type ? 0 : a.type === 'rsa' ? -1 : 1))]));
}

/**
 * The From: domain first, then each parent with at least two labels (a key for example.com signs
 * news.example.com; a bare TLD never signs), then `defaultDomain`; a message whose From: is not exactly one
 * address is not signed (which domain would DMARC align with?).
 */
export function chooseSigningKeys<K extends ChoosableKey>(fromDomain: string | null, active: ReadonlyMap<string, K[]>, defaultDomain: string | null): KeyChoice<K> {
  if (fromDomain === null) return { signed: false, reason: 'no-single-from' };
  const labels = fromDomain.split('.');
  for (let i = 0; i < labels.length; i++) {
    if (i > 0 && labels.length - i < 2) break;
    const domain = labels.slice(i).join('.');
    const keys = active.get(domain);
    if (keys?.length) return { signed: true, domain, keys, alignment: i === 0 ? 'aligned' : 'parent' };
  }
  const fallback = defaultDomain === null ? undefined : active.get(defaultDomain);
  if (defaultDomain !== null && fallback?.length) return { signed: true, domain: defaultDomain, keys: fallback, alignment: 'default' };
  return { signed: false, reason: 'no-key' };
}

/**
 * The domain of the one address in the one From: field (RFC 5322 §3.6.2 allows a list, with Sender:; we sign only
 * the single-author case), lower-case A-label without a final dot; null when there are zero or several From:
 * fields, zero or several addresses, or the domain is not a domain. `fromFields` are the field values as latin1 text (one character per byte: raw
 * UTF-8, RFC 6532, is decoded here).
 */
export function singleFromDomain(fromFields: readonly string[]): string | null {
  if (fromFields.length !== 1) return null;
  const value = Buffer.from(fromFields[0]!.replace(/\r\n/g, ''), 'latin1').toString('utf8');
  const addresses = addressparser(value, { flatten: true });
  if (addresses.length !== 1) return null;
  const address = addresses[0]!.address;
  const at = address.lastIndexOf('@');
  if (at <= 0) return null;
  const domain = domainToASCII(address.slice(at + 1).trim().replace(/\.$/, ''));
  return domain && domain.includes('.') ? domain.toLowerCase() : null;
}
