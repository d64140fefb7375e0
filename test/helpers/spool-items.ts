import { newRecipient, type Envelope, type RecipientRecord } from '../../src/spool/envelope.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import type { QueueState, SpoolItem } from '../../src/spool/queue-listing.js';

/** Envelopes and spool items for the pure queue-filter and admin tables: no disk. */
export const NOW = 1_800_000_000_000;
export const M = 60_000;
export const H = 60 * M;

export function recipient(address: string, state: RecipientRecord['state'], reply?: string): RecipientRecord {
  const [code, enhanced, ...text] = (reply ?? '').split(' ');
  return { ...newRecipient(address), state, attempts: reply ? 1 : 0, lastReply: reply ? { code: Number(code), enhanced: enhanced ?? null, text: text.join(' ') } : null };
}

export function envelope(fields: Partial<Envelope> & { recipients: RecipientRecord[] }): Envelope {
  const arrivedAt = fields.arrivedAt ?? NOW - H;
  return {
    version: 1,
    id: newQueueId(arrivedAt),
    sender: 'news@shop.example',
    user: 'app',
    client: { address: '192.0.2.1', hostname: null, helo: 'app.example', tls: null },
    size: 100,
    smtpUtf8: false,
    bodyType: '7bit',
    nextAttemptAt: arrivedAt,
    bounceOf: null,
    ...fields,
    arrivedAt,
  };
}

export function item(state: QueueState, env: Envelope | null, id = env?.id ?? newQueueId(NOW - H)): SpoolItem {
  const file = state === 'active' ? `/spool/active/4242/${id}.json` : `/spool/${state}/${id}.json`;
  return { id, state, file, envelope: env };
}

