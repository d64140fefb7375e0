import path from 'node:path';
import { ClaimReleasedError, CorruptSpoolEntryError } from '../shared/errors.js';
import { readBatch } from './batch-file.js';
import { isLeaseAbandoned, LEASE_FILE, leaseName, leasePid, readLease, type ProcessTable } from './claim-lease.js';
import { DirectorySync, replaceFileDurably, writeFileDurably } from './durable.js';
import { parseEnvelope, serializeEnvelope, type Envelope } from './envelope.js';
import { deferredName, isBatchName, parseDeferredName, parseIncomingName, RECOVERED_BATCH, type Candidate, type DeferredEntry } from './entry-names.js';
import type { SpoolLayout } from './layout.js';
import { dataFileSource, readSource, streamSource, type MessageSource } from './message-source.js';
import { removeIfPresent, type SpoolFs } from './spool-fs.js';
import { isTombstoned } from './tombstones.js';

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
 * Serialises what is done to one claim, and remembers that it was given back: after `release`, a delivery that
 * was still running (shutdown timeout) must not record its late outcome anywhere (docs/spool.md, "Shutdown").
 */
interface ClaimHold {
  released: boolean;
  tail: Promise<void>;
}

/**
 * A message this process owns. Its envelope lives at `path` until it is deferred or completed; for a message
 * inside a batch, `path` is the batch file, shared with the other messages of the batch.
 */
export interface Claim extends ClaimedFile {
  source: MessageSource;
  batch?: { file: ClaimedBatch; envelope: Envelope };
  hold: ClaimHold;
  /**
   * Where the message's own envelope went when a deferral got as far as its rename and a later step failed (a
   * directory sync): the retry moves that entry instead of writing a second one.
   */
  placedAt?: string;
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
  /** Whether the rename that claimed it is durable; needed before anything is detached from it. */
  synced = false;
  private removed = false;

  constructor(
    readonly path: string,
    ids: string[],
    private readonly onGone: (batch: ClaimedBatch, error?: unknown) => void,
  ) {
    this.open = new Set(ids);
  }

  /**
   * The message `id` no longer needs the batch; the last one removes it. Removing it is housekeeping, not the
   * message's outcome: when the unlink fails, the store tries it again (`removeSettledBatches`) and the message is
   * settled all the same (a crash before the unlink repeats the batch: duplicates over loss).
   */
  async settle(fs: SpoolFs, id: string): Promise<void> {
    this.open.delete(id);
    if (this.open.size > 0 || this.removed) return;
    try {
      await fs.unlink(this.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return this.onGone(this, error);
    }
    this.removed = true;
    this.onGone(this);
  }
}

function newHold(): ClaimHold {
  return { released: false, tail: Promise.resolve() };
}

/**
 * The delivery side of the spool contract (docs/spool.md). A message is claimed by renaming its envelope into
 * `active/<lease>/`: rename is atomic, so of two processes racing for one entry exactly one wins. A claim dies
 * with its process; `recoverAbandonedClaims` moves such entries back to incoming/ (delivered again rather
 * than forgotten).
 */
export class QueueStore {
  readonly activeDir: string;
  readonly fs: SpoolFs;
  private readonly syncs = new Map<string, DirectorySync>();
  /** Names in activeDir this process put there and still knows about; anything else there is stranded. */
  private readonly held = new Set<string>();
  /** Batches whose messages are all settled but whose unlink failed: removed at the next `removeSettledBatches`. */
  private readonly settledBatches = new Map<ClaimedBatch, unknown>();

  constructor(
    readonly layout: SpoolLayout,
    private readonly processes: ProcessTable,
    leaseToken: string,
  ) {
    this.fs = layout.fs;
    this.activeDir = path.join(layout.dir('active'), leaseName(processes.self, leaseToken));
  }

  private dirSync(dir: string): DirectorySync {
    let sync = this.syncs.get(dir);
    if (!sync) this.syncs.set(dir, (sync = new DirectorySync(this.fs, dir)));
    return sync;
  }

  /** Makes this process's claim directory and its lease, durably, before anything is claimed into it. */
  async takeLease(): Promise<void> {
    await this.fs.mkdir(this.activeDir);
    const lease = JSON.stringify(this.processes.self);
    await replaceFileDurably(this.fs, path.join(this.layout.dir('tmp'), `${path.basename(this.activeDir)}.lease`), path.join(this.activeDir, LEASE_FILE), lease, this.dirSync(this.activeDir));
    await this.dirSync(this.layout.dir('active')).sync();
  }

  /** The lease's heartbeat; false when our directory was taken from us (we were stopped past the lease timeout). */
  async refreshLease(now: number): Promise<boolean> {
    try {
      await this.fs.touch(path.join(this.activeDir, LEASE_FILE), new Date(now));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await this.takeLease();
      return false;
    }
  }

  /** Removes the claim directory once everything in it was given back (a clean stop). */
  async dropLease(): Promise<void> {
    const names = await this.fs.readdir(this.activeDir).catch(ignoreMissing([]));
    if (names.some((name) => name !== LEASE_FILE)) return;
    await removeIfPresent(this.fs, path.join(this.activeDir, LEASE_FILE));
    await this.fs.rmdir(this.activeDir).catch(ignoreMissing(undefined));
  }

  /**
   * Puts back the claims of processes that are gone (claim-lease.ts decides) and returns their ids (batch files
   * count by the id they are named after). Two processes recovering the same claim race by rename like any claim.
   */
  async recoverAbandonedClaims(now: number, { atStart }: { atStart: boolean }): Promise<string[]> {
    const recovered: string[] = [];
    const own = path.basename(this.activeDir);
    for (const owner of await this.fs.readdir(this.layout.dir('active'))) {
      if (owner === own || leasePid(owner) === undefined) continue;
      const dir = path.join(this.layout.dir('active'), owner);
      const { lease, modifiedAt } = await readLease(this.fs, dir);
      if (!isLeaseAbandoned({ dirName: owner, lease, leaseModifiedAt: modifiedAt, processes: this.processes, now, atStart })) continue;
      for (const name of await this.fs.readdir(dir).catch(ignoreMissing([]))) {
        const id = parseIncomingName(name);
        if (!id) continue;
        if (await this.putBack(path.join(dir, name), name)) recovered.push(id);
      }
      await removeIfPresent(this.fs, path.join(dir, LEASE_FILE)).catch(() => undefined);
      await this.fs.rmdir(dir).catch(() => undefined); // not empty: another recoverer's turn, or the owner came back
    }
    if (recovered.length) await this.dirSync(this.layout.dir('incoming')).sync();
    return recovered;
  }

  /** Back to incoming/; a batch under the name that says its messages may have entries of their own already. */
  private putBack(file: string, name: string): Promise<boolean> {
    const target = isBatchName(name) ? `${parseIncomingName(name)}${RECOVERED_BATCH}` : name;
    return this.fs.rename(file, path.join(this.layout.dir('incoming'), target)).then(() => true, ignoreMissing(false));
  }

  /** Entries of our claim directory that no claim of this process accounts for (a failure lost track of them). */
  async strandedClaims(): Promise<string[]> {
    const names = await this.fs.readdir(this.activeDir).catch(ignoreMissing([]));
    return names.filter((name) => name !== LEASE_FILE && !this.held.has(name));
  }

  /** Gives stranded entries back to incoming/ (where any process delivers them again); returns those moved. */
  async giveBackStranded(): Promise<string[]> {
    const moved: string[] = [];
    for (const name of await this.strandedClaims()) if (parseIncomingName(name) && (await this.putBack(path.join(this.activeDir, name), name))) moved.push(name);
    if (moved.length) await this.dirSync(this.layout.dir('incoming')).sync();
    return moved;
  }

  /** Entries of incoming/, and `stray` names that are no queue entry at all (dot files are left alone). */
  async listIncoming(): Promise<{ entries: { name: string; id: string }[]; stray: string[] }> {
    const entries: { name: string; id: string }[] = [];
    const stray: string[] = [];
    for (const name of await this.fs.readdir(this.layout.dir('incoming'))) {
      const id = parseIncomingName(name);
      if (id) entries.push({ name, id });
      else if (!name.startsWith('.')) stray.push(name);
    }
    return { entries, stray };
  }

  async listDeferred(): Promise<DeferredEntry[]> {
    return (await this.fs.readdir(this.layout.dir('deferred'))).flatMap((name) => parseDeferredName(name) ?? []);
  }

  /** Takes the entry for this process; undefined when another process (or nothing) had it. */
  async claim(candidate: Candidate): Promise<ClaimedFile | undefined> {
    const name = candidate.dir === 'deferred' ? `${candidate.id}.json` : candidate.name;
    // Known before it exists, so a concurrent look for stranded claims never takes it for one.
    this.held.add(name);
    try {
      await this.fs.rename(path.join(this.layout.dir(candidate.dir), candidate.name), path.join(this.activeDir, name));
    } catch (error) {
      this.held.delete(name);
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    return { id: candidate.id, path: path.join(this.activeDir, name) };
  }

  /** Retries the unlink of batches whose messages are all settled; returns the errors of those still there. */
  async removeSettledBatches(): Promise<unknown[]> {
    for (const batch of [...this.settledBatches.keys()]) await batch.settle(this.fs, '');
    return [...this.settledBatches.values()];
  }

  /** This process no longer accounts for a claimed file (it left our directory, or a failure lost it). */
  forget(claimed: ClaimedFile): void {
    this.held.delete(path.basename(claimed.path));
  }

  /**
   * The messages of a claimed file. An unreadable file is moved to corrupt/ and the error rethrown for the log.
   * A message of a recovered batch that already has an entry of its own (detached before the crash), or that an
   * operator deleted, is not delivered from the batch again.
   */
  async open(claimed: ClaimedFile): Promise<ClaimedMessage[]> {
    if (!isBatchName(claimed.path)) {
      const envelope = await this.parseOrSetAside(claimed, async () => {
        const parsed = parseEnvelope((await this.fs.readFile(claimed.path)).toString('utf8'), claimed.id);
        if (parsed.id !== claimed.id) throw new CorruptSpoolEntryError(`${claimed.id}: envelope names id ${parsed.id}`);
        return parsed;
      });
      return [{ claim: { ...claimed, source: dataFileSource(this.layout, claimed.id, envelope.size), hold: newHold() }, envelope }];
    }
    const records = await this.parseOrSetAside(claimed, () => readBatch(this.fs, claimed.path));
    const batch = new ClaimedBatch(claimed.path, records.map((record) => record.envelope.id), (done, error) => {
      if (error === undefined) {
        this.settledBatches.delete(done);
        this.forget(claimed);
      } else this.settledBatches.set(done, error);
    });
    const recovered = claimed.path.endsWith(RECOVERED_BATCH);
    const skip = await Promise.all(records.map(async ({ envelope }) => recovered && ((await this.hasOwnEntry(envelope.id)) || (await isTombstoned(this.layout, envelope.id)))));
    const messages: ClaimedMessage[] = [];
    for (const [index, { envelope, source }] of records.entries()) {
      if (skip[index]) await batch.settle(this.fs, envelope.id);
      else messages.push({ claim: { id: envelope.id, path: claimed.path, source, batch: { file: batch, envelope: structuredClone(envelope) }, hold: newHold() }, envelope });
    }
    return messages;
  }

  /**
   * Runs `work` (recording an outcome: save, bounce, complete, defer, postpone) while the claim is ours, one at a
   * time per claim. Rejects with ClaimReleasedError, without running it, once the claim was given back.
   */
  whileHeld<T>(claim: Claim, work: () => Promise<T>): Promise<T> {
    const hold = claim.hold;
    const run = hold.tail.then(() => {
      if (hold.released) throw new ClaimReleasedError(`${claim.id}: given back to the queue before this outcome`);
      return work();
    });
    hold.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Records new recipient states durably while keeping the claim. A batch message has no file of its own to
   * record them in: if the process dies, the whole batch is delivered again (duplicates over loss). */
  async save(claim: Claim, envelope: Envelope): Promise<void> {
    if (claim.batch) return;
    await replaceFileDurably(this.fs, path.join(this.layout.dir('tmp'), `${claim.id}.state.json`), claim.path, serializeEnvelope(envelope), this.dirSync(this.activeDir));
  }

  /** Saves the state, then hands the entry back to the queue under its due time. */
  async defer(claim: Claim, envelope: Envelope): Promise<void> {
    if (claim.batch) return this.detach(claim, envelope, deferredName(claim.id, envelope.nextAttemptAt), 'deferred');
    if (!claim.placedAt) await this.save(claim, envelope);
    await this.moveOut(claim, path.join(this.layout.dir('deferred'), deferredName(claim.id, envelope.nextAttemptAt)));
  }

  /** Every recipient is final: the message leaves the spool. Not fsynced: a lost unlink only means a duplicate. */
  async complete(claim: Claim): Promise<void> {
    if (claim.batch) return claim.batch.file.settle(this.fs, claim.id);
    await this.fs.unlink(claim.path);
    this.forget(claim);
    await removeIfPresent(this.fs, this.layout.messagePath(claim.id));
  }

  /** Gives a claim back untouched (shutdown before its delivery finished); any later outcome for it is refused. */
  release(claim: Claim): Promise<void> {
    return this.whileHeld(claim, async () => {
      if (claim.batch) await this.detach(claim, claim.batch.envelope, `${claim.id}.json`, 'incoming');
      else await this.moveOut(claim, path.join(this.layout.dir('incoming'), `${claim.id}.json`), { sync: false });
      claim.hold.released = true;
    });
  }

  /**
   * Puts a claim back under deferred/ after a failure on our side, not the remote's: with `envelope`'s states
   * (what the attempt already achieved, so a delivered recipient is not delivered again) where they can be saved.
   */
  async postpone(claim: Claim, envelope: Envelope, due: number): Promise<void> {
    if (claim.batch) return this.detach(claim, envelope, deferredName(claim.id, due), 'deferred');
    if (!claim.placedAt) await this.save(claim, envelope).catch(() => undefined); // the disk may be what failed: the old states then, duplicates over loss
    await this.moveOut(claim, path.join(this.layout.dir('deferred'), deferredName(claim.id, due)));
  }

  /**
   * Moves an entry of its own out of the claim directory (or, after a failure, from where the last try left it),
   * then syncs its new directory. ENOENT on a retry: another process claimed it meanwhile, it is theirs now.
   */
  private async moveOut(claim: Claim, target: string, { sync = true } = {}): Promise<void> {
    if (claim.placedAt !== target) {
      const moved = await this.fs.rename(claim.placedAt ?? claim.path, target).then(() => true, claim.placedAt ? ignoreMissing(false) : (error: unknown) => Promise.reject(error));
      this.forget(claim);
      if (!moved) return;
      claim.placedAt = target;
    }
    if (sync) await this.dirSync(path.dirname(target)).sync();
  }

  /**
   * Gives a message of a claimed batch an entry of its own, the classic pair `data/<id>.eml` + `<dir>/<name>`,
   * both durable, then settles it in the batch. The claim of the batch is made durable first: were it undone by
   * a crash, the batch would come back under its fresh name, whose messages are not looked up for entries of their
   * own. Message before envelope: an envelope is never without its message, and a crash between the two leaves a
   * `data/` file that the next reading of the batch rewrites.
   */
  async detach(claim: Claim, envelope: Envelope, name: string, dir: 'incoming' | 'deferred' | 'held'): Promise<void> {
    const batch = claim.batch?.file;
    if (batch && !batch.synced) {
      await this.dirSync(this.activeDir).sync();
      batch.synced = true;
    }
    const target = path.join(this.layout.dir(dir), name);
    if (!claim.placedAt) {
      const bytes = claim.source.length <= COPY_IN_MEMORY_LIMIT ? await readSource(claim.source) : streamSource(claim.source);
      const tmp = (suffix: string) => path.join(this.layout.dir('tmp'), `${claim.id}.${suffix}`);
      const detached: Envelope = batch ? { ...envelope, detachedFrom: parseIncomingName(path.basename(batch.path))! } : envelope;
      await replaceFileDurably(this.fs, tmp('detach.eml'), this.layout.messagePath(claim.id), bytes, this.dirSync(this.layout.dir('data')));
      await writeFileDurably(this.fs, tmp('detach.json'), serializeEnvelope(detached));
      await this.fs.rename(tmp('detach.json'), target).catch(async (error: unknown) => {
        await removeIfPresent(this.fs, tmp('detach.json')).catch(() => undefined);
        throw error;
      });
      claim.placedAt = target;
    } else if (claim.placedAt !== target) {
      // An earlier try got as far as the rename: that entry is the message's one, moved rather than written twice.
      if (!(await this.fs.rename(claim.placedAt, target).then(() => true, ignoreMissing(false)))) return batch?.settle(this.fs, claim.id);
      claim.placedAt = target;
    }
    await this.dirSync(this.layout.dir(dir)).sync();
    await batch?.settle(this.fs, claim.id);
  }

  /** Whether `id` has an envelope of its own anywhere in the queue (it can only have one with its data/ file). */
  private async hasOwnEntry(id: string): Promise<boolean> {
    const exists = (file: string) => this.fs.access(file).then(() => true, () => false);
    if (!(await exists(this.layout.messagePath(id)))) return false;
    const places = [path.join(this.layout.dir('incoming'), `${id}.json`), path.join(this.layout.dir('held'), `${id}.json`)];
    for (const owner of await this.fs.readdir(this.layout.dir('active'))) places.push(path.join(this.layout.dir('active'), owner, `${id}.json`));
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
    await this.fs.rename(path.join(this.layout.dir(dir), name), path.join(this.layout.dir('corrupt'), name));
  }

  async moveToCorrupt(claim: ClaimedFile): Promise<void> {
    await this.fs.rename(claim.path, path.join(this.layout.dir('corrupt'), path.basename(claim.path)));
    this.forget(claim);
    if (isBatchName(claim.path)) return;
    await this.fs.rename(this.layout.messagePath(claim.id), path.join(this.layout.dir('corrupt'), `${claim.id}.eml`)).catch(ignoreMissing(undefined));
  }
}
