import path from 'node:path';
import { readBatch } from './batch-file.js';
import { FINAL_STATES, formatReply, parseEnvelope, type Envelope } from './envelope.js';
import type { SpoolLayout } from './layout.js';
import type { SpoolFs } from './spool-fs.js';
import type { MessageSource } from './message-source.js';
import { entryNames, isBatchName, parseDeferredName, parseIncomingName } from './entry-names.js';

/**
 * Where a message is in its life: waiting for a first try, waiting for a retry, kept out of delivery by the
 * operator, being delivered, set aside.
 */
export type QueueState = 'incoming' | 'deferred' | 'held' | 'active' | 'corrupt';

/** The states an operator names (`--state`); `failed` is what `list` shows as `corrupt`: entries in corrupt/. */
export const FILTER_STATES = ['incoming', 'deferred', 'held', 'active', 'failed'] as const;
export type FilterState = (typeof FILTER_STATES)[number];

export function filterStateOf(state: QueueState): FilterState {
  return state === 'corrupt' ? 'failed' : state;
}

/** One entry of the spool as found on disk: the file an admin action renames, and its envelope if readable. */
export interface SpoolItem {
  id: string;
  state: QueueState;
  /** Absolute path of the envelope, e.g. `deferred/<due>-<id>.json`, or of the batch file holding the message. */
  file: string;
  /** null only for a corrupt/ entry that does not parse. */
  envelope: Envelope | null;
  /** Set for a message inside a batch file: where its bytes are. */
  source?: MessageSource;
}

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


/**
 * Every entry of incoming/, deferred/, held/, active/<pid>/ and corrupt/ with its envelope, read without changing
 * anything. Names are listed first, envelopes read after, so an entry that moves while we look (claimed, deferred,
 * finished) is missed or shown where it was; a queue entry that does not parse is left to mta-queue to set aside.
 */
export async function scanQueue(layout: SpoolLayout): Promise<SpoolItem[]> {
  const items: SpoolItem[] = [];
  for (const { state, file, id } of await listQueueEntries(layout)) items.push(...(await readQueueEntry(layout.fs, file, state, id))); // nothing when it moved, finished or is corrupt
  return items;
}

/** A queue entry known by its name only. */
export interface NamedEntry {
  /** Sorts like the queue (ids sort by arrival): `<id>/<state>/<file name>`. */
  key: string;
  /** The id in the name: for a batch file, its first message's. */
  id: string;
  state: QueueState;
  file: string;
}

const STATE_DIRECTORIES: readonly QueueState[] = ['incoming', 'deferred', 'held', 'active', 'corrupt'];

/** The entries of every state (or of `only`), from directory listings alone: no file is opened. */
export async function listQueueEntries(layout: SpoolLayout, only?: FilterState): Promise<NamedEntry[]> {
  const entries: NamedEntry[] = [];
  for (const state of STATE_DIRECTORIES) {
    if (only !== undefined && only !== filterStateOf(state)) continue;
    const dirs = state === 'active' ? (await entriesOf(layout.fs, layout.dir('active'))).map((owner) => path.join(layout.dir('active'), owner)) : [layout.dir(state)];
    for (const dir of dirs) {
      // A claim directory goes when its owner ends; held/ is missing from spools made before it.
      const names = state === 'active' ? await layout.fs.readdir(dir).catch(() => []) : await entriesOf(layout.fs, dir);
      entries.push(...namedEntries(dir, state, names));
    }
  }
  return entries;
}

/** The queue entries among a directory's names (others, dot names included, are no entries). */
export function namedEntries(dir: string, state: QueueState, names: readonly string[]): NamedEntry[] {
  const entries: NamedEntry[] = [];
  for (const name of names) {
    const id = state === 'deferred' ? parseDeferredName(name)?.id : parseIncomingName(name);
    if (id) entries.push({ key: `${id}/${state}/${name}`, id, state, file: `${dir}${path.sep}${name}` });
  }
  return entries;
}

/**
 * The messages of one queue entry: its envelope, or every record of a batch file. A corrupt/ entry is listed even
 * when it does not parse (envelope null); elsewhere such an entry is left to mta-queue to set aside.
 */
export async function readQueueEntry(fs: SpoolFs, file: string, state: QueueState, id: string): Promise<SpoolItem[]> {
  if (state === 'corrupt') return [{ id, state, file, envelope: isBatchName(file) ? null : await readEnvelope(fs, file) }];
  return readEntry(fs, file, state);
}

/** The messages of one queue entry: its envelope, or every record of a batch file. */
async function readEntry(fs: SpoolFs, file: string, state: QueueState): Promise<SpoolItem[]> {
  if (!isBatchName(file)) {
    const envelope = await readEnvelope(fs, file);
    return envelope ? [{ id: envelope.id, state, file, envelope }] : [];
  }
  try {
    return (await readBatch(fs, file)).map(({ envelope, source }) => ({ id: envelope.id, state, file, envelope, source }));
  } catch {
    return [];
  }
}

/** The one entry with this id, wherever it is; undefined when the spool has none. Reads no other envelope. */
export async function findQueueItem(layout: SpoolLayout, id: string): Promise<SpoolItem | undefined> {
  const name = `${id}.json`;
  const candidates: { state: QueueState; file: string }[] = [
    { state: 'incoming', file: path.join(layout.dir('incoming'), name) },
    { state: 'held', file: path.join(layout.dir('held'), name) },
  ];
  for (const entry of await entriesOf(layout.fs, layout.dir('deferred'))) if (parseDeferredName(entry)?.id === id) candidates.push({ state: 'deferred', file: path.join(layout.dir('deferred'), entry) });
  for (const owner of await entriesOf(layout.fs, layout.dir('active'))) candidates.push({ state: 'active', file: path.join(layout.dir('active'), owner, name) });
  for (const { state, file } of candidates) {
    const envelope = await readEnvelope(layout.fs, file);
    if (envelope) return { id, state, file, envelope };
  }
  // A message not yet delivered may still be inside a batch file named after another message.
  const batches: { state: QueueState; file: string }[] = [];
  for (const entry of await entriesOf(layout.fs, layout.dir('incoming'))) if (isBatchName(entry)) batches.push({ state: 'incoming', file: path.join(layout.dir('incoming'), entry) });
  for (const owner of await entriesOf(layout.fs, layout.dir('active'))) {
    const dir = path.join(layout.dir('active'), owner);
    for (const entry of await layout.fs.readdir(dir).catch(() => [])) if (isBatchName(entry)) batches.push({ state: 'active', file: path.join(dir, entry) });
  }
  for (const { state, file } of batches) {
    const found = (await readEntry(layout.fs, file, state)).find((item) => item.id === id);
    if (found) return found;
  }
  for (const corrupt of entryNames(id).map((entry) => path.join(layout.dir('corrupt'), entry))) {
    if (await layout.fs.access(corrupt).then(() => true, () => false)) return { id, state: 'corrupt', file: corrupt, envelope: isBatchName(corrupt) ? null : await readEnvelope(layout.fs, corrupt) };
  }
  return undefined;
}

async function readEnvelope(fs: SpoolFs, file: string): Promise<Envelope | null> {
  try {
    return parseEnvelope((await fs.readFile(file)).toString('utf8'), file);
  } catch {
    return null;
  }
}

/** A spool directory's names; none when it does not exist (held/ is missing from spools made before it). */
async function entriesOf(fs: SpoolFs, dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).filter((name) => !name.startsWith('.'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && path.basename(dir) === 'held') return [];
    throw error;
  }
}

/** The `list` line of an entry; a corrupt/ entry keeps what its envelope says when it still parses. */
export function describeItem(item: SpoolItem): QueueEntry {
  if (item.envelope) return item.state === 'corrupt' ? { ...describe(item.envelope, 'corrupt'), id: item.id, lastError: 'set aside in corrupt/' } : describe(item.envelope, item.state);
  return { id: item.id, state: 'corrupt', sender: '', pending: [], attempts: 0, arrivedAt: 0, nextAttemptAt: null, lastError: 'unreadable entry' };
}

function describe(envelope: Envelope, state: QueueState): QueueEntry {
  const pending = envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state));
  const last = pending.map((recipient) => recipient.lastReply).find((reply) => reply !== null) ?? null;
  const held = pending.find((recipient) => recipient.heldBack)?.heldBack;
  return {
    id: envelope.id,
    state,
    sender: envelope.sender,
    pending: pending.map((recipient) => recipient.address),
    attempts: Math.max(0, ...envelope.recipients.map((recipient) => recipient.attempts)),
    arrivedAt: envelope.arrivedAt,
    // Only a deferred entry waits: an incoming one is due now, whatever its envelope still says (a flush keeps it).
    nextAttemptAt: state === 'deferred' ? envelope.nextAttemptAt : null,
    // Held back (a back-off, a rate, a warm-up cap), the wait is what an operator asks about, not an old reply.
    lastError: held ? held.reason : last ? formatReply(last) : null,
  };
}
