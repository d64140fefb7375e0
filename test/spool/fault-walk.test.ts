import assert from 'node:assert/strict';
import { access, cp, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { newLeaseToken, procProcessTable } from '../../src/cli/process-table.js';
import { deferredName } from '../../src/spool/entry-names.js';
import type { Envelope } from '../../src/spool/envelope.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { readSource } from '../../src/spool/message-source.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { QueueAdmin, type AdminAction, type ApplyResult } from '../../src/spool/queue-admin.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { scanQueue } from '../../src/spool/queue-listing.js';
import { QueueStore, type ClaimedMessage } from '../../src/spool/queue-store.js';
import { eioAndEnospcOnWrites, walkFailurePoints, type Outcome, type WalkReport } from '../helpers/fault-walk.js';
import { FaultyFs, type FsCall } from '../helpers/faulty-fs.js';
import { LogCapture } from '../helpers/log-capture.js';
import {
  deadSelfTable,
  deliverableCopies,
  everyoneDeadTable,
  exactlyOnce,
  incomingBatches,
  messageBody,
  newEnvelope,
  ownEntries,
  putBatch,
  putOwnEntry,
  type NewEnvelope,
} from '../helpers/spool-invariants.js';
import { tempDir } from '../helpers/temp.js';

/**
 * Every failure point of the spool's four critical operations (docs/spool.md), walked one call at a time through
 * the FaultyFs seam: commit, detach, split and recovery each run once to count their calls, then once per call
 * with that call failing, and the spool left behind must keep the contract: nothing lost, nothing twice, nothing
 * under a real name that its client did not hear 250 for.
 */

const names = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [])).sort();
const exists = (file: string): Promise<boolean> => access(file).then(() => true, () => false);

function lastIndex(faulty: FaultyFs, match: (call: FsCall) => boolean): number {
  for (let index = faulty.calls.length - 1; index >= 0; index--) if (match(faulty.calls[index]!)) return index;
  return -1;
}

function report(t: { diagnostic(message: string): void }, walk: WalkReport): void {
  t.diagnostic(`N=${walk.steps.length}: ${walk.steps.join(' | ')}`);
  for (const run of walk.runs) t.diagnostic(run);
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Commit (intake)

interface Submission {
  id: string;
  body: Buffer;
  envelope: NewEnvelope;
}

interface CommitState {
  faulty: FaultyFs;
  writer: MessageWriter;
  submissions: Submission[];
  base: number;
  results: Outcome<void>[];
}

/** What intake does with one message: append as DATA streams (waiting when a write had to happen), commit, and discard on error. */
async function submit(writer: MessageWriter, { id, body, envelope }: Submission): Promise<Outcome<void>> {
  const draft = writer.create(id);
  try {
    for (let offset = 0; offset < body.length; offset += 16 * 1024) await draft.append([body.subarray(offset, offset + 16 * 1024)]);
    await draft.commit(envelope);
    return { ok: true, value: undefined };
  } catch (error) {
    await draft.discard();
    return { ok: false, error };
  }
}

function commitScenario(sizes: number[]) {
  return {
    async setup(layout: SpoolLayout, faulty: FaultyFs): Promise<CommitState> {
      const submissions = sizes.map((size, index) => ({ id: newQueueId(Date.now()), body: messageBody(`message ${index}`, size), envelope: newEnvelope() }));
      return { faulty, writer: new MessageWriter(layout), submissions, base: 0, results: [] };
    },
    /** Rejects when any message failed (which ones: `state.results`). */
    async operate(state: CommitState): Promise<void> {
      state.base = state.faulty.calls.length;
      state.results = await Promise.all(state.submissions.map((submission) => submit(state.writer, submission)));
      const failed = state.results.flatMap((result, index) => (result.ok ? [] : [`message ${index}: ${(result.error as Error).message}`]));
      if (failed.length) throw new Error(`452 for ${failed.join(', ')}`);
    },
    async check(state: CommitState, _outcome: Outcome<void>, fault: { k: number } | undefined, layout: SpoolLayout): Promise<void> {
      const results = state.results;
      const items = await scanQueue(layout);
      const inBatches = new Set((await incomingBatches(layout)).flatMap((batch) => batch.records.map((record) => record.envelope.id)));
      for (const [index, { id, body, envelope }] of state.submissions.entries()) {
        const result = results[index]!;
        const listed = items.filter((item) => item.id === id);
        if (result.ok) {
          assert.equal(listed.length, 1, `message ${index} heard 250 but is listed ${listed.length} times`);
          const [item] = listed;
          assert.equal(item!.state, 'incoming');
          assert.ok(item!.source, `message ${index} is not in a batch file`);
          assert.ok((await readSource(item!.source)).equals(body), `message ${index} heard 250 but does not read back byte for byte`);
          assert.deepEqual(item!.envelope, { ...envelope, id, size: body.length } satisfies Envelope);
        } else {
          assert.equal((result.error as NodeJS.ErrnoException).code, 'ESPOOLWRITE', `message ${index} failed with ${String(result.error)}`);
          assert.equal(listed.length, 0, `message ${index} heard 452 but is queued (${listed.map((item) => item.file).join(', ')})`);
          assert.ok(!inBatches.has(id), `message ${index} heard 452 but a batch in incoming/ holds it`);
        }
      }
      assert.deepEqual(await names(layout.dir('tmp')), [], 'tmp/ keeps a file after every draft was committed or discarded');
      for (const dir of ['data', 'deferred', 'held', 'active', 'corrupt'] as const) assert.deepEqual(await names(layout.dir(dir)), [], `${dir}/ after a commit`);
      if (!fault) {
        assert.ok(results.every((result) => result.ok), 'the fault-free commit failed');
        return;
      }
      // Every call of a commit is needed before a 250: a fault anywhere must fail the messages of that batch.
      // The batch a call works for is the one the call names, or (a directory fsync) the last one named before it.
      const hit = state.faulty.calls[state.base + fault.k]!;
      let named = -1;
      for (let index = state.base + fault.k; named < 0 && index >= state.base; index--) named = state.submissions.findIndex(({ id }) => state.faulty.calls[index]!.path.includes(id));
      assert.ok(named >= 0, `the faulted call ${hit.op} ${hit.path} follows no call on a message`);
      assert.equal(results[named]!.ok, false, `a fault at ${hit.op} ${path.basename(hit.path)} while committing message ${named}'s batch, yet it heard 250`);
    },
  };
}

describe('fault walk: commit', () => {
  test('a group commit of three small messages', async (t) => {
    const walk = await walkFailurePoints(commitScenario([2_000, 3_000, 4_000]), eioAndEnospcOnWrites);
    report(t, walk);
  });

  test('a streamed message of 200 KiB in a batch file of its own', async (t) => {
    const walk = await walkFailurePoints(commitScenario([200 * 1024]), eioAndEnospcOnWrites);
    assert.ok(walk.steps.filter((step) => step.startsWith('writev tmp/')).length >= 3, `not streamed: ${walk.steps.join(' | ')}`);
    report(t, walk);
  });

  test('order of operations: datasync, rename into incoming/, fsync of incoming/, and only then the 250', async () => {
    const { dir, cleanup } = await tempDir('mta-walk-');
    try {
      const faulty = new FaultyFs();
      const layout = spoolLayout(path.join(dir, 'spool'), faulty);
      await ensureSpool(layout);
      const incoming = layout.dir('incoming');
      const held = faulty.holdWhen((call) => call.op === 'syncDirectory' && call.path === incoming);
      const submission = { id: newQueueId(Date.now()), body: messageBody('streamed', 200 * 1024), envelope: newEnvelope() };
      const commit: { settled?: Outcome<void> } = {};
      const committing = submit(new MessageWriter(layout), submission).then((outcome) => (commit.settled = outcome));
      await held.reached;
      for (let turn = 0; turn < 20; turn++) await nextTurn();
      assert.equal(commit.settled, undefined, 'commit settled while the fsync of incoming/ was still running');
      const tmpFile = path.join(layout.dir('tmp'), `${submission.id}.batch`);
      const at = (op: string, file: string) => lastIndex(faulty, (call) => call.op === op && call.path === file);
      const header = at('write', tmpFile);
      const datasync = at('datasync', tmpFile);
      const renamed = at('rename', `${tmpFile} -> ${path.join(incoming, `${submission.id}.batch`)}`);
      const synced = at('syncDirectory', incoming);
      assert.ok(header >= 0 && datasync >= 0 && renamed >= 0 && synced >= 0, faulty.callsOn(() => true).join('\n'));
      assert.ok(header < datasync, 'the real header is written before the fdatasync');
      assert.ok(datasync < renamed, 'the batch is fdatasynced before it is renamed into incoming/');
      assert.ok(renamed < synced, 'incoming/ is fsynced after the rename');
      assert.equal(synced, faulty.calls.length - 1, `calls after the fsync of incoming/: ${faulty.callsOn(() => true).slice(synced + 1).join(', ')}`);
      held.release();
      const settled = await committing;
      assert.ok(settled.ok, `commit failed: ${settled.ok ? '' : String(settled.error)}`);
    } finally {
      await cleanup();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 2. Detach (deferring a message of a claimed batch)

interface DetachState {
  store: QueueStore;
  batch: { name: string; ids: string[]; bodies: Map<string, Buffer> };
  batchPath: string;
  target: ClaimedMessage;
  due: number;
  othersCompleted: boolean;
}

/**
 * `othersCompleted`: the two other messages of the batch were delivered first, so the detach settles the last
 * open message and unlinks the batch (one more failure point).
 */
function detachScenario(othersCompleted: boolean) {
  return {
    async setup(layout: SpoolLayout): Promise<DetachState> {
      const store = new QueueStore(layout, procProcessTable(), newLeaseToken());
      await store.takeLease();
      const batch = await putBatch(spoolLayout(layout.root), ['first', 'second', 'third']);
      const claimed = await store.claim({ dir: 'incoming', name: batch.name, id: batch.ids[0]! });
      assert.ok(claimed);
      const messages = await store.open(claimed);
      assert.equal(messages.length, 3);
      if (othersCompleted) for (const { claim } of [messages[0]!, messages[2]!]) await store.whileHeld(claim, () => store.complete(claim));
      return { store, batch, batchPath: claimed.path, target: messages[1]!, due: Date.now() + 5 * 60_000, othersCompleted };
    },
    operate({ store, target, due }: DetachState): Promise<void> {
      const { claim, envelope } = target;
      return store.whileHeld(claim, () => store.defer(claim, { ...envelope, nextAttemptAt: due }));
    },
    async check(state: DetachState, outcome: Outcome<void>, fault: unknown, layout: SpoolLayout): Promise<void> {
      const id = state.target.envelope.id;
      const body = state.batch.bodies.get(id)!;
      const own = await ownEntries(layout); // fails on any envelope without its data/<id>.eml
      assert.deepEqual(own.filter((copy) => copy.id !== id).map((copy) => copy.where), [], 'another message of the batch got an entry');
      const mine = own.filter((copy) => copy.id === id);
      if (outcome.ok) {
        assert.deepEqual(mine.map((copy) => copy.where), [`deferred/${deferredName(id, state.due)}`]);
        assert.ok(mine[0]!.bytes.equals(body), 'data/<id>.eml is not the record bytes');
        assert.equal(mine[0]!.envelope.nextAttemptAt, state.due);
        assert.equal(mine[0]!.envelope.detachedFrom, state.batch.ids[0]);
      } else {
        assert.ok(mine.length <= 1);
      }
      // Every call of a detach is a step of its durability: none may fail unseen. The one exception is the unlink
      // of the batch after its last message settled: housekeeping, which the store retries (the message is done).
      const batchUnlink = (fault as { step?: string } | undefined)?.step === 'unlink active/<lease>/<id>.batch';
      if (fault && !batchUnlink) assert.equal(outcome.ok, false, 'a failed call of the detach went unreported');
      if (batchUnlink) {
        assert.ok(outcome.ok, 'the message is settled even though its batch could not be unlinked');
        assert.ok(await exists(state.batchPath), 'the batch is still there after the failed unlink');
        assert.equal((await state.store.removeSettledBatches()).length, 0, 'the retry removes it');
      }
      const batchLeft = await exists(state.batchPath);
      if (!othersCompleted || !outcome.ok) assert.ok(batchLeft, 'the batch file left the claim directory while a message in it had no other copy');
      else assert.ok(!batchLeft, 'the batch stayed after its last message settled');
      if (outcome.ok) return crashAndRecover(state, layout, 'after recovery', { deferred: true, batchLeft });

      // The owner dies right after the failure (a copy of the spool), or lives on and does what queue-runner's
      // handleFailure does with a failed defer: postpone the claim after the back-off, with another due time.
      const crashed = spoolLayout(`${layout.root}-crashed`);
      await cp(layout.root, crashed.root, { recursive: true });
      await crashAndRecover(state, crashed, 'crash right after the failed detach', { deferred: false, batchLeft });
      const { claim, envelope } = state.target;
      await state.store.whileHeld(claim, () => state.store.postpone(claim, envelope, state.due + 60_000));
      const entries = (await ownEntries(layout)).filter((copy) => copy.id === id).map((copy) => copy.where);
      assert.equal(entries.length, 1, `the delivery's postpone after the failed detach left the message in ${entries.length} places: ${entries.join(', ')}`);
      if (othersCompleted) assert.ok(!(await exists(state.batchPath)), 'the batch stays claimed after its last message was detached: its delivered messages come back at the next start');
      await crashAndRecover(state, layout, 'crash after the postpone', { deferred: true, batchLeft: await exists(state.batchPath) });
    },
  };
}

/** The owner of the claim dies; another process recovers its claim and reads the recovered batch. */
async function crashAndRecover(state: DetachState, layout: SpoolLayout, what: string, expect: { deferred: boolean; batchLeft: boolean }): Promise<void> {
  const id = state.target.envelope.id;
  const recoverer = new QueueStore(layout, everyoneDeadTable(), newLeaseToken());
  await recoverer.takeLease();
  await recoverer.recoverAbandonedClaims(Date.now(), { atStart: true });
  assert.ok(!(await exists(path.join(layout.dir('active'), path.basename(state.store.activeDir)))), `${what}: the dead owner's claim directory survived recovery`);
  const copies = await deliverableCopies(layout, recoverer);
  const target = exactlyOnce(copies, id, state.batch.bodies.get(id)!, what);
  if (expect.deferred) assert.equal(target.state, 'deferred', `${what}: a deferred message came back from the batch`);
  for (const other of state.batch.ids.filter((other) => other !== id)) {
    // A delivered message of a batch still claimed comes back with it (duplicates over loss), once.
    if (state.othersCompleted && !expect.batchLeft) assert.deepEqual(copies.get(other) ?? [], [], `${what}: a delivered message came back`);
    else exactlyOnce(copies, other, state.batch.bodies.get(other)!, what);
  }
}

describe('fault walk: detach', () => {
  test('deferring the second message of a claimed batch of three', async (t) => {
    report(t, await walkFailurePoints(detachScenario(false)));
  });

  test('deferring the last open message of a batch, which then leaves the spool', async (t) => {
    const walk = await walkFailurePoints(detachScenario(true));
    assert.match(walk.steps.at(-1)!, /^unlink active\/<lease>\/<id>\.batch$/);
    report(t, walk);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Split (an admin command holding or deleting one message inside an incoming/ batch)

interface SplitState {
  admin: QueueAdmin;
  batch: { name: string; ids: string[]; bodies: Map<string, Buffer> };
  targetId: string;
  applied?: ApplyResult;
  /** Whether deleted/<target> existed once the command stopped, before any recovery. */
  tombstoned?: boolean;
}

function splitScenario(action: Extract<AdminAction, 'hold' | 'delete'>) {
  return {
    async setup(layout: SpoolLayout): Promise<SplitState> {
      const batch = await putBatch(spoolLayout(layout.root), ['first', 'second', 'third']);
      // Recovery by another process must see the admin command as dead: its lease names another start time.
      const admin = new QueueAdmin(layout, new LogCapture().logger, deadSelfTable('gone'), newLeaseToken());
      return { admin, batch, targetId: batch.ids[1]! };
    },
    async operate(state: SplitState): Promise<ApplyResult> {
      const item = (await scanQueue(spoolLayout(state.admin.layout.root))).find((candidate) => candidate.id === state.targetId);
      assert.ok(item);
      state.admin.plan([item]);
      state.applied = await state.admin.apply(action, item);
      await state.admin.sync();
      return state.applied;
    },
    async check(state: SplitState, outcome: Outcome<ApplyResult>, _fault: unknown, layout: SpoolLayout): Promise<void> {
      const done = state.applied?.done === true;
      state.tombstoned = await exists(path.join(layout.dir('deleted'), state.targetId));
      if (outcome.ok) {
        assert.ok(done, `the ${action} reported ${JSON.stringify(outcome.value)}`);
        // A failed dropLease is swallowed by design: an empty claim directory (its lease only) is garbage for recovery.
        for (const owner of await names(layout.dir('active'))) assert.deepEqual((await names(path.join(layout.dir('active'), owner))).filter((name) => name !== '.lease'), [], `a finished split left entries in active/${owner}`);
        assert.deepEqual((await names(layout.dir('incoming'))).filter((name) => name.endsWith('.batch')), [], 'the split batch is still in incoming/');
      }
      const recoverer = new QueueStore(layout, procProcessTable(), newLeaseToken());
      await recoverer.takeLease();
      await recoverer.recoverAbandonedClaims(Date.now(), { atStart: true });
      assert.deepEqual(await names(layout.dir('active')), [path.basename(recoverer.activeDir)], 'a claim directory of the dead command survived recovery');
      const copies = await deliverableCopies(layout, recoverer);
      for (const id of state.batch.ids.filter((other) => other !== state.targetId)) {
        assert.equal(exactlyOnce(copies, id, state.batch.bodies.get(id)!, 'a message the command did not select').state, 'incoming');
      }
      const body = state.batch.bodies.get(state.targetId)!;
      if (action === 'hold') {
        const copy = exactlyOnce(copies, state.targetId, body, 'the held message');
        assert.ok(copy.state === 'held' || copy.state === 'incoming', `the held message is ${copy.where}`);
        if (done) assert.equal(copy.state, 'held', `hold returned done, yet the message is ${copy.where}`);
      } else {
        const found = copies.get(state.targetId) ?? [];
        if (done) assert.deepEqual(found.map((copy) => copy.where), [], 'delete returned done, yet the message came back');
        // Its tombstone is written before the batch can go: once it is there, no recovery may bring the message back.
        else if (state.tombstoned) assert.deepEqual(found.map((copy) => copy.where), [], 'the message came back although its tombstone was written');
        else if (found.length) assert.equal(exactlyOnce(copies, state.targetId, body, 'the message not deleted').state, 'incoming');
      }
    },
  };
}

interface DetachedDeleteState {
  admin: QueueAdmin;
  batch: { name: string; ids: string[]; bodies: Map<string, Buffer> };
  targetId: string;
  applied?: ApplyResult;
  tombstoned?: boolean;
}

/**
 * `delete` of a message a delivery detached (deferred) from a batch it still claims, after which that delivery
 * dies: the recovered batch still holds the message, and only its tombstone keeps it from coming back.
 */
const detachedDeleteScenario = {
  async setup(layout: SpoolLayout): Promise<DetachedDeleteState> {
    const plain = spoolLayout(layout.root);
    const delivery = new QueueStore(plain, deadSelfTable('dead delivery'), newLeaseToken());
    await delivery.takeLease();
    const batch = await putBatch(plain, ['first', 'second', 'third']);
    const claimed = await delivery.claim({ dir: 'incoming', name: batch.name, id: batch.ids[0]! });
    assert.ok(claimed);
    const { claim, envelope } = (await delivery.open(claimed))[1]!;
    await delivery.whileHeld(claim, () => delivery.defer(claim, { ...envelope, nextAttemptAt: Date.now() + 60_000 }));
    const admin = new QueueAdmin(layout, new LogCapture().logger, deadSelfTable('gone'), newLeaseToken());
    return { admin, batch, targetId: claim.id };
  },
  async operate(state: DetachedDeleteState): Promise<ApplyResult> {
    const item = (await scanQueue(spoolLayout(state.admin.layout.root))).find((candidate) => candidate.id === state.targetId && candidate.state === 'deferred');
    assert.equal(item?.envelope?.detachedFrom, state.batch.ids[0]);
    state.admin.plan([item!]);
    state.applied = await state.admin.apply('delete', item!);
    await state.admin.sync();
    return state.applied;
  },
  async check(state: DetachedDeleteState, outcome: Outcome<ApplyResult>, _fault: unknown, layout: SpoolLayout): Promise<void> {
    const done = state.applied?.done === true;
    if (outcome.ok) assert.ok(done, `the delete reported ${JSON.stringify(outcome.value)}`);
    state.tombstoned = await exists(path.join(layout.dir('deleted'), state.targetId));
    const recoverer = new QueueStore(layout, procProcessTable(), newLeaseToken());
    await recoverer.takeLease();
    await recoverer.recoverAbandonedClaims(Date.now(), { atStart: true });
    assert.deepEqual(await names(layout.dir('active')), [path.basename(recoverer.activeDir)], 'the dead delivery\'s claim survived recovery');
    const copies = await deliverableCopies(layout, recoverer);
    for (const id of state.batch.ids.filter((other) => other !== state.targetId)) exactlyOnce(copies, id, state.batch.bodies.get(id)!, 'a message the command did not select');
    const found = copies.get(state.targetId) ?? [];
    if (done) assert.deepEqual(found.map((copy) => copy.where), [], 'delete returned done, yet the message came back from the recovered batch');
    else if (state.tombstoned) assert.deepEqual(found.map((copy) => copy.where), [], 'the message came back although its tombstone was written');
    else if (found.length) exactlyOnce(copies, state.targetId, state.batch.bodies.get(state.targetId)!, 'the message not deleted');
  },
};

describe('fault walk: split', () => {
  for (const action of ['hold', 'delete'] as const) {
    test(`${action} of the second message of an incoming/ batch of three`, async (t) => {
      report(t, await walkFailurePoints(splitScenario(action)));
    });
  }

  test('delete of a message detached from a batch that a delivery which then dies still claims', async (t) => {
    report(t, await walkFailurePoints(detachedDeleteScenario));
  });

  for (const action of ['hold', 'delete'] as const) {
    test(`${action} that returned, then a power loss undoes the un-fsynced unlink of the split batch`, async () => {
      const { dir, cleanup } = await tempDir('mta-walk-');
      try {
        const faulty = new FaultyFs();
        const layout = spoolLayout(path.join(dir, 'spool'), faulty);
        await ensureSpool(layout);
        const state = await splitScenario(action).setup(layout);
        // Nothing fsyncs the claim directory after the batch's unlink: a crash may bring the file back.
        faulty.loseWhen((call) => call.op === 'unlink' && call.path.includes(`${path.sep}active${path.sep}`) && call.path.endsWith(state.batch.name));
        assert.deepEqual(await splitScenario(action).operate(state), { done: true });
        const plain = spoolLayout(layout.root);
        const recoverer = new QueueStore(plain, procProcessTable(), newLeaseToken());
        await recoverer.takeLease();
        assert.deepEqual(await recoverer.recoverAbandonedClaims(Date.now(), { atStart: true }), [state.batch.ids[0]], 'the batch came back from the claim');
        const copies = await deliverableCopies(plain, recoverer);
        for (const id of state.batch.ids.filter((other) => other !== state.targetId)) assert.equal(exactlyOnce(copies, id, state.batch.bodies.get(id)!, 'after the crash').state, 'incoming');
        if (action === 'hold') assert.equal(exactlyOnce(copies, state.targetId, state.batch.bodies.get(state.targetId)!, 'the held message').state, 'held');
        else assert.deepEqual((copies.get(state.targetId) ?? []).map((copy) => copy.where), [], 'the deleted message came back');
      } finally {
        await cleanup();
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// 4. Recovery of a dead process's claims

interface RecoveryState {
  live: QueueStore;
  deadDir: string;
  batch: { name: string; ids: string[]; bodies: Map<string, Buffer> };
  own: { id: string; body: Buffer };
}

const recoveryScenario = {
  async setup(layout: SpoolLayout): Promise<RecoveryState> {
    const plain = spoolLayout(layout.root);
    const dead = new QueueStore(plain, deadSelfTable('dead'), newLeaseToken());
    await dead.takeLease();
    const batch = await putBatch(plain, ['first', 'second']);
    const own = await putOwnEntry(plain, 'own entry');
    assert.ok(await dead.claim({ dir: 'incoming', name: batch.name, id: batch.ids[0]! }));
    assert.ok(await dead.claim({ dir: 'incoming', name: `${own.id}.json`, id: own.id }));
    return { live: new QueueStore(layout, procProcessTable(), newLeaseToken()), deadDir: dead.activeDir, batch, own };
  },
  operate({ live }: RecoveryState): Promise<string[]> {
    return live.recoverAbandonedClaims(Date.now(), { atStart: true });
  },
  async check(state: RecoveryState, outcome: Outcome<string[]>, _fault: unknown, layout: SpoolLayout): Promise<void> {
    const batchId = state.batch.ids[0]!;
    if (outcome.ok) assert.deepEqual([...outcome.value].sort(), [batchId, state.own.id].sort());
    await new QueueStore(layout, procProcessTable(), newLeaseToken()).recoverAbandonedClaims(Date.now(), { atStart: true });
    assert.ok(!(await exists(state.deadDir)), 'the dead claim directory survived the second pass');
    assert.deepEqual(await names(layout.dir('active')), []);
    assert.deepEqual(await names(layout.dir('incoming')), [`${batchId}.recovered.batch`, `${state.own.id}.json`].sort());
    const items = await scanQueue(layout);
    const expected = new Map([...state.batch.bodies, [state.own.id, state.own.body]]);
    assert.deepEqual(items.map((item) => item.id).sort(), [...expected.keys()].sort(), 'every message queued exactly once');
    for (const item of items) {
      assert.equal(item.state, 'incoming');
      const bytes = item.source ? await readSource(item.source) : (await ownEntries(layout)).find((copy) => copy.id === item.id)!.bytes;
      assert.ok(bytes.equals(expected.get(item.id)!), `${item.id} is not its message byte for byte`);
    }
  },
};

describe('fault walk: recovery', () => {
  test('a dead process\'s claim of a batch and an envelope, recovered with a fault, then once more', async (t) => {
    report(t, await walkFailurePoints(recoveryScenario));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The checks themselves must fail on a broken spool, or a walk passes whatever happens.

describe('fault walk invariants catch a broken spool', () => {
  async function spool(): Promise<{ layout: SpoolLayout; cleanup: () => Promise<void> }> {
    const { dir, cleanup } = await tempDir('mta-walk-');
    const layout = spoolLayout(path.join(dir, 'spool'));
    await ensureSpool(layout);
    return { layout, cleanup };
  }

  test('an envelope without its message, a half batch, a message twice, a message lost', async () => {
    const { layout, cleanup } = await spool();
    try {
      const { id } = await putOwnEntry(layout, 'orphan');
      await writeFile(layout.messagePath(id), '');
      await assert.rejects(ownEntries(layout), /data\/.*\.eml is 0 bytes/);
      await writeFile(path.join(layout.dir('incoming'), `${id}.json`), '{"version":1');
      await assert.rejects(ownEntries(layout), /half-written envelope/);

      await putBatch(layout, ['a', 'b']);
      await writeFile(path.join(layout.dir('incoming'), `${newQueueId()}.batch`), 'MTAB1 000000000100 000000000010\nshort');
      await assert.rejects(incomingBatches(layout), /does not parse/);
    } finally {
      await cleanup();
    }
    const fresh = await spool();
    try {
      const batch = await putBatch(fresh.layout, ['a', 'b']);
      const [first, second] = batch.ids as [string, string];
      // An entry of its own for a message still in a fresh batch: deliverable twice.
      await writeFile(fresh.layout.messagePath(first), batch.bodies.get(first)!);
      await writeFile(path.join(fresh.layout.dir('incoming'), `${first}.json`), JSON.stringify({ ...newEnvelope(), id: first, size: batch.bodies.get(first)!.length }));
      const reader = new QueueStore(fresh.layout, procProcessTable(), newLeaseToken());
      await reader.takeLease();
      const copies = await deliverableCopies(fresh.layout, reader);
      assert.throws(() => exactlyOnce(copies, first, batch.bodies.get(first)!, 'check'), /deliverable twice/);
      assert.throws(() => exactlyOnce(copies, second, Buffer.from('other bytes'), 'check'), /byte for byte/);
      assert.throws(() => exactlyOnce(copies, newQueueId(), Buffer.alloc(0), 'check'), /is lost/);
    } finally {
      await fresh.cleanup();
    }
  });
});
