import assert from 'node:assert/strict';
import path from 'node:path';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { FaultyFs, type FsCall } from './faulty-fs.js';
import { tempDir } from './temp.js';

/** How one run of the operation ended. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The injected fault of a run: call number `k` of the operation failed with `code`. */
export interface Fault {
  k: number;
  code: string;
  step: string;
}

/**
 * One spool operation to walk (chasquid's safeio tests): `setup` prepares a fresh spool through the double
 * (its calls are not counted), `operate` is the operation whose every call gets failed once, `check` asserts the
 * invariants on what is left, given how the run ended.
 */
export interface WalkScenario<S, T> {
  setup(layout: SpoolLayout, faulty: FaultyFs): Promise<S>;
  operate(state: S): Promise<T>;
  check(state: S, outcome: Outcome<T>, fault: Fault | undefined, layout: SpoolLayout): Promise<void>;
}

export interface WalkReport {
  /** The operation's calls in the fault-free run, as `op dir/name` with ids replaced by `<id>`. */
  steps: string[];
  /** One line per faulted run: `k step code → resolved|rejected`. */
  runs: string[];
}

/** `rename /x/spool/tmp/0abc….batch -> /x/spool/incoming/0abc….batch` → `rename tmp/<id>.batch -> incoming/<id>.batch`. */
export function describeCall(call: FsCall, root: string): string {
  const shown = call.path
    .split(' -> ')
    .map((file) => path.relative(root, file) || '.')
    .join(' -> ')
    .replace(/[0-9a-z]{20}/g, '<id>')
    .replace(/\d+-[0-9a-f]{10}/g, '<lease>');
  return `${call.op} ${shown}`;
}

async function settle<T>(run: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await run };
  } catch (error) {
    return { ok: false, error };
  }
}

async function freshSpool(): Promise<{ layout: SpoolLayout; faulty: FaultyFs; cleanup: () => Promise<void> }> {
  const { dir, cleanup } = await tempDir('mta-walk-');
  const faulty = new FaultyFs();
  const layout = spoolLayout(path.join(dir, 'spool'), faulty);
  await ensureSpool(spoolLayout(layout.root));
  return { layout, faulty, cleanup };
}

/**
 * Runs the operation once without faults to count its calls N, then once per call k (and per code `codesAt`
 * gives for that call) on a fresh spool with call k failing, checking the invariants after each run.
 */
export async function walkFailurePoints<S, T>(scenario: WalkScenario<S, T>, codesAt: (step: string) => string[] = () => ['EIO']): Promise<WalkReport> {
  const counting = await freshSpool();
  let steps: string[];
  try {
    const state = await scenario.setup(counting.layout, counting.faulty);
    const base = counting.faulty.calls.length;
    const outcome = await settle(scenario.operate(state));
    assert.ok(outcome.ok, `the fault-free run failed: ${outcome.ok ? '' : String(outcome.error)}`);
    steps = counting.faulty.calls.slice(base).map((call) => describeCall(call, counting.layout.root));
    await scenario.check(state, outcome, undefined, spoolLayout(counting.layout.root));
  } finally {
    await counting.cleanup();
  }
  assert.ok(steps.length > 3, `only ${steps.length} calls: ${steps.join('; ')}`);
  const runs: string[] = [];
  const broken: Error[] = [];
  for (const [k, step] of steps.entries()) {
    for (const code of codesAt(step)) {
      const run = await freshSpool();
      try {
        const state = await scenario.setup(run.layout, run.faulty);
        const index = run.faulty.calls.length + k;
        run.faulty.failCall(index, code);
        const outcome = await settle(scenario.operate(state));
        const hit = run.faulty.calls[index];
        // The same call sequence up to k, or the walk would fail something else than it reports.
        assert.ok(hit, `k=${k} (${step}): the run made only ${run.faulty.calls.length} calls, the fault never fired`);
        assert.equal(hit.op, step.split(' ')[0], `k=${k}: the faulted call was ${describeCall(hit, run.layout.root)}, the fault-free run had ${step} there`);
        const fault = { k, code, step };
        const ended = outcome.ok ? 'resolved' : `rejected: ${(outcome.error as Error).message.replaceAll(run.layout.root, '…').replace(/[0-9a-z]{20}/g, '<id>')}`;
        try {
          await scenario.check(state, outcome, fault, spoolLayout(run.layout.root));
        } catch (error) {
          if (!(error instanceof Error)) throw error;
          error.message = `fault at k=${k} (${step}) with ${code}, operation ${ended}: ${error.message}`;
          broken.push(error);
        }
        runs.push(`${k} ${step} ${code} → ${ended}`);
      } finally {
        await run.cleanup();
      }
    }
  }
  // Every failure point that breaks an invariant, not only the first: the report says which steps need a fix.
  if (broken.length === 1) throw broken[0];
  if (broken.length > 1) throw Object.assign(new assert.AssertionError({ message: `${broken.length} failure points break an invariant:\n${broken.map((error) => error.message.split('\n')[0]).join('\n')}` }), { cause: broken });
  return { steps, runs };
}

/** Where the write and fdatasync calls are, a full disk (ENOSPC) is walked too. */
export function eioAndEnospcOnWrites(step: string): string[] {
  return /^(write|writev|writeFile|datasync) /.test(step) ? ['EIO', 'ENOSPC'] : ['EIO'];
}
