import { createHash, sign, type KeyObject } from 'node:crypto';

/**
 * The header half of a DKIM signature (RFC 6376 §3.5, §3.7, §5.4): which fields are signed, their relaxed
 * canonical form, and the DKIM-Signature field itself. The body hash comes from body-hash.ts.
 *
 * Why not mailauth's own signer (which we use for the body): it parses the private key's PEM again for every
 * signature (node's createPrivateKey refuses a KeyObject; ~0.4–0.6 ms per signature, more than the signature),
 * its relaxed header form replaces `\s` in a latin1 string, which also turns byte 0xA0 (inside UTF-8 letters such
 * as "à", C3 A0) into a space so a raw UTF-8 Subject fails at the receiver, and 4.13.3 does not over-sign.
 */

/** Signed when present (RFC 8058 §4 needs List-Unsubscribe and List-Unsubscribe-Post; Gmail's bulk-sender rules Feedback-ID). */
export const SIGNED_FIELDS = [
  'From',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'Reply-To',
  'In-Reply-To',
  'References',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
  'List-Id',
  'Feedback-ID',
] as const;

/**
 * Listed once more than present (RFC 6376 §8.15): a nonexistent instance contributes nothing when signing, so a
 * From: added later (a second author shown to the reader) breaks the signature instead of riding on it.
 */
const OVERSIGNED = ['From'] as const;

export interface HeaderField {
  /** Lower-case name. */
  name: string;
  /** The whole field as latin1 text (one character per byte), name and folding included, without its final CRLF. */
  raw: string;
}

export interface SigningKey {
  domain: string;
  selector: string;
  type: 'rsa' | 'ed25519';
  privateKey: KeyObject;
}

const CRLF = '\r\n';

/** The fields of a header block (the bytes before the empty line), continuation lines joined to their field. */
export function parseHeaderFields(block: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  for (const line of block.toString('latin1').split(CRLF)) {
    if (line === '') continue;
    const last = fields.at(-1);
    if (last && (line[0] === ' ' || line[0] === '\t')) {
      last.raw += CRLF + line;
      continue;
    }
    const colon = line.indexOf(':');
    // A line without a colon is no field (and so never signed); it still takes its continuation lines.
    fields.push({ name: colon < 0 ? '' : line.slice(0, colon).replace(/[ \t]+$/, '').toLowerCase(), raw: line });
  }
  return fields;
}

/**
 * h= and the fields it covers, in h= order: each listed name as often as the message has it, the last instance
 * first (RFC 6376 §5.4.2: verifiers take instances from the bottom up), then the over-signed names once more.
 */
export function signedHeaders(fields: readonly HeaderField[]): { names: string[]; fields: HeaderField[] } {
  const names: string[] = [];
  const covered: HeaderField[] = [];
  for (const name of SIGNED_FIELDS) {
    const lower = name.toLowerCase();
    for (let i = fields.length - 1; i >= 0; i--) {
      if (fields[i]!.name !== lower) continue;
      names.push(name);
      covered.push(fields[i]!);
    }
  }
  names.push(...OVERSIGNED);
  return { names, fields: covered };
}

/** RFC 6376 §3.4.2, on bytes: name lower-cased; unfolded; runs of SP/HTAB one SP; none at either end of the value or around the colon. */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(':');
  const name = raw.slice(0, colon).replace(/[ \t]+$/, '').replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .replace(/^ | $/g, '');
  return `${name}:${value}`;
}

/**
 * DKIM-Signature fields for `keys`, each ending in CRLF, to put before the message: a=rsa-sha256 or
 * a=ed25519-sha256 (RFC 8463), c=relaxed/relaxed, t= the signing time. The canonical header data is shared.
 */
export function signatureFields(fields: readonly HeaderField[], bodyHash: string, keys: readonly SigningKey[], time: number): Buffer {
  const { names, fields: covered } = signedHeaders(fields);
  const canonical = covered.map((field) => relaxedHeader(field.raw) + CRLF).join('');
  const lines = keys.map((key) => {
    const unsigned = signatureField(key, names, bodyHash, Math.floor(time / 1000));
    const data = Buffer.from(canonical + relaxedHeader(unsigned), 'latin1');
    // RFC 8463 §3: Ed25519 (PureEdDSA) signs the SHA-256 hash of the data, not the data.
    const signature = key.type === 'rsa' ? sign('sha256', data, key.privateKey) : sign(null, createHash('sha256').update(data).digest(), key.privateKey);
    return unsigned + fold(signature.toString('base64')) + CRLF;
  });
  return Buffer.from(lines.join(''), 'latin1');
}

/** The field up to its empty `b=`, folded below 78 characters (RFC 5322 §2.1.1); FWS inside h=, bh= and b= is ignored by verifiers. */
function signatureField(key: SigningKey, names: string[], bodyHash: string, seconds: number): string {
  const algorithm = key.type === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256';
  const h: string[] = [];
  let line = ' h=';
  for (const [i, name] of names.entries()) {
    const piece = name + (i < names.length - 1 ? ':' : ';');
    if (line.length + piece.length > 76) {
      h.push(line);
      line = ' ';
    }
    line += piece;
  }
  h.push(line);
  return [`DKIM-Signature: v=1; a=${algorithm}; c=relaxed/relaxed; d=${key.domain};`, ` s=${key.selector}; t=${seconds};`, ...h, ` bh=${bodyHash};`, ' b='].join(CRLF);
}

function fold(base64: string): string {
  const pieces: string[] = [];
  // The first piece shares the line with " b=".
  for (let at = 0; at < base64.length; at += at === 0 ? 72 : 75) pieces.push(base64.slice(at, at + (at === 0 ? 72 : 75)));
  return pieces.join(CRLF + ' ');
}
