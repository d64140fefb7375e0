import { randomBytes } from 'node:crypto';

/**
 * Queue ids sort by creation time as plain strings (9 base-36 digits of milliseconds last until 5188), and are
 * unique across processes: a per-process sequence separates ids made in the same millisecond here, 40 random
 * bits separate them from other processes. Only [0-9a-z], so an id is safe in file names and log greps.
 */
let lastMillis = 0;
let sequence = 0;

export function newQueueId(now: number = Date.now()): string {
  sequence = now === lastMillis ? sequence + 1 : 0;
  lastMillis = now;
  const random = randomBytes(5).readUIntBE(0, 5).toString(36).padStart(8, '0');
  return now.toString(36).padStart(9, '0') + sequence.toString(36).padStart(3, '0') + random;
}

const QUEUE_ID = /^[0-9a-z]{20}$/;

export function isQueueId(text: string): boolean {
  return QUEUE_ID.test(text);
}

/** When the message with this id was first seen (the id's time prefix). */
export function queueIdTime(id: string): number {
  return parseInt(id.slice(0, 9), 36);
}
