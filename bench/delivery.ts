/**
 * Delivery benchmark: how fast mta-queue drains a full spool to an MX, next to Postfix draining the same messages
 * to the same sink in the same run; and how mta-queue behaves with a large deferred queue (start-up, idle CPU,
 * latency of new mail). bench/README.md says how to run it and how to read the output.
 */
import { access, mkdtemp, rm } from 'node:fs/promises';
import { BenchRun } from './lib/bench-run.js';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startDnsServer } from '../test/helpers/dns-server.js';
import { DELIVERY_USAGE, DeliveryUsageError, parseDeliveryOptions, SIGNED_DRAINS, type DeliveryBenchOptions } from './lib/delivery-options.js';
import { commandLineOptions } from './lib/options.js';
import { describeCheck, type SignatureCheck } from './lib/dkim-check.js';
import { generateBenchKeys, keysFor, SIGNING_LABELS, writeKeyDirectory, type Signing } from './lib/dkim-keys.js';
import { CHECK_DOMAIN, CHECK_RECIPIENT } from './lib/end-to-end.js';
import { renderEndToEnd, runEndToEndScenario, type EndToEndSummary } from './lib/end-to-end-scenario.js';
import { describeEnvironment, type Environment } from './lib/environment.js';
import { BENCH_RECIPIENT, buildMessage, dataPayload } from './lib/message.js';
import { drainTiming, measureMtaDrain, mtaQueueHasFlag, policyProblem, SETTLE_MS, SIGNING_DOMAIN, type Addressing, type Drain, type DrainContext, type SigningSetup, type System } from './lib/mta-drain.js';
import { runPlainLoad } from './lib/plain-load.js';
import { detectPostfix } from './lib/private-postfix.js';
import { PostfixRelay } from './lib/postfix-relay.js';
import { cpuShares, readCpu, waitForSink, type CostShares, type RateOverRuns } from './lib/measure.js';
import { freePort } from './lib/proc.js';
import { hasSmtpSink, startCaptureSink, startSink, type SinkMx } from './lib/sink-mx.js';
import { HELD_DOMAIN, HELD_MX, HELD_MX_HOST, measureWaitingQueue, renderWaitingQueue, waitingSpecs, type WaitingQueueResult } from './lib/waiting-queue.js';
import { formatMs, formatRate, formatRatio, median, renderTable, round } from './lib/stats.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The checkout whose dist/cli/mta-queue.js runs (--mta-root, else this one). */
let mtaRoot = REPO_ROOT;
const SINK_HOST = '127.0.0.2';
const SINK_DOMAIN = BENCH_RECIPIENT.split('@')[1]!; // sink.test
const MX_HOST = `mx.${SINK_DOMAIN}`;
/** The capturing sink (check messages, whose DKIM signatures are verified) and its MX name. */
const CAPTURE_HOST = '127.0.0.3';
const CHECK_MX_HOST = `mx.${CHECK_DOMAIN}`;
/** Postfix intake sessions used to fill its hold queue (not measured). */
const POSTFIX_FILL_SESSIONS = 20;

/** Anything started that must not outlive the benchmark, newest first. */
const progress = (text: string) => process.stderr.write(`${text}\n`);
const benchRun = new BenchRun(progress);
const { cleanups, checkInterrupted } = benchRun;

interface DrainSummary extends RateOverRuns, CostShares {
  system: System;
  addressing: Addressing;
  signing: Signing;
  /** "5/5 verified by mailauth: rsa-sha256 d=bench.test …" over every run, or null. */
  check: string | null;
  steadyMsgsPerSec: number | null;
  firstDeliveryMs: number | null;
  dnsQueriesPerMsg: number | null;
  delivered: number;
  requested: number;
  errors: string[];
}

interface DeliveryReport {
  environment: Environment & { postfix: string; sink: string; mtaQueue: string };
  options: Record<string, unknown>;
  drains: DrainSummary[];
  /** Signed CPU ms/msg − unsigned CPU ms/msg, per key type and process count. */
  signingCost: SigningCost[];
  endToEnd: EndToEndSummary[];
  /** The deferred and suspended scenarios. */
  waiting: WaitingQueueResult[];
  notes: string[];
}

interface SigningCost {
  signing: Signing;
  processes: number;
  /** Median over runs of (signed − unsigned CPU ms/msg of the same run). */
  addedCpuMsPerMsg: number;
  addedCpuMsPerMsgRuns: number[];
  /** Signed msgs/s ÷ unsigned msgs/s, median over runs. */
  rateRatio: number;
}

/** Issue 11: rsa-2048 signing adds at most this much mta-queue CPU per message. */
const RSA_COST_TARGET_MS = 0.5;

async function main(): Promise<void> {
  const options = commandLineOptions('bench:delivery', parseDeliveryOptions, DELIVERY_USAGE);
  if (!options) return;
  mtaRoot = path.resolve(options.mtaRoot ?? REPO_ROOT);
  try {
    await access(path.join(mtaRoot, 'dist/cli/mta-queue.js'));
  } catch {
    process.stderr.write(`bench:delivery: ${path.join(mtaRoot, 'dist/cli/mta-queue.js')} is missing: run \`npm run build\` (npm run bench:delivery does)\n`);
    process.exit(2);
  }

  const workDir = await mkdtemp(path.join(os.tmpdir(), 'mta-bench-delivery-'));
  cleanups.add(() => rm(workDir, { recursive: true, force: true }));
  const notes: string[] = [];

  const sinkKind = options.sink === 'auto' ? ((await hasSmtpSink()) ? 'smtp-sink' : 'node') : options.sink;
  if (sinkKind === 'smtp-sink' && !(await hasSmtpSink())) throw new DeliveryUsageError('--sink smtp-sink: /usr/sbin/smtp-sink not found (Debian package postfix)');
  const sink = await startSink(sinkKind, SINK_HOST);
  cleanups.add(() => sink.close());
  const dns = await startDnsServer({
    [SINK_DOMAIN]: { mx: [{ preference: 10, exchange: MX_HOST }] },
    [MX_HOST]: { a: [SINK_HOST] },
    [CHECK_DOMAIN]: { mx: [{ preference: 10, exchange: CHECK_MX_HOST }] },
    [CHECK_MX_HOST]: { a: [CAPTURE_HOST] },
    [HELD_DOMAIN]: { mx: [{ preference: 10, exchange: HELD_MX }] },
    [HELD_MX]: { a: [HELD_MX_HOST] },
  });
  cleanups.add(() => dns.close());
  // mta-queue reaches every MX on its one --smtp-port: the capturing sink listens at the sink's port on 127.0.0.3.
  const capture = await startCaptureSink(CAPTURE_HOST, sink.port);
  cleanups.add(() => capture.close());

  // DKIM: one key of each type for bench.test, and a key directory per signing variant (none: empty).
  const signedDrains = (Object.keys(SIGNED_DRAINS) as (keyof typeof SIGNED_DRAINS)[]).filter((name) => options.scenarios.has(name));
  const wantsKeys = signedDrains.length > 0 || options.scenarios.has('e2e');
  const dkimFlag = await mtaQueueHasFlag(mtaRoot, '--dkim-dir');
  if (wantsKeys && !dkimFlag) throw new DeliveryUsageError(`${path.join(mtaRoot, 'dist/cli/mta-queue.js')} has no --dkim-dir: the signed scenarios need a build with DKIM signing`);
  const keys = wantsKeys ? generateBenchKeys(SIGNING_DOMAIN) : null;
  const keyDirs = new Map<Signing, string>();
  if (dkimFlag) {
    for (const signing of ['none', ...(keys ? (['rsa', 'ed25519', 'both'] as const) : [])] as Signing[]) {
      const dir = path.join(workDir, `dkim-${signing}`);
      await writeKeyDirectory(dir, keys ? keysFor(signing, keys) : []);
      keyDirs.set(signing, dir);
    }
  }
  const policyArgs = options.policy ? await drainPolicyArgs(options.policy) : [];
  const signingSetup: SigningSetup = { keyDirs, keys, capture, checkMessages: options.checkMessages };
  const drainContext: DrainContext = { mtaRoot, workDir, sink, dns, cleanups, progress, checkInterrupted };

  const wantsPostfix = options.scenarios.has('postfix');
  const postfix = wantsPostfix ? await detectPostfix() : { ok: false as const, reason: 'not asked for (--scenarios)' };
  const environment = {
    ...(await describeEnvironment(mtaRoot)),
    mtaQueue: path.join(mtaRoot, 'dist/cli/mta-queue.js'),
    postfix: postfix.ok ? postfix.version : `not measured (${postfix.reason})`,
    sink: sinkKind === 'smtp-sink' ? `smtp-sink on ${SINK_HOST}:${sink.port}` : `smtp-server in the bench process on ${SINK_HOST}:${sink.port}`,
  };
  progress(
    `mta-queue delivery benchmark: ${options.messages} messages of ${options.size} bytes per drain, processes ${options.processes.join(',')}, ` +
      `concurrency ${options.concurrency}, per destination ${options.perDestination ?? 'mta-queue default'}, runs ${options.runs}`,
  );
  progress(`sink: ${environment.sink}; DNS: ${dns.address}; Postfix: ${environment.postfix}; load average ${environment.loadAverage.join(' ')}`);

  const message = buildMessage(options.size, 'mta-relay delivery benchmark');
  const drains: Drain[] = [];
  const record = (drain: Drain) => {
    drains.push(drain);
    const label = drainLabel(drain, 'Postfix');
    const first = drain.firstDeliveryMs === null ? '' : `, first delivery after ${formatMs(drain.firstDeliveryMs)} ms`;
    const others = drain.othersPercentOfCore >= 10 ? `, other processes busy ${Math.round(drain.othersPercentOfCore)}% of a core` : '';
    const trouble = drain.errors.length ? ` — ${drain.errors.join('; ')}` : '';
    if (drain.check) progress(`  DKIM check (${SIGNING_LABELS[drain.signing]}): ${describeCheck(drain.check)}`);
    progress(
      `  ${label}: ${formatRate(drain.msgsPerSec)} msgs/s (${drain.delivered}/${drain.requested} in ${(drain.elapsedMs / 1000).toFixed(2)} s${first}, ` +
        `${drain.cpuMsPerMsg.toFixed(3)} CPU ms/msg${others})${trouble}`,
    );
  };

  const drainScenarios = options.scenarios.has('drain') || signedDrains.length > 0 || options.scenarios.has('literal') || wantsPostfix;
  let relay: PostfixRelay | null = null;
  const stopPostfix = async () => {
    const running = relay;
    relay = null;
    if (running) notes.push(...(await running.stop()));
  };
  cleanups.add(stopPostfix);
  if (postfix.ok && drainScenarios) {
    try {
      relay = await PostfixRelay.start({ smtpdPort: await freePort(), relayhost: `[${SINK_HOST}]:${sink.port}`, concurrency: options.concurrency, log: options.postfixLog });
      progress(`Postfix ${postfix.version}: private instance, smtpd 127.0.0.1:${relay.port}, relayhost [${SINK_HOST}]:${sink.port}, queue ${relay.root}/queue`);
    } catch (error) {
      environment.postfix = `not measured (${(error as Error).message})`;
      progress(`Postfix: ${environment.postfix}`);
    }
  }

  for (let run = 1; run <= options.runs && drainScenarios; run += 1) {
    if (options.scenarios.has('drain')) {
      for (const processes of options.processes) {
        checkInterrupted();
        progress(`[run ${run}/${options.runs}] mta-queue ×${processes}: filling a spool with ${options.messages} messages, then draining it`);
        record(await measureMtaDrain(drainContext, options, message, { processes, run, addressing: 'dns', signing: 'none', extraArgs: policyArgs }, signingSetup));
        for (const name of signedDrains) {
          checkInterrupted();
          const signing = SIGNED_DRAINS[name];
          progress(`[run ${run}/${options.runs}] mta-queue ×${processes}, signing with ${SIGNING_LABELS[signing]}: filling a spool with ${options.messages} messages, then draining it`);
          record(await measureMtaDrain(drainContext, options, message, { processes, run, addressing: 'dns', signing, extraArgs: policyArgs }, signingSetup));
        }
      }
    }
    if (options.scenarios.has('literal')) {
      checkInterrupted();
      progress(`[run ${run}/${options.runs}] mta-queue ×1, recipients at [${SINK_HOST}] (no DNS): filling a spool with ${options.messages} messages, then draining it`);
      record(await measureMtaDrain(drainContext, options, message, { processes: 1, run, addressing: 'literal', signing: 'none', extraArgs: policyArgs }, signingSetup));
    }
    if (relay) {
      checkInterrupted();
      progress(`[run ${run}/${options.runs}] Postfix: filling its hold queue with ${options.messages} messages, then releasing it`);
      try {
        record(await measurePostfixDrain(options, sink, relay, message, run));
      } catch (error) {
        environment.postfix = `not measured (${(error as Error).message})`;
        progress(`Postfix: ${environment.postfix}`);
        await stopPostfix();
      }
    }
  }
  await stopPostfix();

  let endToEnd: EndToEndSummary[] = [];
  if (options.scenarios.has('e2e')) {
    checkInterrupted();
    endToEnd = await runEndToEndScenario({
      options,
      mtaRoot,
      workDir,
      sink,
      capture,
      dns,
      keys: keys!,
      rsaKeyDir: keyDirs.get('rsa')!,
      domain: SIGNING_DOMAIN,
      sinkHost: SINK_HOST,
      captureHost: CAPTURE_HOST,
      cleanups,
      progress,
      checkInterrupted,
      notes,
    });
    const theirs = endToEnd.find((e) => e.system === 'postfix');
    if (theirs && !wantsPostfix) environment.postfix = `${theirs.label} (end to end only)`;
  }

  const waiting: WaitingQueueResult[] = [];
  for (const spec of waitingSpecs(options)) {
    checkInterrupted();
    progress(`${spec.kind}: ${spec.title}, one mta-queue (--log-level info): start-up, ${spec.idleSeconds} s idle CPU, ${options.latencyMessages} new messages`);
    waiting.push(await measureWaitingQueue(drainContext, options, spec, message));
  }

  checkInterrupted();
  const summaries = summarize(drains, environment.postfix);
  const busiest = Math.max(0, ...drains.map((d) => d.othersPercentOfCore), ...endToEnd.map((e) => e.othersPercentOfCore));
  if (busiest >= 10) notes.push(`other processes used up to ${Math.round(busiest)}% of a core during some measurements (column "others"): rerun on a quiet machine or with --runs 3`);
  if (options.scenarios.has('drain') && relay === null && wantsPostfix && !postfix.ok) notes.push(`Postfix: ${environment.postfix}`);
  const report: DeliveryReport = {
    environment,
    options: {
      messages: options.messages,
      runs: options.runs,
      processes: options.processes,
      concurrency: options.concurrency,
      perDestination: options.perDestination,
      size: options.size,
      timeLimitMs: options.timeLimitMs,
      scenarios: [...options.scenarios],
      deferred: options.deferred,
      idleSeconds: options.idleSeconds,
      latencyMessages: options.latencyMessages,
      policy: options.policy,
      postfixLog: options.postfixLog,
      e2eMessages: options.e2eMessages,
      e2eSessions: options.e2eSessions,
      warmup: options.warmup,
      checkMessages: options.checkMessages,
    },
    drains: summaries,
    signingCost: signingCosts(drains),
    endToEnd,
    waiting,
    notes,
  };
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderReport(report)}\n`);
}

/** `--policy FILE` for the drains, once this build's mta-queue takes the flag and its `policy check` passes the file. */
async function drainPolicyArgs(file: string): Promise<string[]> {
  if (!(await mtaQueueHasFlag(mtaRoot, '--policy'))) throw new DeliveryUsageError(`--policy: ${path.join(mtaRoot, 'dist/cli/mta-queue.js')} has no --policy (a build before delivery shaping)`);
  const problem = await policyProblem(mtaRoot, file);
  if (problem) throw new DeliveryUsageError(`--policy ${file}: ${problem}`);
  return ['--policy', path.resolve(file)];
}

/** `mta-queue ×1`, `mta-queue ×1 @[127.0.0.2]`, `mta-queue ×2 rsa-2048`; Postfix's label is given. */
function drainLabel(drain: Pick<Drain, 'system' | 'processes' | 'addressing' | 'signing'>, postfixLabel: string): string {
  if (drain.system === 'postfix') return postfixLabel;
  return `${LABELS[drain.system]} ×${drain.processes}${drain.addressing === 'literal' ? ` @[${SINK_HOST}]` : ''}${drain.signing === 'none' ? '' : ` ${SIGNING_LABELS[drain.signing]}`}`;
}

async function measurePostfixDrain(options: DeliveryBenchOptions, sink: SinkMx, relay: PostfixRelay, message: Buffer, run: number): Promise<Drain> {
  const errors: string[] = [];
  await relay.clearQueue();
  const fillStarted = performance.now();
  const fill = await runPlainLoad({
    host: '127.0.0.1',
    port: relay.port,
    sessions: POSTFIX_FILL_SESSIONS,
    messages: options.messages,
    payload: dataPayload(message),
    timeLimitMs: options.timeLimitMs,
    replyTimeoutMs: 60_000,
  });
  if (fill.errors.length || fill.sent !== options.messages) throw new Error(`filling the hold queue: ${fill.sent}/${options.messages} accepted${fill.errors.length ? `: ${fill.errors.join('; ')}` : ''}`);
  const held = await relay.heldCount();
  if (held !== options.messages) throw new Error(`${held} messages on hold after ${options.messages} were accepted`);
  const fillMs = performance.now() - fillStarted;
  progress(`  hold queue filled in ${(fillMs / 1000).toFixed(1)} s (${formatRate((options.messages / fillMs) * 1000)} msgs/s through its smtpd)`);
  checkInterrupted();

  const baseline = sink.count;
  const target = baseline + options.messages;
  const cpuBefore = await readCpu(sink);
  const systemBefore = await relay.cpuMs();
  const started = performance.now();
  const deadline = started + options.timeLimitMs;
  const firstAt = sink.waitForCount(baseline + 1, options.timeLimitMs);
  await relay.release();
  const reached = await waitForSink(sink, target, deadline, () => null);
  if (reached.error) {
    const queue = (await relay.listQueue()).split('\n').slice(0, 4).join(' | ');
    const log = options.postfixLog ? ` | log: ${(await relay.logTail(3)).replace(/\n/g, ' | ')}` : '';
    errors.push(`${reached.error}; postqueue -p: ${queue}${log}`);
  }
  let ended = performance.now();
  if (reached.at !== null) {
    const settle = performance.now() + SETTLE_MS;
    for (;;) {
      const queued = await relay.queuedCount();
      ended = performance.now();
      if (queued === 0) break;
      if (ended > settle) {
        errors.push(`${queued} queue files left ${SETTLE_MS / 1000} s after the last delivery`);
        break;
      }
      await sleep(5);
    }
    const listing = await relay.listQueue();
    if (!/Mail queue is empty/.test(listing)) errors.push(`postqueue -p after the drain: ${listing.split('\n').slice(0, 3).join(' | ')}`);
  }
  const delivered = sink.count - baseline;
  const systemCpu = (await relay.cpuMs()) - systemBefore;
  const shares = await cpuShares(sink, cpuBefore, started, systemCpu, delivered);
  const first = await Promise.race([firstAt, Promise.resolve(null)]);
  if (reached.error && delivered === 0) throw new Error(errors.join('; '));
  return {
    system: 'postfix',
    addressing: 'literal',
    signing: 'none',
    check: null,
    processes: 0,
    run,
    ...drainTiming(options.messages, delivered, fillMs, started, ended, first, reached.at),
    ...shares,
    eventLoopCpuMsPerMsg: null,
    dnsQueriesPerMsg: null,
    timedOut: reached.timedOut,
    errors,
  };
}

const LABELS: Record<System, string> = { 'mta-queue': 'mta-queue', postfix: 'Postfix' };

function summarize(drains: Drain[], postfixVersion: string): DrainSummary[] {
  const groups = new Map<string, Drain[]>();
  for (const drain of drains) {
    const key = `${drain.system}/${drain.processes}/${drain.addressing}/${drain.signing}`;
    groups.set(key, [...(groups.get(key) ?? []), drain]);
  }
  const summaries = [...groups.values()].map((group): DrainSummary => {
    const first = group[0]!;
    const med = (pick: (d: Drain) => number | null) => {
      const values = group.map(pick).filter((value): value is number => value !== null && Number.isFinite(value));
      return values.length ? median(values) : null;
    };
    const checks = group.flatMap((d) => (d.check ? [d.check] : []));
    return {
      system: first.system,
      addressing: first.addressing,
      signing: first.signing,
      check: checks.length ? describeChecks(checks) : null,
      label: drainLabel(first, `Postfix ${/^\d/.test(postfixVersion) ? postfixVersion : ''}`.trim()),
      processes: first.processes,
      runs: group.length,
      msgsPerSec: med((d) => d.msgsPerSec) ?? NaN,
      msgsPerSecRuns: group.map((d) => round(d.msgsPerSec, 1)),
      vsPostfix: null,
      vsPostfixRuns: [],
      steadyMsgsPerSec: med((d) => d.steadyMsgsPerSec),
      firstDeliveryMs: med((d) => d.firstDeliveryMs),
      cpuMsPerMsg: med((d) => d.cpuMsPerMsg) ?? NaN,
      benchCpuMsPerMsg: med((d) => d.benchCpuMsPerMsg) ?? NaN,
      machineBusyPercent: med((d) => d.machineBusyPercent) ?? NaN,
      othersPercentOfCore: Math.max(...group.map((d) => d.othersPercentOfCore)),
      dnsQueriesPerMsg: med((d) => d.dnsQueriesPerMsg),
      delivered: group.reduce((sum, d) => sum + d.delivered, 0),
      requested: group.reduce((sum, d) => sum + d.requested, 0),
      errors: group.flatMap((d) => d.errors.map((error) => (group.length > 1 ? `run ${d.run}: ${error}` : error))),
    };
  });
  // Each mta-queue drain against the Postfix drain of the same run (a minute apart), then the median of those.
  const postfixByRun = new Map(drains.filter((d) => d.system === 'postfix').map((d) => [d.run, d.msgsPerSec]));
  for (const summary of summaries) {
    if (summary.system !== 'mta-queue') continue;
    const group = drains.filter((d) => d.system === 'mta-queue' && d.processes === summary.processes && d.addressing === summary.addressing && d.signing === summary.signing);
    summary.vsPostfixRuns = group.flatMap((d) => (postfixByRun.has(d.run) ? [round(d.msgsPerSec / postfixByRun.get(d.run)!, 3)] : []));
    summary.vsPostfix = summary.vsPostfixRuns.length ? median(summary.vsPostfixRuns) : null;
  }
  return summaries.map((s) => ({
    ...s,
    msgsPerSec: round(s.msgsPerSec, 1),
    vsPostfix: s.vsPostfix === null ? null : round(s.vsPostfix, 3),
    steadyMsgsPerSec: s.steadyMsgsPerSec === null ? null : round(s.steadyMsgsPerSec, 1),
    firstDeliveryMs: s.firstDeliveryMs === null ? null : round(s.firstDeliveryMs, 1),
    cpuMsPerMsg: round(s.cpuMsPerMsg, 4),
    benchCpuMsPerMsg: round(s.benchCpuMsPerMsg, 4),
    machineBusyPercent: round(s.machineBusyPercent, 1),
    othersPercentOfCore: round(s.othersPercentOfCore, 1),
    dnsQueriesPerMsg: s.dnsQueriesPerMsg === null ? null : round(s.dnsQueriesPerMsg, 2),
  }));
}

/** Several runs' checks as one line: "15/15 verified by mailauth: rsa-sha256 d=bench.test s=bench-rsa pass". */
function describeChecks(checks: SignatureCheck[]): string {
  const total = checks.reduce((sum, c) => ({ ...c, checked: sum.checked + c.checked, good: sum.good + c.good, method: c.method === 'present' ? c.method : sum.method }));
  return describeCheck(total);
}

/** Each signed drain's CPU/msg minus the unsigned drain's of the same run and process count, median over runs. */
function signingCosts(drains: Drain[]): SigningCost[] {
  const costs: SigningCost[] = [];
  const plain = drains.filter((d) => d.system === 'mta-queue' && d.addressing === 'dns' && d.signing === 'none');
  for (const signing of ['rsa', 'ed25519', 'both'] as const) {
    for (const processes of [...new Set(plain.map((d) => d.processes))]) {
      const pairs = drains
        .filter((d) => d.system === 'mta-queue' && d.addressing === 'dns' && d.signing === signing && d.processes === processes)
        .flatMap((signed) => {
          const base = plain.find((d) => d.run === signed.run && d.processes === processes);
          return base && Number.isFinite(signed.cpuMsPerMsg) && Number.isFinite(base.cpuMsPerMsg) ? [{ added: signed.cpuMsPerMsg - base.cpuMsPerMsg, ratio: signed.msgsPerSec / base.msgsPerSec }] : [];
        });
      if (!pairs.length) continue;
      costs.push({
        signing,
        processes,
        addedCpuMsPerMsg: round(median(pairs.map((p) => p.added)), 4),
        addedCpuMsPerMsgRuns: pairs.map((p) => round(p.added, 4)),
        rateRatio: round(median(pairs.map((p) => p.ratio)), 3),
      });
    }
  }
  return costs;
}

function renderReport(report: DeliveryReport): string {
  const env = report.environment;
  const o = report.options;
  const lines = [
    `mta-queue delivery benchmark — ${env.date}, commit ${env.commit}`,
    `${env.cpus} × ${env.cpuModel}, ${env.memoryGb} GiB, ${env.kernel}, Node ${env.node}, fdatasync ≈ ${env.fdatasyncMs} ms, load ${env.loadAverage.join(' ')}`,
    `mta-queue: ${env.mtaQueue}; sink: ${env.sink}; Postfix: ${env.postfix}`,
    `${o.size}-byte messages${report.drains.length ? `, ${o.messages} per drain, one recipient each at ${SINK_DOMAIN}` : ''}; mta-queue --concurrency ${o.concurrency} per process, ` +
      `--max-connections-per-destination ${o.perDestination ?? 'default'}${o.policy ? `, the drains with --policy ${o.policy}` : ''}; Postfix default_destination_concurrency_limit ${o.concurrency}; runs: ${o.runs}`,
  ];
  if (report.drains.length) lines.push('');
  if (report.drains.length) {
    const rows = report.drains.map((s) => [
      s.label,
      s.system === 'postfix' ? '—' : String(s.processes),
      formatRate(s.msgsPerSec),
      s.vsPostfix === null ? '—' : formatRatio(s.vsPostfix),
      s.steadyMsgsPerSec === null ? '—' : formatRate(s.steadyMsgsPerSec),
      s.firstDeliveryMs === null ? '—' : formatMs(s.firstDeliveryMs),
      Number.isFinite(s.cpuMsPerMsg) ? s.cpuMsPerMsg.toFixed(3) : '—',
      Number.isFinite(s.benchCpuMsPerMsg) ? s.benchCpuMsPerMsg.toFixed(3) : '—',
      s.dnsQueriesPerMsg === null ? '—' : s.dnsQueriesPerMsg.toFixed(1),
      Number.isFinite(s.machineBusyPercent) ? `${Math.round(s.machineBusyPercent)}%` : '—',
      Number.isFinite(s.othersPercentOfCore) ? `${Math.round(s.othersPercentOfCore)}%` : '—',
      `${s.delivered}/${s.requested}`,
    ]);
    lines.push(renderTable(['drain', 'procs', 'msgs/s', 'vs Postfix', 'steady/s', '1st ms', 'CPU ms/msg', 'bench ms/msg', 'DNS q/msg', 'machine busy', 'others', 'delivered'], rows));
    lines.push('');
    lines.push('msgs/s: delivered ÷ (start → spool or queue seen empty); start = spawn of mta-queue, or postsuper -H ALL + postqueue -f for Postfix.');
    lines.push('steady/s: rate between the first and the last arrival at the sink; 1st ms: start → first arrival. vs Postfix: msgs/s over Postfix\'s in the same run, median over runs.');
    lines.push('CPU: the system under test (all mta-queue processes, or Postfix master + every daemon); bench: this process (DNS server; the sink too if in-process).');
    lines.push('Postfix relays to [127.0.0.2]:port with no DNS look-up; mta-queue resolves MX and A/AAAA of sink.test through --dns-servers for every message.');
    const checked = report.drains.filter((s) => s.check !== null);
    if (checked.length) {
      lines.push('');
      lines.push(`DKIM check: ${report.options.checkMessages} messages per drain, From: ${SIGNING_DOMAIN}, to the capturing sink (${CHECK_RECIPIENT}, MX ${CAPTURE_HOST}):`);
      for (const s of checked) lines.push(`  ${s.label.padEnd(Math.max(...checked.map((c) => c.label.length)))}  ${s.check}`);
    }
  }
  if (report.signingCost.length) {
    lines.push('');
    for (const cost of report.signingCost) {
      const runs = cost.addedCpuMsPerMsgRuns.length > 1 ? ` (runs: ${cost.addedCpuMsPerMsgRuns.map((v) => v.toFixed(3)).join(', ')})` : '';
      const target = cost.signing === 'rsa' ? ` — target ≤ ${RSA_COST_TARGET_MS} ms: ${cost.addedCpuMsPerMsg <= RSA_COST_TARGET_MS ? 'met' : 'NOT met'}` : '';
      lines.push(
        `signing adds ${cost.addedCpuMsPerMsg.toFixed(3)} ms CPU/msg with ${SIGNING_LABELS[cost.signing]} (mta-queue ×${cost.processes}; msgs/s ${formatRatio(cost.rateRatio)} of unsigned)${runs}${target}`,
      );
    }
  }
  if (report.endToEnd.length) lines.push('', ...renderEndToEnd(report.endToEnd, report.options));
  for (const result of report.waiting) lines.push('', ...renderWaitingQueue(result));
  for (const summary of report.drains) for (const error of summary.errors) lines.push(`! ${summary.label}: ${error}`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

await benchRun.run('bench:delivery', 'mta-queue, Postfix and the sink', (error) => error instanceof DeliveryUsageError, main);
