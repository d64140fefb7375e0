import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ENVELOPE_VERSION, newRecipient, serializeEnvelope, type Envelope } from '../../src/spool/envelope.js';
import { spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { scanQueue } from '../../src/spool/queue-listing.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { deferredName } from '../../src/spool/entry-names.js';
import { newQueueId } from '../../src/spool/queue-id.js';

const CLIENT = { address: '127.0.0.1', hostname: null, helo: 'client.bench.test', tls: null };

/** Runs `task(0..count-1)` with at most `parallel` in flight. */
async function inParallel(count: number, parallel: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/**
 * Puts `count` messages into incoming/ exactly as mta-server does (MessageWriter: batch files made by group
 * commit, each fdatasynced and renamed, incoming/ fsynced), `parallel` at a time like that many SMTP sessions.
 */
export async function fillIncoming(layout: SpoolLayout, count: number, message: Buffer, sender: string, recipient: string, parallel = 32): Promise<number> {
  const writer = new MessageWriter(layout);
  const started = performance.now();
  await inParallel(count, parallel, async () => {
    await writeOne(writer, message, sender, recipient);
  });
  return performance.now() - started;
}

/** One message through MessageWriter; resolves when it is durable and visible in incoming/ (when mta-server says 250). */
export async function writeOne(writer: MessageWriter, message: Buffer, sender: string, recipient: string): Promise<string> {
  const id = newQueueId();
  const arrivedAt = Date.now();
  const draft = writer.create(id);
  const pending = draft.append([message]);
  if (pending) await pending;
  await draft.commit({
    version: ENVELOPE_VERSION,
    sender,
    recipients: [newRecipient(recipient)],
    user: null,
    client: CLIENT,
    arrivedAt,
    smtpUtf8: false,
    bodyType: '7bit',
    nextAttemptAt: arrivedAt,
    bounceOf: null,
  });
  return id;
}

/** What a suspended site's queue records on each recipient it holds back (deliver-message.ts). */
export interface HeldBackBy {
  site: string;
  source: string;
  reason: string;
}

/**
 * `count` messages that were tried once and are due again from `dueAt` on (spread over `spreadMs`): an envelope
 * under `deferred/<due36>-<id>.json` and a small message in data/, written straight to their names without
 * fsync (setup, not a measurement). The envelope is what QueueStore.defer leaves after a 4xx. `recipient` may be
 * a function of the message's index (0..count-1), for a queue with several domains and addresses. With `heldBack`
 * they were never tried: held back by a suspension of that site until their due time, as the site queue leaves them.
 */
export async function fillDeferred(
  layout: SpoolLayout,
  count: number,
  dueAt: number,
  spreadMs: number,
  sender: string,
  recipientOf: string | ((index: number) => string),
  parallel = 128,
  heldBack?: HeldBackBy,
): Promise<number> {
  const started = performance.now();
  const now = Date.now();
  await inParallel(count, parallel, async (index) => {
    const id = newQueueId();
    const recipient = typeof recipientOf === 'string' ? recipientOf : recipientOf(index);
    const due = dueAt + Math.floor((index / Math.max(1, count)) * spreadMs);
    const body = Buffer.from(
      `From: <${sender}>\r\nTo: <${recipient}>\r\nSubject: deferred ${index}\r\nMessage-ID: <${id}@bench.test>\r\n\r\nwaiting for a retry\r\n`,
      'latin1',
    );
    const envelope: Envelope = {
      version: ENVELOPE_VERSION,
      id,
      sender,
      recipients: [
        heldBack
          ? { ...newRecipient(recipient), state: 'deferred', dueAt: due, heldBack: { ...heldBack, until: due } }
          : {
              ...newRecipient(recipient),
              state: 'deferred',
              attempts: 1,
              lastAttemptAt: now - 60_000,
              lastReply: { code: 451, enhanced: '4.3.0', text: 'try again later' },
              remoteMta: 'mx.sink.test',
            },
      ],
      user: null,
      client: CLIENT,
      arrivedAt: now - 60_000,
      size: body.length,
      smtpUtf8: false,
      bodyType: '7bit',
      nextAttemptAt: due,
      bounceOf: null,
    };
    await writeFile(layout.messagePath(id), body, { mode: 0o600 });
    await writeFile(path.join(layout.dir('deferred'), deferredName(id, due)), serializeEnvelope(envelope), { mode: 0o600 });
  });
  return performance.now() - started;
}

/** Messages queued, counted inside batch files (one batch holds every message of one group commit). */
export async function queuedMessages(spool: string): Promise<number> {
  return (await scanQueue(spoolLayout(spool))).length;
}

/** Entries under incoming/, deferred/, active/<pid>/ and data/: all zero once a drain is complete. */
export async function spoolCounts(layout: SpoolLayout): Promise<{ incoming: number; deferred: number; active: number; data: number; corrupt: number }> {
  const count = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).filter((name) => !name.startsWith('.')).length;
  let active = 0;
  for (const owner of await readdir(layout.dir('active')).catch(() => [] as string[])) active += await count(path.join(layout.dir('active'), owner));
  return {
    incoming: await count(layout.dir('incoming')),
    deferred: await count(layout.dir('deferred')),
    active,
    data: await count(layout.dir('data')),
    corrupt: await count(layout.dir('corrupt')),
  };
}
