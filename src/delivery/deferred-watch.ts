import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../shared/logger.js';
import { parseDeferredName, type DeferredEntry } from '../spool/entry-names.js';
import type { SpoolLayout } from '../spool/layout.js';

/**
 * What the full re-read of deferred/ is still for: entries whose watch event the kernel dropped (an inotify queue
 * that overflowed is not reported by node). Such an entry is another process's deferral, delivered by that process
 * while it runs; we only need to see it before long if that process stopped.
 */
export const FULL_RESCAN_MS = 30 * 60_000;
/** Without a watch (it could not be set up, or failed), deferred/ is re-read this often instead. */
export const UNWATCHED_RESCAN_MS = 60_000;
/** Names seen in events are looked at together, a moment later: a burst of renames costs one pass. */
const EVENT_BATCH_MS = 50;
/** More names than this waiting to be looked at (a burst our loop fell behind on): one full re-read instead. */
const MAX_PENDING_NAMES = 10_000;

export interface DeferredWatchOptions {
  layout: SpoolLayout;
  logger: Logger;
  /** The message is ours right now (ready, claimed or being delivered): we index it ourselves when it is deferred. */
  busy(id: string): boolean;
  /** An entry someone else put in deferred/: another mta-queue process on the spool. */
  found(entry: DeferredEntry): void;
  /** Re-reads the whole of deferred/ into the index. */
  rescan(): Promise<void>;
}

/**
 * Keeps the due index in step with what other processes put in deferred/, at no cost while nothing changes.
 * Measured at 1,000,000 names (a suspended site's mail; 2-core VM): the readdir and parsing alone take 1.9–2.1 s of
 * CPU, and re-reading every minute as before kept mta-queue at 6 % of a core at rest (bench:delivery --scenarios
 * suspended); a stat of the directory takes 1–7 ms. Re-reading only when its mtime changed would thus cost as
 * little at rest, but every deferral and every claim of our own changes it, so while any site defers it is the
 * full re-read again. The watch costs nothing at rest (one inotify watch, whatever the size) and one parsed name
 * per rename.
 */
export class DeferredWatch {
  private watcher: FSWatcher | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private pending = new Set<string>();
  private closed = false;

  constructor(private readonly options: DeferredWatchOptions) {}

  private get dir(): string {
    return this.options.layout.dir('deferred');
  }

  start(): void {
    try {
      this.watcher = watch(this.dir, (_event, name) => this.noticed(name));
      this.watcher.on('error', (error) => this.unwatched(error));
      this.rescanEvery(FULL_RESCAN_MS);
    } catch (error) {
      // ENOSPC: fs.inotify.max_user_watches is used up (other programs' watches count too).
      this.unwatched(error);
    }
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    clearInterval(this.rescanTimer);
    clearTimeout(this.batchTimer);
  }

  private unwatched(error: unknown): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.options.logger.warn({ event: 'watch-error', dir: this.dir, err: error }, `deferred/ not watched: re-read every ${UNWATCHED_RESCAN_MS / 1000} s instead`);
    this.rescanEvery(UNWATCHED_RESCAN_MS);
    void this.options.rescan();
  }

  private rescanEvery(ms: number): void {
    clearInterval(this.rescanTimer);
    this.rescanTimer = setInterval(() => void this.options.rescan(), ms);
    this.rescanTimer.unref();
  }

  /** A name renamed into or out of deferred/ (the event does not say which; Linux always names it). */
  private noticed(name: string | null): void {
    const entry = name === null ? undefined : parseDeferredName(name);
    // Our own deferrals and claims fire events too, while the message is still ours: nothing to learn from them.
    if (!entry || this.closed || this.options.busy(entry.id)) return;
    if (this.pending.size >= MAX_PENDING_NAMES) {
      this.pending.clear();
      return void this.options.rescan();
    }
    this.pending.add(entry.name);
    this.batchTimer ??= setTimeout(() => void this.lookAtPending(), EVENT_BATCH_MS);
  }

  private async lookAtPending(): Promise<void> {
    this.batchTimer = undefined;
    const names = [...this.pending];
    this.pending.clear();
    for (const name of names) {
      const entry = parseDeferredName(name)!;
      // Still there and not ours meanwhile: put there by another process (a name gone again was a claim or a flush).
      if (this.closed || this.options.busy(entry.id)) continue;
      const present = await this.options.layout.fs.access(path.join(this.dir, name)).then(
        () => true,
        () => false,
      );
      if (present) this.options.found(entry);
    }
  }
}
