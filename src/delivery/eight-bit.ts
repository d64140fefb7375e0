import { isAscii, isUtf8 } from 'node:buffer';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type { RecordedReply } from '../spool/envelope.js';
import { capabilityRefusal } from './classify.js';
import type { SevenBitForm } from './transport.js';

/**
 * What goes to an MX that does not offer 8BITMIME (RFC 6152 §3 forbids sending it 8-bit data).
 *
 * Policy: convert the 8-bit body parts to quoted-printable, as Postfix does (its 8BITMIME → 7BIT downgrade),
 * unless the message carries a DKIM-Signature: re-encoding changes the body, so the signature made upstream would
 * fail at the destination and take DMARC with it. A clear 5.6.3 bounce is worth more to the sender than mail that
 * arrives looking forged. A message with no 8-bit byte at all goes as it is, whatever its labels say, so a
 * signature over 7-bit content never stops it. Our own signature is no obstacle: signing-transport.ts signs the
 * converted original for such an MX.
 */
export type SevenBitPlan = { kind: 'as-is' } | { kind: 'converted'; body: Buffer } | { kind: 'refused'; reply: RecordedReply };

export function sevenBitPlan(message: Buffer): SevenBitPlan {
  if (isAscii(message)) return { kind: 'as-is' };
  const text = message.toString('latin1');
  const { header } = splitEntity(text);
  if (fieldNames(header).has('dkim-signature')) return { kind: 'refused', reply: capabilityRefusal('8bitmime') };
  return { kind: 'converted', body: Buffer.from(downgradeEntity(text, 'text/plain', 0, true), 'latin1') };
}

/** sevenBitPlan as the transport sends it: the message's own bytes or the converted ones, or the refusal. */
export function sevenBitForm(message: Buffer): SevenBitForm {
  const plan = sevenBitPlan(message);
  if (plan.kind === 'refused') return { refusal: { verdict: 'permanent', reply: plan.reply } };
  return { body: plan.kind === 'converted' ? plan.body : message };
}

/** A message body read whole: the rare 7-bit conversion needs all of it. */
export function readWhole(body: Buffer | Readable): Promise<Buffer> {
  return Buffer.isBuffer(body) ? Promise.resolve(body) : buffer(body);
}

const CRLF = '\r\n';
/** Nesting deeper than this is passed on as it is: no real message needs it, and recursion must stay bounded. */
const MAX_DEPTH = 32;
const EIGHT_BIT = /[\x80-\xff]/;

/**
 * One MIME entity (RFC 2045), as latin1 text so that each character is one byte: multiparts and message/rfc822
 * recurse (their own 8bit label becomes 7bit), leaf parts with 8-bit content become quoted-printable. Headers are
 * kept byte for byte (8-bit header text is RFC 6532's business, and Postfix passes it likewise); so are parts
 * with no 8-bit byte, and parts already labelled base64 or quoted-printable (8-bit bytes there are broken input,
 * and encoding them twice would corrupt them).
 */
function downgradeEntity(text: string, defaultType: string, depth: number, top = false): string {
  if (!EIGHT_BIT.test(text) || depth > MAX_DEPTH) return text;
  const { header, body } = splitEntity(text);
  if (!EIGHT_BIT.test(body)) return text;
  const fields = headerFields(header);
  const contentType = fields.get('content-type');
  const type = contentType?.split(';')[0]!.trim().toLowerCase() || defaultType;
  const encoding = fields.get('content-transfer-encoding')?.trim().toLowerCase() ?? '7bit';
  const boundary = contentType ? /boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType) : null;
  if (type.startsWith('multipart/') && boundary) {
    const inner = type === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
    return relabel(header, '7bit', encoding, top) + CRLF + downgradeMultipart(body, boundary[1] ?? boundary[2]!, inner, depth);
  }
  if (type === 'message/rfc822') return relabel(header, '7bit', encoding, top) + CRLF + downgradeEntity(body, 'text/plain', depth + 1);
  if (encoding === 'base64' || encoding === 'quoted-printable') return text;
  let rewritten = relabel(header, 'quoted-printable', encoding, top);
  // A message with no MIME header at all says nothing of its charset: UTF-8 when it decodes as such, else RFC 1428.
  if (top && !contentType) rewritten += `Content-Type: text/plain; charset=${isUtf8(Buffer.from(body, 'latin1')) ? 'utf-8' : 'unknown-8bit'}${CRLF}`;
  return rewritten + CRLF + quotedPrintable(body);
}

/** Multipart body: boundary delimiter lines (RFC 2046 §5.1.1) stay, each part between them is downgraded. */
function downgradeMultipart(body: string, boundary: string, inner: string, depth: number): string {
  const lines = body.split(CRLF);
  const out: string[] = [];
  let part: string[] | null = null;
  for (const line of lines) {
    const trimmed = line.replace(/[ \t]+$/, '');
    const delimiter = trimmed === `--${boundary}` || trimmed === `--${boundary}--`;
    if (!delimiter) {
      (part ?? out).push(line);
      continue;
    }
    if (part) out.push(downgradeEntity(part.join(CRLF), inner, depth + 1));
    out.push(line);
    // After the close delimiter comes the epilogue, kept as it is, like the preamble.
    part = trimmed === `--${boundary}` ? [] : null;
  }
  // An unterminated last part is still a part.
  if (part) out.push(downgradeEntity(part.join(CRLF), inner, depth + 1));
  return out.join(CRLF);
}

/** The header block with its Content-Transfer-Encoding replaced by `encoding` (dropped when that is the 7bit default). */
function relabel(header: string, encoding: string, current: string, top: boolean): string {
  if (current === encoding) return header;
  const kept = headerLines(header).filter((field) => !/^content-transfer-encoding\s*:/i.test(field));
  let block = kept.join('');
  if (top && !fieldNames(header).has('mime-version')) block += `MIME-Version: 1.0${CRLF}`;
  return encoding === '7bit' ? block : `${block}Content-Transfer-Encoding: ${encoding}${CRLF}`;
}

/** RFC 2045 §6.7: every line break stays a hard one; lines of at most 76 characters with soft breaks. */
export function quotedPrintable(body: string): string {
  return body.split(CRLF).map(quotedPrintableLine).join(CRLF);
}

function quotedPrintableLine(line: string): string {
  let out = '';
  let column = 0;
  for (let i = 0; i < line.length; i++) {
    const code = line.charCodeAt(i);
    const whitespace = code === 0x20 || code === 0x09;
    const literal = (code >= 0x21 && code <= 0x7e && code !== 0x3d) || (whitespace && i < line.length - 1);
    const token = literal ? line[i]! : `=${code.toString(16).toUpperCase().padStart(2, '0')}`;
    if (column + token.length > 75) {
      out += `=${CRLF}`;
      column = 0;
    }
    out += token;
    column += token.length;
  }
  return out;
}

/** Header block (every field line with its CRLF) and body (after the empty line). */
function splitEntity(text: string): { header: string; body: string } {
  if (text.startsWith(CRLF)) return { header: '', body: text.slice(2) };
  const end = text.indexOf(CRLF + CRLF);
  if (end < 0) return { header: text.endsWith(CRLF) ? text : text + CRLF, body: '' };
  return { header: text.slice(0, end + 2), body: text.slice(end + 4) };
}

/** Each field with its folded continuation lines and CRLFs. */
function headerLines(header: string): string[] {
  const fields: string[] = [];
  for (const line of header.split(CRLF).slice(0, -1)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length) fields[fields.length - 1] += line + CRLF;
    else fields.push(line + CRLF);
  }
  return fields;
}

/** Lower-cased field name → unfolded value of its first occurrence. */
function headerFields(header: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const field of headerLines(header)) {
    const colon = field.indexOf(':');
    if (colon <= 0) continue;
    const name = field.slice(0, colon).trim().toLowerCase();
    if (!fields.has(name)) fields.set(name, field.slice(colon + 1).replace(/\r\n/g, ''));
  }
  return fields;
}

function fieldNames(header: string): Set<string> {
  return new Set(headerFields(header).keys());
}
