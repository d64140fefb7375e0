import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { FINAL_STATES, parseEnvelope, type Envelope } from './envelope.js';
import type { SpoolLayout } from './layout.js';
import { parseDeferredName, parseIncomingName } from './queue-store.js';

/** Where a message is in its life: waiting for a first try, waiting for a retry, being delivered, set aside. */
export type QueueState = 'incoming' | 'deferred' | 'active' | 'corrupt';

export interface QueueEntry {
  id: string;
  state: QueueState;
  sender: string;
  pending: string[];
  attempts: number;
  arrivedAt: number;
  nextAttemptAt: number | null;
  lastError: string | null;
}

/** A snapshot of the spool for `mta-queue list`; read-only, so safe while mta-queue runs. */
export async function listQueue(layout: SpoolLayout): Promise<QueueEntry[]> {
  const files: { state: QueueState; file: string }[] = [];
  for (const name of await readdir(layout.dir('incoming'))) if (parseIncomingName(name)) files.push({ state: 'incoming', file: path.join(layout.dir('incoming'), name) });
  for (const name of await readdir(layout.dir('deferred'))) if (parseDeferredName(name)) files.push({ state: 'deferred', file: path.join(layout.dir('deferred'), name) });
  for (const owner of await readdir(layout.dir('active'))) {
    const dir = path.join(layout.dir('active'), owner);
    for (const name of await readdir(dir).catch(() => [])) if (parseIncomingName(name)) files.push({ state: 'active', file: path.join(dir, name) });
  }
  const entries: QueueEntry[] = [];
  for (const { state, file } of files) {
    let envelope: Envelope;
    try {
      envelope = parseEnvelope(await readFile(file, 'utf8'), file);
    } catch {
      continue; // moved or finished while we looked, or corrupt (mta-queue sets it aside)
    }
    entries.push(describe(envelope, state));
  }
  for (const name of await readdir(layout.dir('corrupt'))) {
    if (name.endsWith('.json')) entries.push({ id: name.slice(0, -5), state: 'corrupt', sender: '', pending: [], attempts: 0, arrivedAt: 0, nextAttemptAt: null, lastError: 'unreadable entry' });
  }
  return entries.sort((a, b) => a.id.localeCompare(b.id));
}

function describe(envelope: Envelope, state: QueueState): QueueEntry {
  const pending = envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state));
  const last = pending.map((recipient) => recipient.lastReply).find((reply) => reply !== null) ?? null;
  return {
    id: envelope.id,
    state,
    sender: envelope.sender,
    pending: pending.map((recipient) => recipient.address),
    attempts: Math.max(0, ...envelope.recipients.map((recipient) => recipient.attempts)),
    arrivedAt: envelope.arrivedAt,
    nextAttemptAt: state === 'deferred' || state === 'incoming' ? envelope.nextAttemptAt : null,
    lastError: last ? [last.code, last.enhanced, last.text].filter((part) => part !== null).join(' ') : null,
  };
}
