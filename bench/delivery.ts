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
import { MessageWriter } from '../src/spool/message-writer.js';
import { startDnsServer, type DnsServer } from '../test/helpers/dns-server.js';
import { DELIVERY_USAGE, DeliveryUsageError, parseDeliveryOptions, SIGNED_DRAINS, type DeliveryBenchOptions } from './lib/delivery-options.js';
import { commandLineOptions } from './lib/options.js';
import { describeCheck, type SignatureCheck } from './lib/dkim-check.js';
import { generateBenchKeys, keysFor, SIGNING_LABELS, writeKeyDirectory, type Signing } from './lib/dkim-keys.js';
import { CHECK_DOMAIN, CHECK_RECIPIENT } from './lib/end-to-end.js';
import { renderEndToEnd, runEndToEndScenario, type EndToEndSummary } from './lib/end-to-end-scenario.js';
import { describeEnvironment, type Environment } from './lib/environment.js';
import { BENCH_RECIPIENT, BENCH_SENDER, buildMessage, dataPayload } from './lib/message.js';
import { drainTiming, freshSpool, measureMtaDrain, mtaQueueHasFlag, SETTLE_MS, SIGNING_DOMAIN, type Addressing, type Drain, type DrainContext, type SigningSetup, type System } from './lib/mta-drain.js';
import { MtaQueueProcess } from './lib/mta-queue-process.js';
import { runPlainLoad } from './lib/plain-load.js';
import { detectPostfix } from './lib/private-postfix.js';
import { PostfixRelay } from './lib/postfix-relay.js';
import { cpuShares, readCpu, waitForSink, type CostShares, type RateOverRuns } from './lib/measure.js';
import { freePort } from './lib/proc.js';
import { hasSmtpSink, startCaptureSink, startSink, type SinkMx } from './lib/sink-mx.js';
import { fillDeferred, writeOne } from './lib/spool-fill.js';
import { formatMs, formatRate, formatRatio, median, percentile, renderTable, round } from './lib/stats.js';

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

interface DeferredResult {
  deferred: number;
  fillMs: number;
  /** Spawn → the `started` log line (recovery, deferred/ indexed, incoming/ scanned). */
  startupMs: number | null;
  indexed: number | null;
  idleSeconds: number;
  /** CPU over the idle window, % of one core. */
  idleCpuPercent: number | null;
  rssMb: number | null;
  /** Commit of a new message (when mta-server would say 250) → the sink has it; negative when it was faster than the fsyncs. */
  latenciesMs: (number | null)[];
  /** Start of writing the message → the sink has it: the figure held against the target. */
  latenciesFromWriteMs: (number | null)[];
  latencyTargetMs: number;
  latencyTargetMet: boolean | null;
  shutdownMs: number | null;
  errors: string[];
}

interface DeliveryReport {
  environment: Environment & { postfix: string; sink: string; mtaQueue: string };
  options: Record<string, unknown>;
  drains: DrainSummary[];
  /** Signed CPU ms/msg − unsigned CPU ms/msg, per key type and process count. */
  signingCost: SigningCost[];
  endToEnd: EndToEndSummary[];
  deferred: DeferredResult | null;
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
        record(await measureMtaDrain(drainContext, options, message, { processes, run, addressing: 'dns', signing: 'none' }, signingSetup));
        for (const name of signedDrains) {
          checkInterrupted();
          const signing = SIGNED_DRAINS[name];
          progress(`[run ${run}/${options.runs}] mta-queue ×${processes}, signing with ${SIGNING_LABELS[signing]}: filling a spool with ${options.messages} messages, then draining it`);
          record(await measureMtaDrain(drainContext, options, message, { processes, run, addressing: 'dns', signing }, signingSetup));
        }
      }
    }
    if (options.scenarios.has('literal')) {
      checkInterrupted();
      progress(`[run ${run}/${options.runs}] mta-queue ×1, recipients at [${SINK_HOST}] (no DNS): filling a spool with ${options.messages} messages, then draining it`);
      record(await measureMtaDrain(drainContext, options, message, { processes: 1, run, addressing: 'literal', signing: 'none' }, signingSetup));
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

  let deferred: DeferredResult | null = null;
  if (options.scenarios.has('deferred')) {
    checkInterrupted();
    progress(`deferred: ${options.deferred} messages due in 1 h, one mta-queue (--log-level info): start-up, ${options.idleSeconds} s idle CPU, ${options.latencyMessages} new messages`);
    deferred = await measureDeferred(options, sink, dns, message, workDir);
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
      postfixLog: options.postfixLog,
      e2eMessages: options.e2eMessages,
      e2eSessions: options.e2eSessions,
      warmup: options.warmup,
      checkMessages: options.checkMessages,
    },
    drains: summaries,
    signingCost: signingCosts(drains),
    endToEnd,
    deferred,
    notes,
  };
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderReport(report)}\n`);
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

async function measureDeferred(options: DeliveryBenchOptions, sink: SinkMx, dns: DnsServer, message: Buffer, workDir: string): Promise<DeferredResult> {
  const { layout, remove } = await freshSpool(workDir);
  cleanups.add(remove);
  const errors: string[] = [];
  let proc: MtaQueueProcess | null = null;
  const stop = async () => {
    await proc?.stop();
  };
  cleanups.add(stop);
  const result: DeferredResult = {
    deferred: options.deferred,
    fillMs: 0,
    startupMs: null,
    indexed: null,
    idleSeconds: options.idleSeconds,
    idleCpuPercent: null,
    rssMb: null,
    latenciesMs: [],
    latenciesFromWriteMs: [],
    latencyTargetMs: options.latencyTargetMs,
    latencyTargetMet: null,
    shutdownMs: null,
    errors,
  };
  try {
    result.fillMs = await fillDeferred(layout, options.deferred, Date.now() + 3_600_000, 600_000, BENCH_SENDER, BENCH_RECIPIENT);
    progress(`  ${options.deferred} deferred messages written in ${(result.fillMs / 1000).toFixed(1)} s`);
    checkInterrupted();
    const baseline = sink.count;
    dns.queries.length = 0;
    proc = MtaQueueProcess.start({ repoRoot: mtaRoot, spool: layout.root, dnsServer: dns.address, smtpPort: sink.port, concurrency: options.concurrency, perDestination: options.perDestination, logLevel: 'info' });
    const started = await proc.waitForEvent('started', 120_000);
    if (!started) throw new Error(`no "started" line within 120 s${proc.exitReason ? `: ${proc.exitReason}` : ''}`);
    result.startupMs = started.at - proc.spawnedAt;
    result.indexed = typeof started.deferred === 'number' ? started.deferred : null;
    progress(`  started after ${formatMs(result.startupMs)} ms with ${result.indexed} deferred indexed`);

    await sleep(500);
    const cpu0 = await proc.cpuMs();
    const t0 = performance.now();
    await sleep(options.idleSeconds * 1000);
    const cpu1 = await proc.cpuMs();
    result.idleCpuPercent = ((cpu1 - cpu0) / (performance.now() - t0)) * 100;
    const memory = await proc.memory();
    result.rssMb = memory ? memory.rssKb / 1024 : null;
    progress(`  idle CPU ${result.idleCpuPercent.toFixed(2)}% of a core over ${options.idleSeconds} s, RSS ${result.rssMb?.toFixed(0)} MB`);

    const writer = new MessageWriter(layout);
    for (let i = 0; i < options.latencyMessages; i++) {
      // Spread the arrivals over the poll interval, so the figure is not one lucky phase of a timer.
      await sleep(300 + Math.floor(Math.random() * 700));
      const before = sink.count;
      const writeStarted = performance.now();
      await writeOne(writer, message, BENCH_SENDER, BENCH_RECIPIENT);
      const committed = performance.now();
      const at = await sink.waitForCount(before + 1, 10_000);
      // The sink may count it before commit() resolves: the queue sees the envelope at its rename, before the
      // directory fsyncs that commit still waits for. Then "after commit" is negative.
      result.latenciesMs.push(at === null ? null : at - committed);
      result.latenciesFromWriteMs.push(at === null ? null : at - writeStarted);
      progress(`  new message ${i + 1}: ${at === null ? 'NOT at the sink within 10 s' : `at the sink ${formatMs(at - writeStarted)} ms after writing began (${formatMs(at - committed)} ms after its commit)`}`);
    }
    const measured = result.latenciesFromWriteMs.filter((value): value is number => value !== null);
    result.latencyTargetMet = measured.length === result.latenciesFromWriteMs.length && Math.max(...measured) <= options.latencyTargetMs;
    const extra = sink.count - baseline - measured.length;
    if (extra !== 0) errors.push(`${extra} messages other than the new ones reached the sink (deferred mail delivered early?)`);
    result.shutdownMs = await proc.stop();
    if (proc.problemCount > 0) errors.push(`mta-queue logged ${proc.problemCount} warn/error lines, last: ${proc.problems.at(-1)}`);
    if (proc.exitReason && !/SIGTERM|status 0/.test(proc.exitReason)) errors.push(proc.exitReason);
  } catch (error) {
    errors.push((error as Error).message);
  } finally {
    await stop();
    cleanups.delete(stop);
    progress(`  removing the ${options.deferred}-message spool…`);
    await remove();
    cleanups.delete(remove);
  }
  return result;
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
      `--max-connections-per-destination ${o.perDestination ?? 'default'}; Postfix default_destination_concurrency_limit ${o.concurrency}; runs: ${o.runs}`,
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
  const d = report.deferred;
  if (d) {
    const describe = (values: (number | null)[]) => {
      const ok = values.filter((value): value is number => value !== null);
      return ok.length ? `p50 ${formatMs(percentile(ok, 50))} ms, max ${formatMs(Math.max(...ok))} ms (${values.map((v) => (v === null ? 'lost' : formatMs(v))).join(', ')})` : 'none arrived';
    };
    lines.push('');
    lines.push(`${d.deferred.toLocaleString('en-US')} deferred messages due in 1 h, one mta-queue at --log-level info:`);
    const rows: [string, string][] = [
      ['start-up (spawn → "started")', d.startupMs === null ? '—' : `${formatMs(d.startupMs)} ms (${d.indexed ?? '?'} deferred indexed)`],
      [`idle CPU over ${d.idleSeconds} s`, d.idleCpuPercent === null ? '—' : `${d.idleCpuPercent.toFixed(2)}% of one core`],
      ['RSS when idle', d.rssMb === null ? '—' : `${d.rssMb.toFixed(0)} MB`],
      [`new message (${d.latenciesMs.length}): write → at the sink`, describe(d.latenciesFromWriteMs)],
      ['  commit (250) → at the sink', describe(d.latenciesMs)],
      [`target ≤ ${d.latencyTargetMs} ms`, d.latencyTargetMet === null ? 'not measured' : d.latencyTargetMet ? 'met' : 'NOT met'],
      ['SIGTERM → exit', d.shutdownMs === null ? '—' : `${formatMs(d.shutdownMs)} ms`],
    ];
    const width = Math.max(...rows.map(([label]) => label.length));
    for (const [label, value] of rows) lines.push(`  ${label.padEnd(width)}  ${value}`);
    for (const error of d.errors) lines.push(`! deferred: ${error}`);
  }
  for (const summary of report.drains) for (const error of summary.errors) lines.push(`! ${summary.label}: ${error}`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

await benchRun.run('bench:delivery', 'mta-queue, Postfix and the sink', (error) => error instanceof DeliveryUsageError, main);
