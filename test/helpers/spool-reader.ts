import assert from 'node:assert/strict';
import type { Envelope } from '../../src/spool/envelope.js';
import { spoolLayout } from '../../src/spool/layout.js';
import { dataFileSource, readSource } from '../../src/spool/message-source.js';
import { findQueueItem, scanQueue, type QueueState } from '../../src/spool/queue-listing.js';

export interface SpooledMessage {
  queueId: string;
  envelope: Envelope;
  message: Buffer;
  /** The file holding the message: its batch file in incoming/, or data/<id>.eml once it has an entry of its own. */
  file: string;
  state: QueueState;
}

/** A queued message as delivery will read it, wherever the spool keeps it (docs/spool.md). */
export async function readSpooled(spool: string, queueId: string): Promise<SpooledMessage> {
  const layout = spoolLayout(spool);
  const item = await findQueueItem(layout, queueId);
  assert.ok(item?.envelope, `${queueId} is not in the spool`);
  const source = item.source ?? dataFileSource(layout, queueId, item.envelope.size);
  return { queueId, envelope: item.envelope, message: await readSource(source), file: source.file, state: item.state };
}

/** Ids of every message in the queue, for "nothing was spooled" checks. */
export async function queuedIds(spool: string): Promise<string[]> {
  return (await scanQueue(spoolLayout(spool))).map((item) => item.id).sort();
}
