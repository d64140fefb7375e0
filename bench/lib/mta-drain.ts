import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import type { DnsServer } from '../../test/helpers/dns-server.js';
import { checkSignatures, type SignatureCheck } from './dkim-check.js';
import { keysFor, SIGNING_ALGORITHMS, type BenchKey, type BenchKeyType, type Signing } from './dkim-keys.js';
import { CHECK_RECIPIENT } from './end-to-end.js';
import { cpuShares, readCpu, waitForSink } from './measure.js';
import { BENCH_RECIPIENT, BENCH_SENDER } from './message.js';
import { MtaQueueProcess } from './mta-queue-process.js';
import { runCommand } from './proc.js';
import type { CaptureSink, SinkMx } from './sink-mx.js';
import { fillIncoming, spoolCounts } from './spool-fill.js';
import { formatRate } from './stats.js';

/**
 * One mta-queue drain, as bench:delivery's `drain` scenario measures it: a fresh spool filled through
 * MessageWriter, mta-queue spawned (the clock starts), the sink counting every message and the spool seen
 * empty (the clock stops). Shared by bench/delivery.ts and bench/web.ts (the drain with the web UI polled).
 */

/** After the sink has every message, how long the spool (or Postfix's queue) may take to be seen empty. */
export const SETTLE_MS = 15_000;
/** The From: domain of every benchmark message (a@bench.test), and so the domain the DKIM keys are for. */
export const SIGNING_DOMAIN = BENCH_SENDER.split('@')[1]!;

export type System = 'mta-queue' | 'postfix';
/** Recipients at sink.test (MX and A/AAAA looked up per message), or at the literal [127.0.0.2] (no DNS at all). */
export type Addressing = 'dns' | 'literal';

/** One timed drain of `requested` messages. */
export interface Drain {
  system: System;
  addressing: Addressing;
  /** Which DKIM keys mta-queue had (none: an empty --dkim-dir); Postfix drains are unsigned. */
  signing: Signing;
  /** The check messages' signatures, or null when none were sent (Postfix, or an mta-queue without --dkim-dir). */
  check: SignatureCheck | null;
  processes: number;
  run: number;
  requested: number;
  /** Counted by the sink. */
  delivered: number;
  fillMs: number;
  /** Start (spawn of mta-queue / postsuper -H) → spool or queue seen empty. */
  elapsedMs: number;
  msgsPerSec: number;
  firstDeliveryMs: number | null;
  /** Rate between the first and the last message reaching the sink (start-up excluded). */
  steadyMsgsPerSec: number | null;
  /** CPU of the system under test (all mta-queue processes / Postfix master and all its daemons). */
  cpuMsPerMsg: number;
  /** mta-queue only: CPU of the processes' main threads, the event loops that deliver; null for Postfix. */
  eventLoopCpuMsPerMsg: number | null;
  /** CPU of this process (DNS server, and the sink when it is the in-process one). */
  benchCpuMsPerMsg: number;
  sinkCpuMsPerMsg: number;
  machineBusyPercent: number;
  /** CPU of everything else, % of one core: high values mean a disturbed measurement. */
  othersPercentOfCore: number;
  dnsQueriesPerMsg: number | null;
  timedOut: boolean;
  errors: string[];
}

/** What the drains need for DKIM: a key directory per variant (only if mta-queue has --dkim-dir) and the check sink. */
export interface SigningSetup {
  keyDirs: Map<Signing, string>;
  keys: Record<BenchKeyType, BenchKey> | null;
  capture: CaptureSink;
  checkMessages: number;
}

/** The benchmark's shared state a drain uses: what it measures, where, and how it cleans up and reports. */
/** One mta-queue on `spool`, pointed at the bench's DNS server and sink, as every drain and the web latency run it. */
export function startBenchQueue(
  context: Pick<DrainContext, 'mtaRoot' | 'dns' | 'sink'>,
  spool: string,
  options: { concurrency: number; perDestination: number | null },
  more: { nodeArgs?: string[]; extraArgs: string[] },
): MtaQueueProcess {
  return MtaQueueProcess.start({
    repoRoot: context.mtaRoot,
    spool,
    dnsServer: context.dns.address,
    smtpPort: context.sink.port,
    concurrency: options.concurrency,
    perDestination: options.perDestination,
    logLevel: 'warn',
    ...more,
  });
}

export interface DrainContext {
  /** The checkout whose dist/cli/mta-queue.js runs. */
  mtaRoot: string;
  workDir: string;
  sink: SinkMx;
  dns: DnsServer;
  /** Anything started that must not outlive the benchmark; the drain adds and removes its own. */
  cleanups: Set<() => Promise<unknown>>;
  progress: (text: string) => void;
  /** Throws once the benchmark was interrupted (Ctrl-C). */
  checkInterrupted: () => void;
}

/** The flags of a drain (bench:delivery's, or bench:web's of the same names). */
export interface DrainSettings {
  messages: number;
  concurrency: number;
  /** --max-connections-per-destination, or null for mta-queue's default. */
  perDestination: number | null;
  timeLimitMs: number;
  cpuProfDir: string | null;
}

/** Something running beside a drain (bench:web's browser-like poller). */
export interface DrainCompanion {
  /** Called once, right after the mta-queue processes are spawned (when the clock starts). */
  start(procs: readonly MtaQueueProcess[]): void;
  /** Called when the drain is over (spool seen empty, or given up), before the processes get SIGTERM; may be
   * called again on the way out, and must then do nothing. Resolves with problems to report with the drain. */
  stop(): Promise<string[]>;
}

export interface DrainVariant {
  processes: number;
  run: number;
  addressing: Addressing;
  signing: Signing;
  /** More flags for every mta-queue process (after --dkim-dir), e.g. --web. */
  extraArgs?: string[];
  companion?: DrainCompanion;
}

/** Whether `mta-queue --help` of this build lists `flag` (an older build given with --mta-root may not). */
export async function mtaQueueHasFlag(mtaRoot: string, flag: string): Promise<boolean> {
  const help = await runCommand(process.execPath, [path.join(mtaRoot, 'dist/cli/mta-queue.js'), '--help'], { timeoutMs: 30_000 });
  return help.stdout.split('\n').some((line) => line.trim().split(/[\s,=]+/)[0] === flag);
}

/** The first line of what this build's `mta-queue policy check FILE` finds wrong with the file, or null when it is valid. */
export async function policyProblem(mtaRoot: string, file: string): Promise<string | null> {
  const check = await runCommand(process.execPath, [path.join(mtaRoot, 'dist/cli/mta-queue.js'), 'policy', 'check', file], { timeoutMs: 30_000 });
  return check.code === 0 ? null : ((check.stdout + check.stderr).trim().split('\n')[0] ?? `exit status ${check.code}`);
}

export async function freshSpool(workDir: string): Promise<{ layout: SpoolLayout; remove: () => Promise<void> }> {
  const parent = await mkdtemp(path.join(workDir, 'spool-'));
  const layout = spoolLayout(path.join(parent, 'spool'));
  await ensureSpool(layout);
  return { layout, remove: () => rm(parent, { recursive: true, force: true }) };
}

export async function measureMtaDrain(context: DrainContext, options: DrainSettings, message: Buffer, variant: DrainVariant, setup: SigningSetup): Promise<Drain> {
  const { workDir, sink, dns, cleanups, progress, checkInterrupted } = context;
  const { processes, run, addressing, signing, companion } = variant;
  const { layout, remove } = await freshSpool(workDir);
  const procs: MtaQueueProcess[] = [];
  const stopAll = async () => {
    await Promise.all(procs.map((proc) => proc.stop()));
  };
  const stopCompanion = async () => {
    await companion?.stop();
  };
  cleanups.add(remove);
  cleanups.add(stopAll);
  cleanups.add(stopCompanion);
  const errors: string[] = [];
  try {
    const recipient = addressing === 'dns' ? BENCH_RECIPIENT : `${BENCH_RECIPIENT.split('@')[0]}@[${sink.host}]`;
    const fillMs = await fillIncoming(layout, options.messages, message, BENCH_SENDER, recipient);
    // A few messages to the capturing sink, in the same spool: whether they leave signed as this row claims.
    const keyDir = setup.keyDirs.get(signing);
    if (keyDir) await fillIncoming(layout, setup.checkMessages, message, BENCH_SENDER, CHECK_RECIPIENT);
    setup.capture.messages.length = 0;
    progress(`  spool filled in ${(fillMs / 1000).toFixed(1)} s (${formatRate((options.messages / fillMs) * 1000)} msgs/s through MessageWriter)`);
    checkInterrupted();
    dns.queries.length = 0;
    const baseline = sink.count;
    const target = baseline + options.messages;
    const cpuBefore = await readCpu(sink);
    const started = performance.now();
    const deadline = started + options.timeLimitMs;
    for (let i = 0; i < processes; i++) {
      // A directory per process, node's own names in it: one profile per thread (the web UI's thread writes one too).
      const nodeArgs = options.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(options.cpuProfDir, `mta-queue-x${processes}-run${run}-${i + 1}-${Date.now()}`)] : [];
      procs.push(
        startBenchQueue(context, layout.root, options, { nodeArgs, extraArgs: [...(keyDir ? ['--dkim-dir', keyDir] : []), ...(variant.extraArgs ?? [])] }),
      );
    }
    companion?.start(procs);
    const firstAt = sink.waitForCount(baseline + 1, options.timeLimitMs);
    const reached = await waitForSink(sink, target, deadline, () => procs.find((proc) => proc.exitReason)?.exitReason ?? null);
    if (reached.error) errors.push(reached.error);
    // Done means: every message at the sink and nothing left in the spool (no claim in active/, every data/ file removed).
    let ended = performance.now();
    if (reached.at !== null) {
      const settle = performance.now() + SETTLE_MS;
      for (;;) {
        const counts = await spoolCounts(layout);
        ended = performance.now();
        if (counts.incoming + counts.deferred + counts.active + counts.data === 0) break;
        if (ended > settle) {
          errors.push(`spool not empty ${SETTLE_MS / 1000} s after the last delivery: ${JSON.stringify(counts)}`);
          break;
        }
        await sleep(5);
      }
    }
    if (companion) errors.push(...(await companion.stop()));
    const delivered = sink.count - baseline;
    let systemCpu = 0;
    let eventLoopCpu = 0;
    for (const proc of procs) {
      systemCpu += await proc.cpuMs();
      eventLoopCpu += await proc.eventLoopCpuMs();
    }
    const shares = await cpuShares(sink, cpuBefore, started, systemCpu, delivered);
    const first = await Promise.race([firstAt, Promise.resolve(null)]);
    const dnsQueries = dns.queries.length;
    await stopAll();
    let check: SignatureCheck | null = null;
    if (keyDir) {
      if (!(await setup.capture.waitFor(setup.checkMessages, 10_000))) errors.push(`only ${setup.capture.messages.length}/${setup.checkMessages} check messages reached the capturing sink`);
      check = await checkSignatures(setup.capture.messages.slice(), SIGNING_ALGORITHMS[signing], SIGNING_DOMAIN, setup.keys ? keysFor('both', setup.keys) : []);
      for (const problem of check.problems) errors.push(`DKIM check: ${problem}`);
    }
    for (const proc of procs) {
      if (proc.problemCount > 0) errors.push(`mta-queue ${proc.pid} logged ${proc.problemCount} warn/error lines, last: ${proc.problems.at(-1)}`);
      if (proc.exitReason && !/SIGTERM|status 0/.test(proc.exitReason)) errors.push(proc.exitReason);
    }
    const left = await spoolCounts(layout);
    if (left.corrupt > 0) errors.push(`${left.corrupt} entries moved to corrupt/`);
    return {
      system: 'mta-queue',
      addressing,
      signing,
      check,
      processes,
      run,
      ...drainTiming(options.messages, delivered, fillMs, started, ended, first, reached.at),
      ...shares,
      eventLoopCpuMsPerMsg: delivered > 0 ? eventLoopCpu / delivered : NaN,
      dnsQueriesPerMsg: delivered > 0 ? dnsQueries / delivered : null,
      timedOut: reached.timedOut,
      errors,
    };
  } finally {
    await stopCompanion();
    cleanups.delete(stopCompanion);
    await stopAll();
    cleanups.delete(stopAll);
    await remove();
    cleanups.delete(remove);
  }
}

/** A drain's counts and times: `started` → `ended` overall, first → last arrival (`reachedAt`) for the steady rate. */
export function drainTiming(
  requested: number,
  delivered: number,
  fillMs: number,
  started: number,
  ended: number,
  first: number | null,
  reachedAt: number | null,
): Pick<Drain, 'requested' | 'delivered' | 'fillMs' | 'elapsedMs' | 'msgsPerSec' | 'firstDeliveryMs' | 'steadyMsgsPerSec'> {
  const elapsedMs = ended - started;
  return {
    requested,
    delivered,
    fillMs,
    elapsedMs,
    msgsPerSec: (delivered / elapsedMs) * 1000,
    firstDeliveryMs: first === null ? null : first - started,
    steadyMsgsPerSec: first !== null && reachedAt !== null && delivered > 1 ? ((delivered - 1) / (reachedAt - first)) * 1000 : null,
  };
}
