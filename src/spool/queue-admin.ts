import path from 'node:path';
import { ConfigError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { leasePid, type ProcessTable } from './claim-lease.js';
import { DirectorySync } from './durable.js';
import { removeIfPresent } from './spool-fs.js';
import { writeTombstone } from './tombstones.js';
import { FINAL_STATES } from './envelope.js';
import { matchesFilter, type QueueFilter } from './queue-filter.js';
import type { SpoolLayout } from './layout.js';
import { filterStateOf, findQueueItem, type FilterState, type QueueState, type SpoolItem } from './queue-listing.js';
import { parseIncomingName } from './entry-names.js';
import { QueueStore } from './queue-store.js';

/**
 * Queue administration (Postfix's postqueue/postsuper): select messages by a filter, then flush, hold, release
 * or delete them while mta-queue runs. Every change is one rename out of the place the message was seen in,
 * so it races a delivery claim the way two mta-queue processes race each other (docs/spool.md): exactly one
 * rename wins, and the loser gets ENOENT. A message in active/ is never touched.
 */

export type AdminAction = 'flush' | 'hold' | 'release' | 'delete';
export type AdminEvent = 'flushed' | 'held' | 'released' | 'deleted';

interface ActionRule {
  event: AdminEvent;
  /** States the action takes a message out of. */
  from: readonly QueueState[];
  /** States in which the message already is what the action would make it (a no-op, not an error). */
  already: Partial<Record<QueueState, string>>;
  /** What a filter selects in bulk: `from`, plus active/ messages to report as skipped where that matters. */
  bulk: readonly FilterState[];
}

export const ADMIN_ACTIONS: Readonly<Record<AdminAction, ActionRule>> = {
  flush: { event: 'flushed', from: ['deferred'], already: { incoming: 'already due' }, bulk: ['deferred', 'active'] },
  hold: { event: 'held', from: ['incoming', 'deferred'], already: { held: 'already held' }, bulk: ['incoming', 'deferred', 'active'] },
  release: { event: 'released', from: ['held'], already: {}, bulk: ['held'] },
  delete: { event: 'deleted', from: ['incoming', 'deferred', 'held', 'corrupt'], already: {}, bulk: ['incoming', 'deferred', 'held', 'failed', 'active'] },
};

export type Verdict = { kind: 'change' } | { kind: 'unchanged'; reason: string } | { kind: 'refused'; reason: string };

/** What `action` does to a message where it is now. */
export function judgeAction(action: AdminAction, item: Pick<SpoolItem, 'state' | 'file'>): Verdict {
  const rule = ADMIN_ACTIONS[action];
  if (rule.from.includes(item.state)) return { kind: 'change' };
  const already = rule.already[item.state];
  if (already) return { kind: 'unchanged', reason: already };
  return { kind: 'refused', reason: refusal(item) };
}

function refusal(item: Pick<SpoolItem, 'state' | 'file'>): string {
  switch (item.state) {
    case 'active':
      return `being delivered right now (claimed by mta-queue pid ${leasePid(path.basename(path.dirname(item.file))) ?? '?'})`;
    case 'held':
      return 'held: release it first';
    case 'corrupt':
      return 'failed: set aside in corrupt/';
    default:
      return `not held (${item.state})`;
  }
}

/** `--state` in a bulk command must name something the command acts on (or reports), else it is a usage error. */
export function checkBulkState(action: AdminAction, state: FilterState | undefined): void {
  const allowed = ADMIN_ACTIONS[action].bulk;
  if (state !== undefined && !allowed.includes(state)) throw new ConfigError(`--state ${state}: ${action} acts on ${allowed.filter((s) => s !== 'active').join(', ')} messages`);
}

export interface Selection {
  change: SpoolItem[];
  refused: { item: SpoolItem; reason: string }[];
}

/** The messages a bulk command touches, and the matching ones it must leave alone (being delivered). */
export function selectForAction(items: readonly SpoolItem[], action: AdminAction, filter: QueueFilter, now: number): Selection {
  const selection: Selection = { change: [], refused: [] };
  for (const item of items) {
    if (!ADMIN_ACTIONS[action].bulk.includes(filterStateOf(item.state)) || !matchesFilter(item, filter, now)) continue;
    const verdict = judgeAction(action, item);
    if (verdict.kind === 'change') selection.change.push(item);
    else if (verdict.kind === 'refused') selection.refused.push({ item, reason: verdict.reason });
  }
  return selection;
}

export type ApplyResult = { done: true } | { done: false; reason: string };

/**
 * The renames. `flush` and `release` move the envelope to incoming/<id>.json, where mta-queue's watch sees it
 * at once; a stale deferred/ name it still has in memory then fails to claim with ENOENT and is skipped.
 * `hold` moves it to held/<id>.json, which delivery never reads. `delete` first renames it to tmp/<id>.deleting
 * (after which no claim can reach it), then unlinks the message file and the envelope.
 */
export class QueueAdmin {
  private readonly touched = new Set<string>();

  /** Claims batch files the way mta-queue does, under a lease of its own, to split them. */
  private readonly store: QueueStore;
  /** Every message the command will act on (`plan`): a batch claimed for one of them acts on all it holds. */
  private planned = new Map<string, SpoolItem>();
  /** Messages already acted on with an earlier message of their batch, before their own turn came. */
  private readonly doneWithBatch = new Set<string>();

  constructor(
    readonly layout: SpoolLayout,
    private readonly logger: Logger,
    processes: ProcessTable,
    leaseToken: string,
  ) {
    this.store = new QueueStore(layout, processes, leaseToken);
  }

  /** Names every message the command is about to act on, so that each batch among them is split only once. */
  plan(items: readonly SpoolItem[]): void {
    this.planned = new Map(items.map((item) => [item.id, item]));
  }

  /** Applies the action to the entry at `item.file`; when that file moved meanwhile, says where it went. */
  async apply(action: AdminAction, item: SpoolItem): Promise<ApplyResult> {
    if (this.doneWithBatch.delete(item.id)) return { done: true };
    const verdict = judgeAction(action, item);
    if (verdict.kind !== 'change') return { done: false, reason: verdict.reason }; // active/ is never touched
    if (item.source && item.state === 'incoming') return this.applyInBatch(action, item);
    const target = await this.targetOf(action, item);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.layout.fs.rename(item.file, target);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        const now = await findQueueItem(this.layout, item.id);
        // Back where we saw it (a claim given back at shutdown): try once more; a second ENOENT is no race.
        if (now?.file === item.file && attempt === 1) continue;
        if (now?.file === item.file) throw error;
        return { done: false, reason: whereItWent(now) };
      }
    }
    this.touched.add(path.dirname(item.file));
    this.touched.add(path.dirname(target));
    if (action === 'delete') {
      // Its batch may still be claimed by a delivery: were that claim recovered after a crash, the message would
      // come back from it.
      if (item.envelope?.detachedFrom) await writeTombstone(this.layout, item.id, item.envelope.detachedFrom);
      await removeIfPresent(this.layout.fs, this.layout.messagePath(item.id));
      if (item.state === 'corrupt') await removeIfPresent(this.layout.fs, path.join(this.layout.dir('corrupt'), `${item.id}.eml`));
      await this.layout.fs.unlink(target);
    }
    return this.done(action, item);
  }

  private done(action: AdminAction, item: SpoolItem): ApplyResult {
    const envelope = item.envelope;
    const pending = envelope?.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state)).map((recipient) => recipient.address) ?? [];
    const event = ADMIN_ACTIONS[action].event;
    const details = event === 'deleted' ? { sender: envelope?.sender ?? null, recipients: pending } : {};
    this.logger.info({ event, queueId: item.id, from: filterStateOf(item.state), ...details }, `message ${event} by the operator`);
    return { done: true };
  }

  /**
   * A message inside a batch file cannot be renamed alone. The batch is claimed like a delivery would (so
   * mta-queue cannot take it meanwhile); the message is dropped (delete) or detached to held/ (hold), every
   * other message of the batch gets an entry of its own in incoming/, all durably, and the batch goes. A crash
   * in between leaves the claim for mta-queue to recover, as it would the claim of a dead mta-queue.
   */
  private async applyInBatch(action: AdminAction, item: SpoolItem): Promise<ApplyResult> {
    const name = path.basename(item.file);
    await this.store.takeLease();
    const acted: SpoolItem[] = [];
    try {
      const claimed = await this.store.claim({ dir: 'incoming', name, id: parseIncomingName(name)! });
      for (const { claim } of claimed ? await this.store.open(claimed) : []) {
        const selected = claim.id === item.id ? item : this.planned.get(claim.id);
        if (selected?.file !== item.file) {
          await this.store.release(claim);
          continue;
        }
        if (action === 'hold') {
          await this.ensureHeldDir();
          await this.store.detach(claim, claim.batch!.envelope, `${claim.id}.json`, 'held');
        } else {
          // Durable before the batch can go: were this split cut short, the recovered batch must not bring it back.
          await writeTombstone(this.layout, claim.id, parseIncomingName(name)!);
          await claim.batch!.file.settle(this.layout.fs, claim.id);
        }
        acted.push(selected);
      }
      // The batch goes once every message in it is settled; a failed unlink fails the command, which may be rerun.
      const [unremoved] = await this.store.removeSettledBatches();
      if (unremoved) throw unremoved;
    } finally {
      await this.store.dropLease().catch(() => undefined);
    }
    for (const other of acted) {
      if (other !== item) this.doneWithBatch.add(other.id);
      this.done(action, other);
    }
    if (acted.includes(item)) {
      this.touched.add(path.dirname(item.file));
      return { done: true };
    }
    // Claimed by mta-queue first, or it already had an entry of its own: act on wherever it is now.
    const now = await findQueueItem(this.layout, item.id);
    return now && !now.source && now.state === 'incoming' ? this.apply(action, now) : { done: false, reason: whereItWent(now) };
  }

  /** Makes the renames durable: one fsync per directory that gained or lost an entry. */
  async sync(): Promise<void> {
    await Promise.all([...this.touched].map((dir) => new DirectorySync(this.layout.fs, dir).sync()));
    this.touched.clear();
  }

  /** A spool made before held/ existed has none. */
  private async ensureHeldDir(): Promise<void> {
    await this.layout.fs.mkdir(this.layout.dir('held'));
  }

  private async targetOf(action: AdminAction, item: SpoolItem): Promise<string> {
    switch (action) {
      case 'hold':
        await this.ensureHeldDir();
        return path.join(this.layout.dir('held'), `${item.id}.json`);
      case 'delete':
        return path.join(this.layout.dir('tmp'), `${item.id}.deleting`);
      default:
        return path.join(this.layout.dir('incoming'), `${item.id}.json`);
    }
  }
}

function whereItWent(item: SpoolItem | undefined): string {
  if (!item) return 'no longer in the queue (delivered or removed meanwhile)';
  if (item.state === 'active') return `claimed for delivery meanwhile: ${refusal(item)}`;
  return `moved to ${filterStateOf(item.state)} meanwhile; run the command again`;
}
