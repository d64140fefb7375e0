import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackoffStore } from '../../src/spool/backoff-store.js';
import type { SpoolLayout } from '../../src/spool/layout.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { CpuMeter } from './cpu-meter.js';
import type { DeliveryBenchOptions } from './delivery-options.js';
import { BENCH_RECIPIENT, BENCH_SENDER } from './message.js';
import { freshSpool, type DrainContext } from './mta-drain.js';
import { MtaQueueProcess } from './mta-queue-process.js';
import { fillDeferred, writeOne } from './spool-fill.js';
import { formatMs, percentile } from './stats.js';

/**
 * bench:delivery's `deferred` and `suspended` scenarios: one mta-queue on a spool where many messages wait (due in
 * an hour, or held back by a suspended site), measured at rest, then the latency of new mail to the sink.
 */

/** The suspended site of the `suspended` scenario: its MX address has nothing listening, and is never tried. */
export const HELD_DOMAIN = 'held.test';
export const HELD_MX = `mx.${HELD_DOMAIN}`;
export const HELD_MX_HOST = '127.0.0.4';
const SUSPENDED_FOR_MS = 6 * 3_600_000;
const TSS04_REPLY = '421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints';

export type WaitingKind = 'deferred' | 'suspended';

interface WaitingSpec {
  kind: WaitingKind;
  count: number;
  /** One line saying what waits, for the progress and the report. */
  title: string;
  idleSeconds: number;
  /** After the `started` line, before the idle window: what start-up leaves behind (GC of the listing) is not counted. */
  settleMs: number;
  latencyTargetMs: number;
  idleCpuTargetPercent: number | null;
  fill(layout: SpoolLayout): Promise<number>;
}

export interface WaitingQueueResult {
  kind: WaitingKind;
  title: string;
  deferred: number;
  fillMs: number;
  /** Spawn → the `started` log line (recovery, deferred/ indexed, incoming/ scanned). */
  startupMs: number | null;
  indexed: number | null;
  idleSeconds: number;
  /** CPU over the idle window, % of one core, and what other processes used meanwhile. */
  idleCpuPercent: number | null;
  othersPercentOfCore: number | null;
  idleCpuTargetPercent: number | null;
  rssMb: number | null;
  /** Peak RSS since start (VmHWM): what indexing the waiting mail cost. */
  peakRssMb: number | null;
  /** Commit of a new message (when mta-server would say 250) → the sink has it; negative when it was faster than the fsyncs. */
  latenciesMs: (number | null)[];
  /** Start of writing the message → the sink has it: the figure held against the target. */
  latenciesFromWriteMs: (number | null)[];
  latencyTargetMs: number;
  latencyTargetMet: boolean | null;
  idleCpuTargetMet: boolean | null;
  shutdownMs: number | null;
  errors: string[];
}

/** The scenarios asked for, with their sizes: `--deferred` and `--idle-seconds` when given, else each one's own. */
export function waitingSpecs(options: DeliveryBenchOptions): WaitingSpec[] {
  const specs: WaitingSpec[] = [];
  if (options.scenarios.has('deferred')) {
    const count = options.deferred ?? 100_000;
    specs.push({
      kind: 'deferred',
      count,
      title: `${count.toLocaleString('en-US')} deferred messages due in 1 h`,
      idleSeconds: options.idleSeconds ?? 10,
      settleMs: 500,
      latencyTargetMs: 2000,
      idleCpuTargetPercent: null,
      fill: (layout) => fillDeferred(layout, count, Date.now() + 3_600_000, 600_000, BENCH_SENDER, BENCH_RECIPIENT),
    });
  }
  if (options.scenarios.has('suspended')) {
    const count = options.deferred ?? 1_000_000;
    specs.push({
      kind: 'suspended',
      count,
      title: `${count.toLocaleString('en-US')} messages held back for ${HELD_MX}, suspended for 6 h`,
      idleSeconds: options.idleSeconds ?? 60,
      settleMs: 5_000,
      latencyTargetMs: 1000,
      idleCpuTargetPercent: 2,
      fill: (layout) => fillSuspended(layout, count),
    });
  }
  return specs;
}

/** A [TSS04] suspension of the held site in state/backoffs.json, and its mail held back until the suspension ends. */
async function fillSuspended(layout: SpoolLayout, count: number): Promise<number> {
  const now = Date.now();
  const until = now + SUSPENDED_FOR_MS;
  await new BackoffStore(layout).put({ site: HELD_MX, source: 'default', rule: 'built-in rule 1', action: 'suspend', since: now, until, reply: TSS04_REPLY, shaping: {} }, now);
  const reason = `held back: ${HELD_MX} suspended until ${new Date(until).toISOString()} by built-in rule 1 (${TSS04_REPLY})`;
  return fillDeferred(layout, count, until, 0, BENCH_SENDER, (index) => `r${index}@${HELD_DOMAIN}`, undefined, { site: HELD_MX, source: 'default', reason });
}

export async function measureWaitingQueue(context: DrainContext, options: DeliveryBenchOptions, spec: WaitingSpec, message: Buffer): Promise<WaitingQueueResult> {
  const { workDir, sink, cleanups, progress, checkInterrupted } = context;
  const { layout, remove } = await freshSpool(workDir);
  cleanups.add(remove);
  const errors: string[] = [];
  let proc: MtaQueueProcess | null = null;
  const stop = async () => {
    await proc?.stop();
  };
  cleanups.add(stop);
  const result: WaitingQueueResult = {
    kind: spec.kind,
    title: spec.title,
    deferred: spec.count,
    fillMs: 0,
    startupMs: null,
    indexed: null,
    idleSeconds: spec.idleSeconds,
    idleCpuPercent: null,
    othersPercentOfCore: null,
    idleCpuTargetPercent: spec.idleCpuTargetPercent,
    rssMb: null,
    peakRssMb: null,
    latenciesMs: [],
    latenciesFromWriteMs: [],
    latencyTargetMs: spec.latencyTargetMs,
    latencyTargetMet: null,
    idleCpuTargetMet: null,
    shutdownMs: null,
    errors,
  };
  try {
    result.fillMs = await spec.fill(layout);
    progress(`  ${spec.count} waiting messages written in ${(result.fillMs / 1000).toFixed(1)} s`);
    checkInterrupted();
    const baseline = sink.count;
    proc = MtaQueueProcess.start({ repoRoot: context.mtaRoot, spool: layout.root, dnsServer: context.dns.address, smtpPort: sink.port, concurrency: options.concurrency, perDestination: options.perDestination, logLevel: 'info' });
    const started = await proc.waitForEvent('started', 300_000);
    if (!started) throw new Error(`no "started" line within 300 s${proc.exitReason ? `: ${proc.exitReason}` : ''}`);
    result.startupMs = started.at - proc.spawnedAt;
    result.indexed = typeof started.deferred === 'number' ? started.deferred : null;
    progress(`  started after ${formatMs(result.startupMs)} ms with ${result.indexed} deferred indexed`);

    await sleep(spec.settleMs);
    const running = proc;
    const meter = new CpuMeter(() => running.cpuMs());
    await meter.start();
    const t0 = performance.now();
    await sleep(spec.idleSeconds * 1000);
    const idle = await meter.stop();
    result.idleCpuPercent = (idle.serverCpuMs / (performance.now() - t0)) * 100;
    result.othersPercentOfCore = idle.othersPercentOfCore;
    if (spec.idleCpuTargetPercent !== null) result.idleCpuTargetMet = result.idleCpuPercent <= spec.idleCpuTargetPercent;
    const memory = await proc.memory();
    result.rssMb = memory ? memory.rssKb / 1024 : null;
    result.peakRssMb = memory ? memory.hwmKb / 1024 : null;
    progress(`  idle CPU ${result.idleCpuPercent.toFixed(2)}% of a core over ${spec.idleSeconds} s, RSS ${result.rssMb?.toFixed(0)} MB`);

    const writer = new MessageWriter(layout);
    for (let i = 0; i < options.latencyMessages; i++) {
      // Spread the arrivals over the poll interval, so the figure is not one lucky phase of a timer.
      await sleep(300 + Math.floor(Math.random() * 700));
      const before = sink.count;
      const writeStarted = performance.now();
      await writeOne(writer, message, BENCH_SENDER, BENCH_RECIPIENT);
      const committed = performance.now();
      const at = await sink.waitForCount(before + 1, 10_000);
      // The sink may count it before commit() resolves: the queue sees the envelope at its rename into incoming/,
      // before the directory fsyncs that commit still waits for. Then "after commit" is negative.
      result.latenciesMs.push(at === null ? null : at - committed);
      result.latenciesFromWriteMs.push(at === null ? null : at - writeStarted);
      progress(`  new message ${i + 1}: ${at === null ? 'NOT at the sink within 10 s' : `at the sink ${formatMs(at - writeStarted)} ms after writing began (${formatMs(at - committed)} ms after its commit)`}`);
    }
    const measured = result.latenciesFromWriteMs.filter((value): value is number => value !== null);
    result.latencyTargetMet = measured.length === result.latenciesFromWriteMs.length && Math.max(...measured) <= spec.latencyTargetMs;
    const extra = sink.count - baseline - measured.length;
    if (extra !== 0) errors.push(`${extra} messages other than the new ones reached the sink (waiting mail delivered early?)`);
    for (const event of ['deferred', 'held-back']) {
      if (await proc.waitForEvent(event, 0)) errors.push(`mta-queue logged "${event}": it tried mail that was not due`);
    }
    result.shutdownMs = await proc.stop();
    if (proc.problemCount > 0) errors.push(`mta-queue logged ${proc.problemCount} warn/error lines, last: ${proc.problems.at(-1)}`);
    if (proc.exitReason && !/SIGTERM|status 0/.test(proc.exitReason)) errors.push(proc.exitReason);
  } catch (error) {
    errors.push((error as Error).message);
  } finally {
    await stop();
    cleanups.delete(stop);
    progress(`  removing the ${spec.count}-message spool…`);
    await remove();
    cleanups.delete(remove);
  }
  return result;
}

export function renderWaitingQueue(result: WaitingQueueResult): string[] {
  const describe = (values: (number | null)[]) => {
    const ok = values.filter((value): value is number => value !== null);
    return ok.length ? `p50 ${formatMs(percentile(ok, 50))} ms, max ${formatMs(Math.max(...ok))} ms (${values.map((v) => (v === null ? 'lost' : formatMs(v))).join(', ')})` : 'none arrived';
  };
  const verdict = (met: boolean | null) => (met === null ? 'not measured' : met ? 'met' : 'NOT met');
  const rows: [string, string][] = [
    ['start-up (spawn → "started")', result.startupMs === null ? '—' : `${formatMs(result.startupMs)} ms (${result.indexed ?? '?'} deferred indexed)`],
    [
      `idle CPU over ${result.idleSeconds} s`,
      result.idleCpuPercent === null ? '—' : `${result.idleCpuPercent.toFixed(2)}% of one core (other processes meanwhile: ${Math.round(result.othersPercentOfCore ?? 0)}% of a core)`,
    ],
  ];
  if (result.idleCpuTargetPercent !== null) {
    rows.push([`  target ≤ ${result.idleCpuTargetPercent} %`, verdict(result.idleCpuTargetMet)]);
  }
  rows.push(
    ['RSS when idle (peak since start)', result.rssMb === null ? '—' : `${result.rssMb.toFixed(0)} MB (${result.peakRssMb?.toFixed(0)} MB)`],
    [`new message (${result.latenciesMs.length}): write → at the sink`, describe(result.latenciesFromWriteMs)],
    ['  commit (250) → at the sink', describe(result.latenciesMs)],
    [`  target ≤ ${result.latencyTargetMs} ms`, verdict(result.latencyTargetMet)],
    ['SIGTERM → exit', result.shutdownMs === null ? '—' : `${formatMs(result.shutdownMs)} ms`],
  );
  const width = Math.max(...rows.map(([label]) => label.length));
  return [
    `${result.title}, one mta-queue at --log-level info:`,
    ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`),
    ...result.errors.map((error) => `! ${result.kind}: ${error}`),
  ];
}
