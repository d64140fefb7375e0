import type { RecordedReply } from '../spool/envelope.js';

/**
 * The one place that decides what a remote reply or a delivery error means for a recipient. "Why was this
 * recipient bounced?" is answered by REPLY_RULES and NETWORK_ERRORS below, not by the connection code.
 */
export type Verdict = 'delivered' | 'transient' | 'permanent';

export interface ReplyRule {
  match: (code: number, enhanced: string | null) => boolean;
  verdict: Verdict;
  why: string;
}

const codeClass = (code: number): number => Math.floor(code / 100);
const enhancedClass = (enhanced: string | null): number | null => (enhanced === null ? null : Number(enhanced[0]));

/** First matching row wins; the last three rows are the RFC 5321 §4.2.1 rule every other row is an exception to. */
export const REPLY_RULES: readonly ReplyRule[] = [
  {
    match: (code) => ![2, 4, 5].includes(codeClass(code)),
    verdict: 'transient',
    why: 'RFC 5321 §4.2.1: only 2yz, 4yz and 5yz complete a command; 1yz, 3yz or garbage here is a peer (or us) out of step, and a retry costs less than a false bounce',
  },
  {
    match: (code, enhanced) => code === 552 && enhanced !== null && /^[45]\.5\.3$/.test(enhanced),
    verdict: 'transient',
    why: 'RFC 5321 §4.5.3.1.10: RFC 821 wrongly gave "too many recipients" (RFC 3463 X.5.3) the code 552; clients SHOULD treat it as temporary and send the rest in a later transaction',
  },
  {
    match: (code) => code === 503,
    verdict: 'transient',
    why: 'RFC 5321 §4.2.3: 503 "bad sequence of commands" is about our session, not the recipient (e.g. pipelining out of step); a new session can succeed, and we never bounce on our own bug',
  },
  {
    match: (code, enhanced) => codeClass(code) === 5 && enhancedClass(enhanced) === 4,
    verdict: 'permanent',
    why: 'RFC 3463 §2 gives the enhanced class the meaning of the reply code\'s first digit; when they disagree, trust the reply code as Postfix does (smtp_chat.c ignores an out-of-sync enhanced code): it is what every client sees',
  },
  {
    match: (code, enhanced) => codeClass(code) === 4 && enhancedClass(enhanced) === 5,
    verdict: 'transient',
    why: 'As above, the reply code wins: a 4yz asked us to try again, whatever its enhanced code says',
  },
  { match: (code) => codeClass(code) === 2, verdict: 'delivered', why: 'RFC 5321 §4.2.1: 2yz positive completion' },
  { match: (code) => codeClass(code) === 4, verdict: 'transient', why: 'RFC 5321 §4.2.1: 4yz transient negative completion' },
  { match: (code) => codeClass(code) === 5, verdict: 'permanent', why: 'RFC 5321 §4.2.1: 5yz permanent negative completion' },
];

export function classifySmtpReply(code: number, enhanced: string | null): Verdict {
  return REPLY_RULES.find((rule) => rule.match(code, enhanced))?.verdict ?? 'transient';
}

/** RFC 3463 §2: class (2, 4 or 5) . subject (1-3 digits) . detail (1-3 digits). */
const ENHANCED = /^\s*(?:\d{3}[ -])?\s*([245]\.\d{1,3}\.\d{1,3})(?=\s|$)/;

/** The enhanced status code at the start of reply text, with or without the basic code in front (`550-5.1.1 …`). */
export function parseEnhancedCode(text: string): string | null {
  return ENHANCED.exec(text)?.[1] ?? null;
}

/**
 * Errors that never reached an SMTP reply. RFC 3463: X.4.1 no answer from host (we never got a session), X.4.2 bad
 * connection (the session broke), X.4.3 directory server failure (DNS could not answer now). Node's own codes are
 * listed because nodemailer keeps them in `originalCode` and our DNS layer passes them through.
 */
const NETWORK_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: '4.4.1',
  EHOSTUNREACH: '4.4.1',
  ENETUNREACH: '4.4.1',
  EHOSTDOWN: '4.4.1',
  EADDRNOTAVAIL: '4.4.1',
  CONNECT_TIMEOUT: '4.4.1',
  ECONNECTION: '4.4.2',
  ESOCKET: '4.4.2',
  ETIMEDOUT: '4.4.2',
  ECONNRESET: '4.4.2',
  ECONNABORTED: '4.4.2',
  EPIPE: '4.4.2',
  ETLS: '4.4.2',
  EPROTOCOL: '4.4.2',
  // Ours: a reply that did not complete within its deadline (smtp-deadlines.ts), and an MX address we refuse to
  // connect to (address-scope.ts: this host, or our own networks outside a lab set-up; X.4.4 unable to route).
  EDEADLINE: '4.4.2',
  EREFUSEDADDRESS: '4.4.4',
  // Ours: a relay certificate that --relay-tls verify refused (RFC 3463 X.7.5, cryptographic failure).
  ECERTUNTRUSTED: '4.7.5',
  EDNS: '4.4.3',
  // Ours (resolve-mx.ts): a CNAME chain that loops is a zone to repair, not a domain without mail.
  ECNAMELOOP: '4.4.3',
  ESERVFAIL: '4.4.3',
  ETIMEOUT: '4.4.3',
  EAI_AGAIN: '4.4.3',
  ENOTFOUND: '4.4.3',
  EREFUSED: '4.4.3',
};

/** What nodemailer's SMTP client and our DNS/network layer put on the errors they raise. */
interface DeliveryErrorFields {
  code?: unknown;
  originalCode?: unknown;
  timeoutType?: unknown;
  responseCode?: unknown;
  response?: unknown;
  message?: unknown;
  enhanced?: unknown;
  permanent?: unknown;
}

/**
 * Postfix smtp_skip_5xx_greeting = yes: a 5yz banner means "this MX will not talk to us" (a blocklist, an
 * overloaded or misconfigured host), not "this recipient does not exist". The walk moves on to the next MX, and
 * when none greets the recipient is deferred: the reply code and text stay as the remote gave them, the enhanced
 * code becomes 4.x.x (as Postfix rewrites its DSN status), so the retry schedule, not one bad MX, decides.
 */
function skipFiveXxGreeting(reply: RecordedReply): { verdict: Verdict; reply: RecordedReply } {
  return { verdict: 'transient', reply: { ...reply, enhanced: `4.${(reply.enhanced ?? '5.0.0').slice(2)}` } };
}

export function classifyDeliveryError(error: unknown, stage?: string): { verdict: Verdict; reply: RecordedReply } {
  const fields: DeliveryErrorFields = typeof error === 'object' && error !== null ? error : {};
  // nodemailer appends the whole reply to its message, so the message is bounded like a reply.
  const message = oneLine(replyExcerpt(typeof fields.message === 'string' ? fields.message : typeof error === 'object' ? 'unknown error' : String(error)));

  if (typeof fields.responseCode === 'number') {
    const code = fields.responseCode;
    const response = typeof fields.response === 'string' ? replyExcerpt(fields.response) : '';
    const remoteEnhanced = parseEnhancedCode(response);
    const verdict = classifySmtpReply(code, remoteEnhanced);
    const reply = recordReply(code, remoteEnhanced, response, message);
    return stage === 'greeting' && verdict === 'permanent' ? skipFiveXxGreeting(reply) : { verdict, reply };
  }
  // Our DNS layer marks answers that will not change on retry: null MX (RFC 7505, 5.1.10), NXDOMAIN (5.1.2).
  if (fields.permanent === true && typeof fields.enhanced === 'string' && /^5\.\d{1,3}\.\d{1,3}$/.test(fields.enhanced)) {
    return { verdict: 'permanent', reply: { code: null, enhanced: fields.enhanced, text: message } };
  }
  // nodemailer reports every timeout as ETIMEDOUT; only a connect timeout means the host never answered.
  const keys = [fields.timeoutType, fields.originalCode, fields.code].filter((key): key is string => typeof key === 'string');
  const enhanced = keys.map((key) => NETWORK_ERRORS[key]).find((value) => value !== undefined) ?? '4.0.0';
  // Anything unrecognised is most likely our own bug: defer it (4.0.0) so an operator can fix it before mail bounces.
  return { verdict: 'transient', reply: { code: null, enhanced, text: message } };
}

/**
 * Like Postfix, an enhanced code out of sync with the reply code is replaced by `<class>.0.0`, so the DSN Status
 * always agrees with what happened; the remote's own code then stays in the text for the reader.
 */
function recordReply(code: number, remoteEnhanced: string | null, response: string, fallback: string): RecordedReply {
  const basicClass = codeClass(code);
  const inSync = remoteEnhanced !== null && enhancedClass(remoteEnhanced) === basicClass;
  const enhanced = inSync ? remoteEnhanced : remoteEnhanced !== null && [2, 4, 5].includes(basicClass) ? `${basicClass}.0.0` : null;
  const lines = response
    .split(/\r?\n/)
    .map((line) => line.replace(/^\d{3}(?:[ -]|$)/, ''))
    .map((line) => (inSync && parseEnhancedCode(line) === remoteEnhanced ? line.replace(ENHANCED, '') : line));
  const text = oneLine(lines.join(' '));
  return { code, enhanced, text: text || fallback };
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/**
 * How much of a remote reply is kept (envelope, logs, DSNs, metrics all read the kept copy). A hostile or broken
 * MX can answer with megabytes of continuation lines; a person reading a bounce needs the first few lines.
 */
export const REPLY_EXCERPT = { maxLines: 8, maxLineBytes: 512, maxBytes: 2048, marker: '…' } as const;

/** The first lines of a reply, each and all bounded in UTF-8 bytes, with REPLY_EXCERPT.marker where anything was cut. */
export function replyExcerpt(raw: string, limits: { maxLines: number; maxLineBytes: number; maxBytes: number; marker: string } = REPLY_EXCERPT): string {
  const lines = raw.split(/\r?\n/);
  const kept: string[] = [];
  let budget = limits.maxBytes;
  let cut = lines.length > limits.maxLines;
  for (const line of lines.slice(0, limits.maxLines)) {
    // The line break before every line but the first counts against the total.
    if (kept.length) budget -= 1;
    const room = Math.max(0, Math.min(limits.maxLineBytes, budget));
    const bytes = Buffer.byteLength(line);
    if (bytes > room) cut = true;
    const piece = bytes > room ? truncateUtf8(line, room) : line;
    budget -= Buffer.byteLength(piece);
    kept.push(piece);
    if (budget <= 0) {
      cut ||= kept.length < lines.length;
      break;
    }
  }
  const text = kept.join('\n');
  return cut ? `${text}${limits.marker}` : text;
}

function truncateUtf8(text: string, bytes: number): string {
  // A cut inside a multi-byte character decodes to U+FFFD; drop it rather than keep a broken character.
  return Buffer.from(text).subarray(0, bytes).toString('utf8').replace(/\uFFFD+$/, '');
}

/** What a message needs of the MX that the MX did not offer: refused by us before MAIL, for every recipient. */
export type CapabilityGap = 'smtputf8' | 'size' | '8bitmime';

/**
 * Each gap is permanent: another attempt at the same MX meets the same EHLO. "Why was this recipient bounced
 * without a reply?" is answered here.
 */
export const CAPABILITY_REFUSALS: Readonly<Record<CapabilityGap, { enhanced: string; text: string; why: string }>> = {
  smtputf8: {
    enhanced: '5.6.7',
    text: 'the MX does not offer SMTPUTF8, which this message needs (RFC 6531)',
    why: 'RFC 6531 §3.2: a message that needs SMTPUTF8 must not be sent to a server that does not offer it; RFC 6531 §3.5 names the code X.6.7',
  },
  size: {
    enhanced: '5.3.4',
    text: 'message size exceeds the fixed maximum message size of the MX (RFC 1870)',
    why: 'RFC 1870 §6.1: a client must not send a message larger than the SIZE the server announced; RFC 3463 X.3.4 "message too big for system". Refused before MAIL, so the body is never streamed for nothing',
  },
  '8bitmime': {
    enhanced: '5.6.3',
    text: 'the MX does not offer 8BITMIME and the message is DKIM-signed, so it cannot be converted to 7 bits without breaking the signature (RFC 6152)',
    why: 'RFC 6152 §3: 8-bit data must not go to a server without 8BITMIME; it may be converted to 7 bits, which eight-bit.ts does unless a DKIM signature would break (RFC 3463 X.6.3 "conversion required but not supported")',
  },
};

export function capabilityRefusal(gap: CapabilityGap, detail?: string): RecordedReply {
  const rule = CAPABILITY_REFUSALS[gap];
  return { code: null, enhanced: rule.enhanced, text: detail ? `${rule.text}: ${detail}` : rule.text };
}
