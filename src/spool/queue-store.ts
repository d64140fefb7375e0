import { access, mkdir, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { CorruptSpoolEntryError } from '../shared/errors.js';
import { readBatch } from './batch-file.js';
import { DirectorySync, removeIfPresent, replaceFileDurably } from './durable.js';
import { parseEnvelope, serializeEnvelope, type Envelope } from './envelope.js';
import { dataFileSource, readSource, streamSource, type MessageSource } from './message-source.js';
import { deferredName, isBatchName, parseDeferredName, parseIncomingName, RECOVERED_BATCH, type Candidate, type DeferredEntry } from './entry-names.js';
import type { SpoolLayout } from './layout.js';

/** For a `.catch`: ENOENT (another process moved or removed it first) gives `fallback`, anything else rethrows. */
function ignoreMissing<T>(fallback: T): (error: unknown) => T {
  return (error) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw error;
  };
}

/** A file this process renamed into its claim directory: one envelope, or a batch of messages. */
export interface ClaimedFile {
  id: string;
  path: string;
}

/**
 * A message this process owns. Its envelope lives at `path` until it is deferred or completed; for a message
 * inside a batch, `path` is the batch file, shared with the other messages of the batch.
 */
export interface Claim extends ClaimedFile {
  source: MessageSource;
  batch?: { file: ClaimedBatch; envelope: Envelope };
}

export interface ClaimedMessage {
  claim: Claim;
  envelope: Envelope;
}

/** Messages whose bytes are copied out of a batch through memory up to this size; bigger ones stream. */
const COPY_IN_MEMORY_LIMIT = 1024 * 1024;

/**
 * A claimed batch file: it leaves the spool when its last message has settled (completed, or detached into an
 * entry of its own: deferred, or given back to incoming/).
 */
export class ClaimedBatch {
  private readonly open: Set<string>;
  private readonly detaching = new Set<string>();

  constructor(
    readonly path: string,
    ids: string[],
  ) {
    this.open = new Set(ids);
  }

  async settle(id: string): Promise<void> {
    if (this.open.delete(id) && this.open.size === 0) await unlink(this.path);
  }

  /**
   * Reserves a message for detaching; false when it was detached (or is being) already. A message given back to
   * incoming/ at shutdown may still be in flight, and its late outcome must not give it a second entry.
   */
  reserve(id: string): boolean {
    if (!this.open.has(id) || this.detaching.has(id)) return false;
    this.detaching.add(id);
    return true;
  }

  unreserve(id: string): void {
    this.detaching.delete(id);
  }
}

/**
 * The delivery side of the spool contract (docs/spool.md). A message is claimed by renaming its envelope into
 * `active/<pid>/`: rename is atomic, so of two processes racing for one entry exactly one wins. A claim dies
 * with its process; `recoverAbandonedClaims` moves such entries back to incoming/ (delivered again rather
 * than forgotten).
 */
export class QueueStore {
  readonly activeDir: string;
  private readonly syncs = new Map<string, DirectorySync>();

  constructor(
    readonly layout: SpoolLayout,
    private readonly owner: number,
  ) {
    this.activeDir = path.join(layout.dir('active'), String(owner));
  }

  private dirSync(dir: string): DirectorySync {
    let sync = this.syncs.get(dir);
    if (!sync) this.syncs.set(dir, (sync = new DirectorySync(dir)));
    return sync;
  }

  /**
   * Puts back the claims of processes that are gone and returns their ids (batch files count by the id they are
   * named after). At start (`includeOwnPid`) that includes claims under our own pid, left by an earlier process
   * that had it; while running, never. Two processes recovering the same claim race by rename like any claim.
   */
  async recoverAbandonedClaims(isAlive: (pid: number) => boolean, { includeOwnPid = true } = {}): Promise<string[]> {
    const recovered: string[] = [];
    for (const owner of await readdir(this.layout.dir('active'))) {
      const pid = Number(owner);
      const own = pid === this.owner;
      if (!/^\d+$/.test(owner) || (own ? !includeOwnPid : isAlive(pid))) continue;
      const dir = path.join(this.layout.dir('active'), owner);
      for (const name of await readdir(dir).catch(ignoreMissing([]))) {
        const id = parseIncomingName(name);
        if (!id) continue;
        const target = isBatchName(name) ? `${id}${RECOVERED_BATCH}` : name;
        const moved = await rename(path.join(dir, name), path.join(this.layout.dir('incoming'), target)).then(() => true, ignoreMissing(false));
        if (moved) recovered.push(id);
      }
      if (!own) await rmdir(dir).catch(() => undefined);
    }
    if (recovered.length) await this.dirSync(this.layout.dir('incoming')).sync();
    await mkdir(this.activeDir, { recursive: true, mode: 0o700 });
    return recovered;
  }

  /** Entries of incoming/, and `stray` names that are no queue entry at all (dot files are left alone). */
  async listIncoming(): Promise<{ entries: { name: string; id: string }[]; stray: string[] }> {
    const entries: { name: string; id: string }[] = [];
    const stray: string[] = [];
    for (const name of await readdir(this.layout.dir('incoming'))) {
      const id = parseIncomingName(name);
      if (id) entries.push({ name, id });
      else if (!name.startsWith('.')) stray.push(name);
    }
    return { entries, stray };
  }

  async listDeferred(): Promise<DeferredEntry[]> {
    return (await readdir(this.layout.dir('deferred'))).flatMap((name) => parseDeferredName(name) ?? []);
  }

  /** Takes the entry for this process; undefined when another process (or nothing) had it. */
  async claim(candidate: Candidate): Promise<ClaimedFile | undefined> {
    const target = path.join(this.activeDir, candidate.dir === 'deferred' ? `${candidate.id}.json` : candidate.name);
    try {
      await rename(path.join(this.layout.dir(candidate.dir), candidate.name), target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    return { id: candidate.id, path: target };
  }

  /**
   * The messages of a claimed file. An unreadable file is moved to corrupt/ and the error rethrown for the log.
   * A message of a recovered batch that already has an entry of its own (detached before the crash) is not
   * delivered from the batch again.
   */
  async open(claimed: ClaimedFile): Promise<ClaimedMessage[]> {
    if (!isBatchName(claimed.path)) {
      const envelope = await this.parseOrSetAside(claimed, async () => {
        const parsed = parseEnvelope(await readFile(claimed.path, 'utf8'), claimed.id);
        if (parsed.id !== claimed.id) throw new CorruptSpoolEntryError(`${claimed.id}: envelope names id ${parsed.id}`);
        return parsed;
      });
      return [{ claim: { ...claimed, source: dataFileSource(this.layout, claimed.id, envelope.size) }, envelope }];
    }
    const records = await this.parseOrSetAside(claimed, () => readBatch(claimed.path));
    const batch = new ClaimedBatch(claimed.path, records.map((record) => record.envelope.id));
    const recovered = claimed.path.endsWith(RECOVERED_BATCH);
    const detached = await Promise.all(records.map((record) => recovered && this.hasOwnEntry(record.envelope.id)));
    const messages: ClaimedMessage[] = [];
    for (const [index, { envelope, source }] of records.entries()) {
      if (detached[index]) await batch.settle(envelope.id);
      else messages.push({ claim: { id: envelope.id, path: claimed.path, source, batch: { file: batch, envelope: structuredClone(envelope) } }, envelope });
    }
    return messages;
  }

  /** Records new recipient states durably while keeping the claim. A batch message has no file of its own to
   * record them in: if the process dies, the whole batch is delivered again (duplicates over loss). */
  async save(claim: Claim, envelope: Envelope): Promise<void> {
    if (claim.batch) return;
    await replaceFileDurably(path.join(this.layout.dir('tmp'), `${claim.id}.state.json`), claim.path, serializeEnvelope(envelope), this.dirSync(this.activeDir));
  }

  /** Saves the state, then hands the entry back to the queue under its due time. */
  async defer(claim: Claim, envelope: Envelope): Promise<void> {
    if (claim.batch) return this.detach(claim, envelope, deferredName(claim.id, envelope.nextAttemptAt), 'deferred');
    await this.save(claim, envelope);
    await rename(claim.path, path.join(this.layout.dir('deferred'), deferredName(claim.id, envelope.nextAttemptAt)));
    await this.dirSync(this.layout.dir('deferred')).sync();
  }

  /** Every recipient is final: the message leaves the spool. Not fsynced: a lost unlink only means a duplicate. */
  async complete(claim: Claim): Promise<void> {
    if (claim.batch) return claim.batch.file.settle(claim.id);
    await unlink(claim.path);
    await removeIfPresent(this.layout.messagePath(claim.id));
  }

  /** Gives a claim back untouched (shutdown before its delivery finished). */
  async release(claim: Claim): Promise<void> {
    if (claim.batch) return this.detach(claim, claim.batch.envelope, `${claim.id}.json`, 'incoming');
    await rename(claim.path, path.join(this.layout.dir('incoming'), `${claim.id}.json`));
  }

  /** Puts a claim back under deferred/ without touching its state (a failure on our side, not the remote's). */
  async postpone(claim: ClaimedFile | Claim, due: number): Promise<void> {
    if ('batch' in claim && claim.batch) return this.detach(claim, claim.batch.envelope, deferredName(claim.id, due), 'deferred');
    await rename(claim.path, path.join(this.layout.dir('deferred'), deferredName(claim.id, due)));
  }

  /**
   * Gives a message of a claimed batch an entry of its own, the classic pair `data/<id>.eml` + `<dir>/<name>`,
   * both durable, then settles it in the batch. Message first: an envelope is never without its message, and a
   * crash between the two leaves a `data/` file that the next reading of the batch rewrites.
   */
  async detach(claim: Claim, envelope: Envelope, name: string, dir: 'incoming' | 'deferred' | 'held'): Promise<void> {
    const batch = claim.batch?.file;
    if (batch && !batch.reserve(claim.id)) throw Object.assign(new Error(`${claim.id}: no longer claimed in ${claim.path}`), { code: 'ENOENT' });
    try {
      const bytes = claim.source.length <= COPY_IN_MEMORY_LIMIT ? await readSource(claim.source) : streamSource(claim.source);
      const tmp = (suffix: string) => path.join(this.layout.dir('tmp'), `${claim.id}.${suffix}`);
      await replaceFileDurably(tmp('detach.eml'), this.layout.messagePath(claim.id), bytes, this.dirSync(this.layout.dir('data')));
      await replaceFileDurably(tmp('detach.json'), path.join(this.layout.dir(dir), name), serializeEnvelope(envelope), this.dirSync(this.layout.dir(dir)));
    } catch (error) {
      batch?.unreserve(claim.id);
      throw error;
    }
    await batch?.settle(claim.id);
  }

  /** Whether `id` has an envelope of its own anywhere in the queue (it can only have one with its data/ file). */
  private async hasOwnEntry(id: string): Promise<boolean> {
    const exists = (file: string) => access(file).then(() => true, () => false);
    if (!(await exists(this.layout.messagePath(id)))) return false;
    const places = [path.join(this.layout.dir('incoming'), `${id}.json`), path.join(this.layout.dir('held'), `${id}.json`)];
    for (const owner of await readdir(this.layout.dir('active'))) places.push(path.join(this.layout.dir('active'), owner, `${id}.json`));
    for (const place of places) if (await exists(place)) return true;
    return (await this.listDeferred()).some((entry) => entry.id === id);
  }

  private async parseOrSetAside<T>(claimed: ClaimedFile, parse: () => Promise<T>): Promise<T> {
    try {
      return await parse();
    } catch (error) {
      if (error instanceof CorruptSpoolEntryError) await this.moveToCorrupt(claimed);
      throw error;
    }
  }

  async quarantine(dir: 'incoming' | 'deferred', name: string): Promise<void> {
    await rename(path.join(this.layout.dir(dir), name), path.join(this.layout.dir('corrupt'), name));
  }

  async moveToCorrupt(claim: ClaimedFile): Promise<void> {
    await rename(claim.path, path.join(this.layout.dir('corrupt'), path.basename(claim.path)));
    if (isBatchName(claim.path)) return;
    try {
      await rename(this.layout.messagePath(claim.id), path.join(this.layout.dir('corrupt'), `${claim.id}.eml`));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}
