import { mkdir, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { CorruptSpoolEntryError } from '../shared/errors.js';
import { DirectorySync, removeIfPresent, replaceFileDurably } from './durable.js';
import { parseEnvelope, serializeEnvelope, type Envelope } from './envelope.js';
import { isQueueId } from './queue-id.js';
import type { SpoolLayout } from './layout.js';

/** A queue entry this process owns: its envelope lives at `path` until it is deferred or completed. */
export interface Claim {
  id: string;
  path: string;
}

export interface DeferredEntry {
  id: string;
  due: number;
  name: string;
}

/** Where a candidate for delivery sits before it is claimed. */
export type Candidate = { dir: 'incoming'; name: string; id: string } | { dir: 'deferred'; name: string; id: string };

const DUE_DIGITS = 9;

/** `deferred/<due in base 36>-<id>.json`: due times sort as names and are known without opening a file. */
export function deferredName(id: string, due: number): string {
  return `${Math.max(0, Math.round(due)).toString(36).padStart(DUE_DIGITS, '0')}-${id}.json`;
}

export function parseDeferredName(name: string): DeferredEntry | undefined {
  const match = /^([0-9a-z]{9})-([0-9a-z]{20})\.json$/.exec(name);
  return match ? { due: parseInt(match[1]!, 36), id: match[2]!, name } : undefined;
}

export function parseIncomingName(name: string): string | undefined {
  const id = name.endsWith('.json') ? name.slice(0, -5) : '';
  return isQueueId(id) ? id : undefined;
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

  /** Returns the ids put back from claims of processes that are gone (including an older process with our pid). */
  async recoverAbandonedClaims(isAlive: (pid: number) => boolean): Promise<string[]> {
    const recovered: string[] = [];
    for (const owner of await readdir(this.layout.dir('active'))) {
      const pid = Number(owner);
      if (!/^\d+$/.test(owner) || (pid !== this.owner && isAlive(pid))) continue;
      const dir = path.join(this.layout.dir('active'), owner);
      for (const name of await readdir(dir)) {
        if (!parseIncomingName(name)) continue;
        await rename(path.join(dir, name), path.join(this.layout.dir('incoming'), name));
        recovered.push(name.slice(0, -5));
      }
      if (pid !== this.owner) await rmdir(dir).catch(() => undefined);
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
  async claim(candidate: Candidate): Promise<Claim | undefined> {
    const target = path.join(this.activeDir, `${candidate.id}.json`);
    try {
      await rename(path.join(this.layout.dir(candidate.dir), candidate.name), target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    return { id: candidate.id, path: target };
  }

  /** Reads a claimed envelope; an unreadable one is moved to corrupt/ and the error rethrown for the log. */
  async read(claim: Claim): Promise<Envelope> {
    const text = await readFile(claim.path, 'utf8');
    try {
      const envelope = parseEnvelope(text, claim.id);
      if (envelope.id !== claim.id) throw new CorruptSpoolEntryError(`${claim.id}: envelope names id ${envelope.id}`);
      return envelope;
    } catch (error) {
      await this.moveToCorrupt(claim);
      throw error;
    }
  }

  /** Records new recipient states durably while keeping the claim. */
  async save(claim: Claim, envelope: Envelope): Promise<void> {
    await replaceFileDurably(path.join(this.layout.dir('tmp'), `${claim.id}.state.json`), claim.path, serializeEnvelope(envelope), this.dirSync(this.activeDir));
  }

  /** Saves the state, then hands the entry back to the queue under its due time. */
  async defer(claim: Claim, envelope: Envelope): Promise<void> {
    await this.save(claim, envelope);
    await rename(claim.path, path.join(this.layout.dir('deferred'), deferredName(claim.id, envelope.nextAttemptAt)));
    await this.dirSync(this.layout.dir('deferred')).sync();
  }

  /** Every recipient is final: the message leaves the spool. Not fsynced: a lost unlink only means a duplicate. */
  async complete(claim: Claim): Promise<void> {
    await unlink(claim.path);
    await removeIfPresent(this.layout.messagePath(claim.id));
  }

  /** Gives a claim back untouched (shutdown before its delivery started). */
  async release(claim: Claim): Promise<void> {
    await rename(claim.path, path.join(this.layout.dir('incoming'), `${claim.id}.json`));
  }

  /** Puts a claim back under deferred/ without touching its state (a failure on our side, not the remote's). */
  async postpone(claim: Claim, due: number): Promise<void> {
    await rename(claim.path, path.join(this.layout.dir('deferred'), deferredName(claim.id, due)));
  }

  async quarantine(dir: 'incoming' | 'deferred', name: string): Promise<void> {
    await rename(path.join(this.layout.dir(dir), name), path.join(this.layout.dir('corrupt'), name));
  }

  async moveToCorrupt(claim: Claim): Promise<void> {
    await rename(claim.path, path.join(this.layout.dir('corrupt'), `${claim.id}.json`));
    try {
      await rename(this.layout.messagePath(claim.id), path.join(this.layout.dir('corrupt'), `${claim.id}.eml`));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}
