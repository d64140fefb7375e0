import { formatRfc5322Date } from '../shared/dates.js';
import type { HeaderAdditions } from './message-normalizer.js';

export interface ReceivedDetails {
  queueId: string;
  ourHostname: string;
  clientAddress: string;
  clientHostname: string | null;
  helo: string | null;
  /** RFC 3848 protocol name: ESMTP, ESMTPS, ESMTPA, ESMTPSA. */
  protocol: string;
  tls: { version: string; cipher: string } | null;
  recipients: string[];
  date: Date;
}

/**
 * The trace line (RFC 5321 §4.4) in Postfix's shape, so operators read it as they are used to; `for` names the
 * recipient only when there is one, as Postfix does, so a list of recipients is not disclosed to each.
 */
export function formatReceivedHeader(details: ReceivedDetails): string {
  const helo = details.helo === null ? details.clientAddress : traceSafe(details.helo);
  const hostname = details.clientHostname === null ? 'unknown' : traceSafe(details.clientHostname);
  const client = `${helo} (${hostname} [${details.clientAddress}])`;
  const tls = details.tls ? `\r\n\t(using ${details.tls.version} with cipher ${details.tls.cipher})` : '';
  const forClause = details.recipients.length === 1 ? `\r\n\tfor <${details.recipients[0]}>` : '';
  return (
    `Received: from ${client}${tls}\r\n\tby ${details.ourHostname} (mta-relay) with ${details.protocol} id ${details.queueId}` +
    `${forClause}; ${formatRfc5322Date(details.date)}\r\n`
  );
}

/** Longest client-supplied name kept in the trace line (a DNS name is at most 253 characters, RFC 1035 §2.3.4). */
const TRACE_NAME_MAX = 255;

/**
 * The client's HELO name is whatever it typed: `evil)(by.mx.google.com;x` would close our comment and forge a
 * `by` clause. As Postfix's smtpd does, every character not safe in a domain or address literal becomes `?`,
 * and the name is cut to a DNS name's length.
 */
export function traceSafe(name: string): string {
  return name.slice(0, TRACE_NAME_MAX).replace(/[^A-Za-z0-9.\-_:[\]]/g, '?');
}

export function submissionHeaderAdditions(details: ReceivedDetails): HeaderAdditions {
  return {
    prepend: formatReceivedHeader(details),
    ifMissing: [
      { name: 'Message-ID', line: `Message-ID: <${details.queueId}@${details.ourHostname}>\r\n` },
      { name: 'Date', line: `Date: ${formatRfc5322Date(details.date)}\r\n` },
    ],
  };
}
