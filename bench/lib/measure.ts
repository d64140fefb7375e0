import { performance } from 'node:perf_hooks';
import { machineBusyMs, machineBusyPercent, readCpuMs, readMachineCpu, type CpuSnapshot } from './proc.js';
import type { SinkMx } from './sink-mx.js';

/** What bench:delivery's drains and end-to-end runs share: CPU attribution and the bounded wait for the sink. */

/** A measurement that delivers nothing new for this long is stopped and reported as stalled. */
export const STALL_MS = 30_000;

export interface CpuReading {
  machine: CpuSnapshot;
  own: number;
  sink: number;
}

export async function readCpu(sink: SinkMx): Promise<CpuReading> {
  return { machine: await readMachineCpu(), own: (await readCpuMs('self', true)) ?? NaN, sink: await sink.cpuMs() };
}

/** CPU per delivered message and how busy the machine was: every throughput row reports these. */
export interface CostShares {
  /** The system under test (all its processes). */
  cpuMsPerMsg: number;
  /** This process and what it waited for. */
  benchCpuMsPerMsg: number;
  machineBusyPercent: number;
  othersPercentOfCore: number;
}

/** A rate measured over several runs and set against Postfix's in the same runs. */
export interface RateOverRuns {
  label: string;
  processes: number;
  runs: number;
  msgsPerSec: number;
  msgsPerSecRuns: number[];
  /** Median over runs of (this run's msgs/s ÷ Postfix's in the same run). */
  vsPostfix: number | null;
  vsPostfixRuns: number[];
}

/** Splits the machine's busy time between `beforeCpu` and now: system under test, this process, sink, others. */
export async function cpuShares(sink: SinkMx, before: CpuReading, startedAt: number, systemCpuMs: number, delivered: number) {
  const after = await readCpu(sink);
  const own = after.own - before.own;
  const sinkMs = Number.isFinite(after.sink - before.sink) ? after.sink - before.sink : 0;
  const others = machineBusyMs(before.machine, after.machine) - systemCpuMs - own - sinkMs;
  const per = (ms: number) => (delivered > 0 ? ms / delivered : NaN);
  return {
    cpuMsPerMsg: per(systemCpuMs),
    benchCpuMsPerMsg: per(own),
    sinkCpuMsPerMsg: per(sinkMs),
    machineBusyPercent: machineBusyPercent(before.machine, after.machine),
    othersPercentOfCore: Math.max(0, (others / (performance.now() - startedAt)) * 100),
  };
}

/**
 * Waits for the sink to count `target`, bounded by `deadline` and by a stall (nothing new for STALL_MS).
 * `check` is asked once a second for a reason to give up (a process that died).
 */
export async function waitForSink(sink: SinkMx, target: number, deadline: number, check: () => string | null): Promise<{ at: number | null; error: string | null; timedOut: boolean }> {
  let lastCount = sink.count;
  let lastProgress = performance.now();
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return { at: null, error: `time limit reached with ${target - sink.count} to go`, timedOut: true };
    const at = await sink.waitForCount(target, Math.min(1000, left));
    if (at !== null) return { at, error: null, timedOut: false };
    const reason = check() ?? sink.exitReason;
    if (reason) return { at: null, error: reason, timedOut: false };
    if (sink.count !== lastCount) {
      lastCount = sink.count;
      lastProgress = performance.now();
    } else if (performance.now() - lastProgress > STALL_MS) {
      return { at: null, error: `stalled: nothing delivered for ${STALL_MS / 1000} s, ${target - sink.count} to go`, timedOut: false };
    }
  }
}
