import { readMessageHead } from '../spool/header-block.js';
import type { MessageSource } from '../spool/message-source.js';
import { foldLines } from 'nodemailer/lib/mime-funcs';
import MimeNode from 'nodemailer/lib/mime-node';
import { formatRfc5322Date } from '../shared/dates.js';
import type { Envelope, RecipientRecord, RecordedReply } from '../spool/envelope.js';
import type { OutgoingDsn } from './transport.js';

/**
 * The bounce we send to the original sender: RFC 3464 delivery status notification inside an RFC 6522
 * multipart/report, in the shape Postfix sends, so bounce processors (Acelle Mail and the like) read it as usual.
 */

export interface DsnInput {
  /** Our hostname: Reporting-MTA and the MAILER-DAEMON domain. */
  reportingMta: string;
  /** The message that failed; its sender must not be '' (never bounce a bounce, RFC 5321 §4.5.5). */
  envelope: Envelope;
  /** Recipients in state 'bounced' (hard failure) or 'expired' (queue lifetime ran out). */
  failed: RecipientRecord[];
  /**
   * Recipients delivered to an MX that does not offer DSN while their NOTIFY asked for SUCCESS: RFC 3461 §5.2.2
   * makes us report them, as "relayed" (RFC 3464 §2.3.3), since no later hop will.
   */
  relayed?: RecipientRecord[];
  /** The original header block, CRLF kept, as readHeaderBlock returns it. */
  originalHeaders: Buffer;
  now: Date;
  /** Left part of the DSN's Message-ID (e.g. the DSN's own queue id). */
  dsnId: string;
}

/** Status for a recipient whose lifetime ran out and had no permanent answer (RFC 3463 X.4.7: delivery time expired). */
export const EXPIRED_STATUS = '4.4.7';
const BOUNCED_STATUS = '5.0.0';
/** Remote text is untrusted and can be long (nodemailer allows 1 MB replies); Postfix cuts at 2 KB likewise. */
const MAX_TEXT = 1000;
const CRLF = '\r\n';

/** Which DSNs a recipient's NOTIFY asks for (RFC 3461 §4.1); without NOTIFY, failures only (as Postfix). */
export function wantsDsn(recipient: RecipientRecord, kind: 'SUCCESS' | 'FAILURE'): boolean {
  if (recipient.notify === undefined) return kind === 'FAILURE';
  return recipient.notify !== 'NEVER' && recipient.notify.includes(kind);
}

/** The RFC 3461 parameters of `envelope` to pass on (RFC 3461 §5.2.1), or undefined when the client gave none. */
export function outgoingDsn(envelope: Envelope): OutgoingDsn | undefined {
  const recipients = new Map<string, { notify?: ('SUCCESS' | 'FAILURE' | 'DELAY')[] | 'NEVER'; orcpt?: string }>();
  for (const r of envelope.recipients) {
    if (r.notify !== undefined || r.orcpt !== undefined) recipients.set(r.address, { ...(r.notify !== undefined && { notify: r.notify }), ...(r.orcpt !== undefined && { orcpt: r.orcpt }) });
  }
  if (!envelope.dsn && recipients.size === 0) return undefined;
  return { ret: envelope.dsn?.ret ?? null, envid: envelope.dsn?.envid ?? null, recipients };
}

export async function buildDsn(p: DsnInput): Promise<Buffer> {
  if (p.envelope.sender === '') throw new Error(`${p.envelope.id}: a message with the null sender never gets a DSN (RFC 5321 §4.5.5)`);
  const root = new MimeNode('multipart/report; report-type=delivery-status');
  root.setHeader([
    { key: 'From', value: `Mail Delivery System <MAILER-DAEMON@${p.reportingMta}>` },
    { key: 'To', value: `<${p.envelope.sender}>` },
    // Postfix's subjects, which bounce processors match on.
    { key: 'Subject', value: p.failed.length ? 'Undelivered Mail Returned to Sender' : 'Successful Mail Delivery Report' },
    // RFC 3834 §5: marks it as an automatic reply so vacation responders and list managers leave it alone.
    { key: 'Auto-Submitted', value: 'auto-replied' },
    { key: 'Message-ID', value: `<${p.dsnId}@${p.reportingMta}>` },
    { key: 'Date', value: formatRfc5322Date(p.now) },
  ]);
  root.createChild('text/plain; charset=utf-8').setContent(humanReport(p));
  // MimeNode sends message/* content as given, without encoding or folding; it is 7bit because every value is
  // made ASCII below (RFC 3464 §2.1.2 forbids anything else in message/delivery-status).
  root.createChild('message/delivery-status').setHeader('Content-Transfer-Encoding', '7bit').setContent(deliveryStatus(p));
  appendOriginalHeaders(root, p.originalHeaders);
  return root.build();
}

/**
 * RFC 6522 §4 allows text/rfc822-headers to be 7bit or, when the headers are not 7-bit clean, quoted-printable.
 * 7bit keeps the block byte for byte, which bounce processors that grep for `X-Acelle-Message-Id` rely on; but
 * MimeNode would QP-encode any text/* line over 76 characters (most DKIM and Received lines), so the 7bit part is
 * written raw behind headers MimeNode built. Raw 8-bit (an SMTPUTF8 Subject, a broken client) gets QP instead of
 * 8bit: the sender's MX may not offer 8BITMIME, and QP is decoded back to the same bytes by any MIME parser.
 */
function appendOriginalHeaders(root: MimeNode, headers: Buffer): void {
  const part = root.createChild('text/rfc822-headers');
  if (isSevenBitClean(headers)) {
    part.setHeader('Content-Transfer-Encoding', '7bit');
    part.setRaw(Buffer.concat([Buffer.from(`${part.buildHeaders()}${CRLF}${CRLF}`), headers]));
  } else {
    part.setHeader('Content-Transfer-Encoding', 'quoted-printable').setContent(headers);
  }
}

/** RFC 5322 §2.1.1 and RFC 2045 §2.7: no NUL, no 8-bit, CR and LF only as CRLF, lines of at most 998 octets. */
function isSevenBitClean(block: Buffer): boolean {
  const text = block.toString('latin1');
  return !/[^\x01-\x7f]|\r(?!\n)|(?<!\r)\n/.test(text) && text.split(CRLF).every((line) => line.length <= 998);
}

function deliveryStatus(p: DsnInput): string {
  const perMessage = [
    // RFC 3464 §2.2.1: the client's ENVID, first, so the sender can match the report to its submission.
    ...(p.envelope.dsn?.envid ? [`Original-Envelope-Id: ${ascii(p.envelope.dsn.envid)}`] : []),
    `Reporting-MTA: dns; ${ascii(p.reportingMta)}`,
    // Postfix sends X-Postfix-Queue-ID.
    `X-Queue-ID: ${ascii(p.envelope.id)}`,
    `Arrival-Date: ${formatRfc5322Date(new Date(p.envelope.arrivedAt))}`,
  ];
  const groups = [...p.failed.map((r) => recipientFields(r, 'failed')), ...(p.relayed ?? []).map((r) => recipientFields(r, 'relayed'))];
  // RFC 3464 §2.1: per-message fields, then each recipient's group after a blank line.
  return [perMessage, ...groups].map((fields) => fields.map((field) => field + CRLF).join('')).join(CRLF);
}

function recipientFields(r: RecipientRecord, action: 'failed' | 'relayed'): string[] {
  const status = action === 'failed' ? dsnStatus(r) : relayedStatus(r);
  const fields = [...(r.orcpt ? [`Original-Recipient: ${originalRecipientField(r.orcpt)}`] : []), `Final-Recipient: ${addressField(r.address)}`, `Action: ${action}`, `Status: ${status}`];
  if (r.remoteMta) fields.push(`Remote-MTA: dns; ${ascii(r.remoteMta)}`);
  const diagnostic = diagnosticCode(r.lastReply);
  // Folded like Postfix does: a long remote reply stays readable and within RFC 5322's 78-character advice.
  if (diagnostic) fields.push(foldLines(`Diagnostic-Code: ${diagnostic}`, 76).replace(/\r\n(?=\S)/g, '\r\n '));
  if (r.lastAttemptAt !== null) fields.push(`Last-Attempt-Date: ${formatRfc5322Date(new Date(r.lastAttemptAt))}`);
  return fields;
}

/**
 * A hard bounce reports the remote's 5.x.x code, else 5.0.0. An expired recipient reports 4.4.7 unless its last
 * answer was itself permanent (a 5.x.x code on a reply we still retried, e.g. 552 5.5.3).
 */
export function dsnStatus(r: RecipientRecord): string {
  const enhanced = r.lastReply?.enhanced ?? null;
  if (enhanced !== null && enhanced.startsWith('5.')) return enhanced;
  return r.state === 'expired' ? EXPIRED_STATUS : BOUNCED_STATUS;
}

/** A relayed recipient reports the MX's 2.x.x, else 2.0.0. */
function relayedStatus(r: RecipientRecord): string {
  const enhanced = r.lastReply?.enhanced ?? null;
  return enhanced !== null && enhanced.startsWith('2.') ? enhanced : '2.0.0';
}

/** ORCPT as the client gave it (`rfc822;addr`, decoded): its type kept, the address made 7-bit as in addressField. */
function originalRecipientField(orcpt: string): string {
  const semicolon = orcpt.indexOf(';');
  if (semicolon <= 0) return addressField(orcpt);
  const type = orcpt.slice(0, semicolon).trim();
  const address = orcpt.slice(semicolon + 1).trim();
  if (/^[\x21-\x7e]+$/.test(address)) return `${ascii(type)}; ${address}`;
  return addressField(address);
}

/** `smtp;` only for a real SMTP reply (RFC 3464 §2.3.6); our own network/DNS failures get an X- type as Postfix's `X-Postfix;`. */
function diagnosticCode(reply: RecordedReply | null): string | null {
  if (!reply) return null;
  if (reply.code !== null) return ascii(`smtp; ${formatReply(reply)}`);
  return reply.text ? ascii(`X-mta-relay; ${formatReply(reply)}`) : null;
}

function formatReply(reply: RecordedReply): string {
  return [reply.code, reply.enhanced, clip(reply.text)].filter((part) => part !== null && part !== '').join(' ');
}

/** RFC 6533 §3: a non-ASCII address travels as `utf-8;` with each non-QCHAR written `\x{HEX}`, keeping the part 7-bit. */
function addressField(address: string): string {
  if (/^[\x21-\x7e]+$/.test(address)) return `rfc822; ${address}`;
  const xtext = Array.from(address, (char) => (/^[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]$/.test(char) ? char : `\\x{${char.codePointAt(0)!.toString(16).toUpperCase()}}`));
  return `utf-8; ${xtext.join('')}`;
}

function humanReport(p: DsnInput): string {
  const lines = [
    `This is the mail system at host ${p.reportingMta}.`,
    '',
    p.failed.length ? 'Your message could not be delivered to one or more recipients.' : 'Your message was delivered to the next mail system for the recipients below.',
    'Its headers are attached, and the details for each recipient follow.',
    '',
    `Queue ID: ${p.envelope.id}`,
    '',
  ];
  for (const r of p.failed) {
    const from = r.remoteMta ? ` from ${r.remoteMta}` : '';
    lines.push(
      r.state === 'expired'
        ? `<${r.address}>: delivery was still failing when the queue lifetime ran out (${r.attempts} attempts); gave up.`
        : `<${r.address}>: delivery failed permanently (hard bounce).`,
    );
    lines.push(r.lastReply ? `    Last reply${from}: ${formatReply(r.lastReply)}` : '    No reply was received.', '');
  }
  for (const r of p.relayed ?? []) {
    lines.push(
      `<${r.address}>: relayed to ${r.remoteMta ?? 'the next mail system'}, which does not report delivery status;`,
      '    this is the last notice you will get about this recipient, unless a later system reports a failure.',
    );
    if (r.lastReply) lines.push(`    Reply: ${formatReply(r.lastReply)}`);
    lines.push('');
  }
  return lines.join(CRLF);
}

function clip(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > MAX_TEXT ? `${line.slice(0, MAX_TEXT)}...` : line;
}

/** Remote text and hostnames are untrusted: anything outside printable ASCII becomes '?' (Postfix's printable()). */
function ascii(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

/** The original header block for the DSN's text/rfc822-headers part: whole lines only, at most `limit` bytes. */
export async function readHeaderBlock(message: MessageSource, limit = 256 * 1024): Promise<Buffer> {
  const head = await readMessageHead(message, limit);
  if (head.complete) return head.bytes;
  const lastLineEnd = head.bytes.lastIndexOf(CRLF);
  return head.bytes.subarray(0, lastLineEnd < 0 ? 0 : lastLineEnd + 2);
}
