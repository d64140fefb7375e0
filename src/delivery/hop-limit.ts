import type { RecordedReply } from '../spool/envelope.js';

/** Postfix's hopcount_limit: a message with more Received: headers than this is looping, not travelling. */
export const HOP_LIMIT = 50;

/** The Received: fields in a message's header block (RFC 5321 §6.3: counting them is how loops are caught). */
export function countReceivedHeaders(message: Buffer): number {
  const end = message.indexOf('\r\n\r\n');
  const head = message.subarray(0, end < 0 ? message.length : end + 2).toString('latin1');
  return head.match(/^received:/gim)?.length ?? 0;
}

/** The reply every recipient of a looping message bounces with (RFC 3463 X.4.6 routing loop detected). */
export function loopReply(hops: number): RecordedReply | null {
  if (hops <= HOP_LIMIT) return null;
  return { code: null, enhanced: '5.4.6', text: `mail loop: the message has ${hops} Received headers (more than ${HOP_LIMIT})` };
}
