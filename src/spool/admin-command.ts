import { ConfigError, RelayError } from '../shared/errors.js';
import { ADMIN_ACTIONS, checkBulkState, judgeAction, selectForAction, type AdminAction, type QueueAdmin } from './queue-admin.js';
import { hasCriteria, type QueueFilter } from './queue-filter.js';
import { isQueueId } from './queue-id.js';
import { findQueueItem, scanQueue, type SpoolItem } from './queue-listing.js';
import type { SpoolLayout } from './layout.js';

/**
 * One flush, hold, release or delete as an operator asks for it, by id or by filter, for real or as a dry run:
 * the whole command, so `mta-queue hold …` and the web UI's buttons and bulk form are two faces of this one
 * function and cannot drift apart. The caller only words the result.
 */

/** The queue has no message with the id asked for (exit 1, HTTP 404). */
export class NoSuchMessageError extends RelayError {
  readonly code = 'ENOSUCHMESSAGE';
  constructor(readonly id: string) {
    super(`${id}: no such message in the spool`);
  }
}

export function checkQueueId(id: string): void {
  if (!isQueueId(id)) throw new ConfigError(`"${id}" is not a queue id (20 characters 0-9a-z)`);
}

export type AdminTarget = { id: string } | { filter: QueueFilter; all: boolean };

export interface AdminRequest {
  action: AdminAction;
  target: AdminTarget;
  dryRun: boolean;
}

export type AdminResult =
  /** One message by id that already is what the action would make it. */
  | { kind: 'unchanged'; id: string; reason: string }
  /** One message by id that the action may not touch where it is (being delivered, held, …). */
  | { kind: 'refused'; id: string; reason: string }
  /** `changed` were acted on (or would be, in a dry run); `skipped` matched but were left alone, with why. */
  | { kind: 'applied'; dryRun: boolean; changed: SpoolItem[]; skipped: { item: SpoolItem; reason: string }[] };

/**
 * Checks the request (ConfigError for a usage error, NoSuchMessageError for an unknown id), selects, and acts
 * through `admin` (made only when something will change, so a dry run claims nothing).
 */
export async function runAdminCommand(layout: SpoolLayout, request: AdminRequest, makeAdmin: () => QueueAdmin, now: number): Promise<AdminResult> {
  const { action, target, dryRun } = request;
  let change: SpoolItem[];
  let skipped: { item: SpoolItem; reason: string }[];
  if ('id' in target) {
    checkQueueId(target.id);
    const item = await findQueueItem(layout, target.id);
    if (!item) throw new NoSuchMessageError(target.id);
    const verdict = judgeAction(action, item);
    if (verdict.kind !== 'change') return { kind: verdict.kind, id: target.id, reason: verdict.reason };
    [change, skipped] = [[item], []];
  } else {
    if (!hasCriteria(target.filter) && !target.all) throw new ConfigError(`${action}: no id and no filter; add --all to ${action} every message it applies to`);
    checkBulkState(action, target.filter.state);
    ({ change, refused: skipped } = selectForAction(await scanQueue(layout), action, target.filter, now));
  }
  if (dryRun) return { kind: 'applied', dryRun, changed: change, skipped };
  const admin = makeAdmin();
  admin.plan(change);
  const changed: SpoolItem[] = [];
  try {
    for (const item of change) {
      const result = await admin.apply(action, item);
      if (result.done) changed.push(item);
      else skipped.push({ item, reason: result.reason });
    }
  } finally {
    await admin.sync();
  }
  if ('id' in target && skipped[0]) return { kind: 'refused', id: target.id, reason: skipped[0].reason };
  return { kind: 'applied', dryRun, changed, skipped };
}

/** What a refused single-message action says, in both faces: `0abc…: not held: being delivered right now (…)`. */
export function refusedText(action: AdminAction, id: string, reason: string): string {
  return `${id}: not ${ADMIN_ACTIONS[action].event}: ${reason}`;
}
