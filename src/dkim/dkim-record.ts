import { createPublicKey, type KeyObject } from 'node:crypto';

/**
 * The DKIM key record (RFC 6376 §3.6.1): what we publish for a key, and what a TXT record found in DNS says.
 * Pure: the DNS look-up is dns-check.ts's.
 */

export type DkimRecordKeyType = 'rsa' | 'ed25519';

export interface PublishableKey {
  type: DkimRecordKeyType;
  privateKey: KeyObject;
}

/** A DNS character-string holds at most 255 octets (RFC 1035 §3.3.14); longer records are several, joined. */
export const TXT_STRING_MAX = 255;
// An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte header followed by the 32-byte key (RFC 8410 §4).
const ED25519_SPKI_LENGTH = 44;
const ED25519_KEY_LENGTH = 32;

/**
 * The bytes `p=` carries: for rsa the DER SubjectPublicKeyInfo (what opendkim-genkey publishes, `MIIBIjAN…`),
 * for ed25519 the bare 32-byte public key (RFC 8463 §4.2: not wrapped in SPKI).
 */
export function dkimPublicKeyData(key: PublishableKey): Buffer {
  const spki = createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' });
  if (key.type === 'rsa') return spki;
  if (spki.length !== ED25519_SPKI_LENGTH) throw new Error(`not an Ed25519 key (SPKI of ${spki.length} bytes)`);
  return spki.subarray(spki.length - ED25519_KEY_LENGTH);
}

/** `v=DKIM1; k=rsa; p=<base64>`: the TXT record to publish at `SEL._domainkey.DOMAIN`. */
export function dkimTxtRecord(key: PublishableKey): string {
  return `v=DKIM1; k=${key.type}; p=${dkimPublicKeyData(key).toString('base64')}`;
}

/** The record as character-strings of at most 255 characters, the key data starting a string of its own. */
export function splitTxtRecord(record: string): string[] {
  const at = record.indexOf('p=');
  const head = at > 0 ? [record.slice(0, at)] : [];
  const rest = at > 0 ? record.slice(at) : record;
  const strings = [...head];
  for (let start = 0; start < rest.length; start += TXT_STRING_MAX) strings.push(rest.slice(start, start + TXT_STRING_MAX));
  return strings;
}

/** The zone-file line, e.g. `s1._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; " "p=MIIB…" "…" )`. */
export function dkimZoneFileLine(recordName: string, key: PublishableKey): string {
  // Base64 and the tag text contain no `"` or `\`, so no string needs escaping.
  return `${recordName}. IN TXT ( ${splitTxtRecord(dkimTxtRecord(key)).map((s) => `"${s}"`).join(' ')} )`;
}

/**
 * RFC 6376 §3.2 tag-list: `tag=value` pairs separated by `;`, whitespace (FWS) allowed around names, `=` and values.
 * Null when it is not a tag-list, or a tag occurs twice ("the entire tag-list is invalid").
 */
export function parseTagList(text: string): Map<string, string> | null {
  const tags = new Map<string, string>();
  const specs = text.split(';');
  // A trailing `;` is allowed; an empty spec elsewhere is not.
  if (specs.length > 1 && specs.at(-1)!.trim() === '') specs.pop();
  for (const spec of specs) {
    const match = /^[ \t\r\n]*([A-Za-z][A-Za-z0-9_]*)[ \t\r\n]*=[ \t\r\n]*(.*?)[ \t\r\n]*$/s.exec(spec);
    if (!match) return null;
    const [, name, value] = match as unknown as [string, string, string];
    // tag-value: printable ASCII except `;`, with inner whitespace.
    if (!/^[\x21-\x3a\x3c-\x7e \t\r\n]*$/.test(value)) return null;
    if (tags.has(name)) return null;
    tags.set(name, value);
  }
  return tags;
}

export interface DkimTxtRecord {
  /** `k=`, default rsa (RFC 6376 §3.6.1); any other value is kept as given. */
  keyType: string;
  /** Decoded `p=`; empty when the key is revoked (`p=` with no data). */
  publicKey: Buffer;
  /** `h=` hash algorithms, null when absent (all allowed). */
  hashes: string[] | null;
  /** `s=` service types, null when absent (`*`). */
  services: string[] | null;
}

export type ParsedDkimTxt = { ok: true; record: DkimTxtRecord } | { ok: false; reason: string };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const list = (value: string | undefined) => (value === undefined ? null : value.split(':').map((item) => item.trim().toLowerCase()));

/** One TXT record, its strings already joined (RFC 6376 §3.6.2.2: "concatenated together without adding spaces"). */
export function parseDkimTxtRecord(text: string): ParsedDkimTxt {
  const tags = parseTagList(text);
  if (!tags) return { ok: false, reason: 'not a tag=value list' };
  // §3.6.1: v= is optional, but when present it must be the first tag and exactly DKIM1.
  const version = tags.get('v');
  if (version !== undefined && (version !== 'DKIM1' || tags.keys().next().value !== 'v')) return { ok: false, reason: `v=${version} (must be the first tag and DKIM1)` };
  const data = tags.get('p');
  if (data === undefined) return { ok: false, reason: 'no p= tag' };
  const base64 = data.replace(/[ \t\r\n]+/g, '');
  if (!BASE64.test(base64)) return { ok: false, reason: 'p= is not base64' };
  return { ok: true, record: { keyType: (tags.get('k') ?? 'rsa').toLowerCase(), publicKey: Buffer.from(base64, 'base64'), hashes: list(tags.get('h')), services: list(tags.get('s')) } };
}

/**
 * Why a parsed record would not verify signatures made with `key`, or null when it would. An rsa key published
 * as a bare PKCS#1 RSAPublicKey instead of SPKI still counts as the same key: verifiers accept both.
 */
export function recordMismatch(record: DkimTxtRecord, key: PublishableKey): string | null {
  if (record.publicKey.length === 0) return 'the record is revoked (empty p=)';
  if (record.keyType !== key.type) return `k=${record.keyType}, the key is ${key.type}`;
  if (record.hashes && !record.hashes.includes('sha256')) return `h=${record.hashes.join(':')} excludes sha256`;
  if (record.services && !record.services.includes('*') && !record.services.includes('email')) return `s=${record.services.join(':')} excludes email`;
  const expected = dkimPublicKeyData(key);
  if (key.type === 'ed25519') return record.publicKey.equals(expected) ? null : 'p= is another key';
  return sameRsaKey(record.publicKey, expected) ? null : 'p= is another key';
}

function sameRsaKey(published: Buffer, spki: Buffer): boolean {
  if (published.equals(spki)) return true;
  try {
    return createPublicKey({ key: published, format: 'der', type: 'pkcs1' }).export({ format: 'der', type: 'spki' }).equals(spki);
  } catch {
    return false;
  }
}
