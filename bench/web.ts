/**
 * Web UI benchmark: how fast mta-queue's web UI (--web) answers over a large queue, and what a browser polling it
 * costs the delivery rate. bench/README.md says how to run it and how to read the output.
 */
import { randomBytes } from 'node:crypto';
import { BenchRun } from './lib/bench-run.js';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDnsServer } from '../test/helpers/dns-server.js';
import { hashPassword } from '../src/shared/password-hash.js';
import { describeEnvironment, type Environment } from './lib/environment.js';
import { CHECK_DOMAIN } from './lib/end-to-end.js';
import { BENCH_RECIPIENT, buildMessage } from './lib/message.js';
import { measureMtaDrain, mtaQueueHasFlag, type Drain, type DrainContext, type SigningSetup } from './lib/mta-drain.js';
import type { Signing } from './lib/dkim-keys.js';
import { freePort } from './lib/proc.js';
import { hasSmtpSink, startCaptureSink, startSink } from './lib/sink-mx.js';
import { formatMs, formatRate, formatRatio, median, percentile, renderTable, round } from './lib/stats.js';
import { COMMON_DOMAIN, LATENCY_TARGET_MS, measureLatency, RARE_DOMAIN, type LatencyResult, type WebCredentials } from './lib/web-latency.js';
import { parseWebOptions, WEB_USAGE, WebUsageError } from './lib/web-options.js';
import { commandLineOptions } from './lib/options.js';
import { POLLED_PATHS, WebPoller, type PollerSummary } from './lib/web-poller.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SINK_HOST = '127.0.0.2';
const SINK_DOMAIN = BENCH_RECIPIENT.split('@')[1]!; // sink.test
const CAPTURE_HOST = '127.0.0.3';
/** Polled drain ≥ this × the plain drain's msgs/s (at most 5 % slower). */
const DRAIN_RATIO_TARGET = 0.95;
const POLL_INTERVAL_MS = 1000;

/** Anything started that must not outlive the benchmark, newest first. */
const progress = (text: string) => process.stderr.write(`${text}\n`);
const benchRun = new BenchRun(progress);
const { cleanups, checkInterrupted } = benchRun;

/** The drains of one run: without --web; with --web and the poller; with --web and nobody polling. */
type Variant = 'plain' | 'polled' | 'idle';
const VARIANT_LABELS: Record<Variant, string> = {
  plain: 'mta-queue ×1, no --web',
  idle: 'mta-queue ×1, --web, not polled',
  polled: `mta-queue ×1, --web, polled every ${POLL_INTERVAL_MS / 1000} s`,
};

interface WebDrain extends Drain {
  variant: Variant;
  poller: PollerSummary | null;
}

interface VariantSummary {
  variant: Variant;
  label: string;
  runs: number;
  msgsPerSec: number;
  msgsPerSecRuns: number[];
  /** Median over runs of (this run's msgs/s ÷ the plain drain's in the same run). */
  vsPlain: number | null;
  vsPlainRuns: number[];
  steadyMsgsPerSec: number | null;
  firstDeliveryMs: number | null;
  cpuMsPerMsg: number;
  cpuMsPerMsgRuns: number[];
  /** mta-queue's main thread alone: the event loop that delivers (the UI has a thread of its own). */
  eventLoopCpuMsPerMsg: number;
  eventLoopCpuMsPerMsgRuns: number[];
  benchCpuMsPerMsg: number;
  machineBusyPercent: number;
  othersPercentOfCore: number;
  delivered: number;
  requested: number;
  errors: string[];
}

interface PollerTotals {
  ticks: number;
  /** Seconds the polled drains took (spawn → spool empty): about the ticks there would be at one a second. */
  drainSeconds: number;
  requests: number;
  failed: number;
  /** Spawn → logged in, median over runs. */
  loggedInAfterMs: number | null;
  maxConnections: number;
  paths: { path: string; ok: number; p50Ms: number; p95Ms: number; maxMs: number }[];
}

interface WebReport {
  environment: Environment & { mtaQueue: string; sink: string };
  options: Record<string, unknown>;
  latency: LatencyResult | null;
  drains: VariantSummary[];
  poller: PollerTotals | null;
  target: { wanted: number; measured: number | null; perRun: number[]; met: boolean | null } | null;
  notes: string[];
}

async function main(): Promise<void> {
  const options = commandLineOptions('bench:web', parseWebOptions, WEB_USAGE);
  if (!options) return;
  const mtaRoot = path.resolve(options.mtaRoot ?? REPO_ROOT);
  const cli = path.join(mtaRoot, 'dist/cli/mta-queue.js');
  try {
    await access(cli);
  } catch {
    process.stderr.write(`bench:web: ${cli} is missing: run \`npm run build\` (npm run bench:web does)\n`);
    process.exit(2);
  }
  if (!(await mtaQueueHasFlag(mtaRoot, '--web'))) {
    process.stderr.write(`bench:web: ${cli} has no --web (mta-queue --help does not list it): build a checkout with the web UI\n`);
    process.exit(2);
  }

  const workDir = await mkdtemp(path.join(os.tmpdir(), 'mta-bench-web-'));
  cleanups.add(() => rm(workDir, { recursive: true, force: true }));
  const notes: string[] = [];

  // The web UI's one user, hashed as `mta-server passwd` writes it, 0600.
  const credentials: WebCredentials = { file: path.join(workDir, 'web-users.txt'), user: 'bench', password: randomBytes(12).toString('hex') };
  await writeFile(credentials.file, `${credentials.user}:${await hashPassword(credentials.password)}\n`, { mode: 0o600 });

  const sinkKind = options.sink === 'auto' ? ((await hasSmtpSink()) ? 'smtp-sink' : 'node') : options.sink;
  if (sinkKind === 'smtp-sink' && !(await hasSmtpSink())) throw new WebUsageError('--sink smtp-sink: /usr/sbin/smtp-sink not found (Debian package postfix)');
  const sink = await startSink(sinkKind, SINK_HOST);
  cleanups.add(() => sink.close());
  const dns = await startDnsServer({
    [SINK_DOMAIN]: { mx: [{ preference: 10, exchange: `mx.${SINK_DOMAIN}` }] },
    [`mx.${SINK_DOMAIN}`]: { a: [SINK_HOST] },
    // The latency queue's other domain: nothing is due, but were anything delivered it would reach the sink too.
    [RARE_DOMAIN]: { mx: [{ preference: 10, exchange: `mx.${RARE_DOMAIN}` }] },
    [`mx.${RARE_DOMAIN}`]: { a: [SINK_HOST] },
    [CHECK_DOMAIN]: { mx: [{ preference: 10, exchange: `mx.${CHECK_DOMAIN}` }] },
    [`mx.${CHECK_DOMAIN}`]: { a: [CAPTURE_HOST] },
  });
  cleanups.add(() => dns.close());
  const capture = await startCaptureSink(CAPTURE_HOST, sink.port);
  cleanups.add(() => capture.close());
  if (COMMON_DOMAIN !== SINK_DOMAIN) throw new Error(`the latency queue's common domain ${COMMON_DOMAIN} is not the sink's ${SINK_DOMAIN}`);

  // As bench:delivery's unsigned drain: an empty --dkim-dir (so /etc/mta-relay/dkim cannot sign), 5 check messages.
  const keyDirs = new Map<Signing, string>();
  if (await mtaQueueHasFlag(mtaRoot, '--dkim-dir')) {
    const dir = path.join(workDir, 'dkim-none');
    await mkdir(dir, { mode: 0o700 });
    keyDirs.set('none', dir);
  }
  const signingSetup: SigningSetup = { keyDirs, keys: null, capture, checkMessages: 5 };
  const context: DrainContext = { mtaRoot, workDir, sink, dns, cleanups, progress, checkInterrupted };

  const environment = {
    ...(await describeEnvironment(mtaRoot)),
    mtaQueue: cli,
    sink: sinkKind === 'smtp-sink' ? `smtp-sink on ${SINK_HOST}:${sink.port}` : `smtp-server in the bench process on ${SINK_HOST}:${sink.port}`,
  };
  progress(`mta-queue web UI benchmark: scenarios ${[...options.scenarios].join(',')}; ${cli}`);
  progress(`sink: ${environment.sink}; DNS: ${dns.address}; load average ${environment.loadAverage.join(' ')}`);

  let latency: LatencyResult | null = null;
  if (options.scenarios.has('latency')) {
    checkInterrupted();
    progress(`latency: ${options.queued} deferred messages, one mta-queue --web, ${options.requests} requests per row`);
    latency = await measureLatency(context, options, credentials, keyDirs.has('none') ? ['--dkim-dir', keyDirs.get('none')!] : []);
  }

  const drains: WebDrain[] = [];
  const wantsDrains = options.scenarios.has('drain') || options.scenarios.has('drain-idle');
  const message = buildMessage(options.size, 'mta-relay web UI benchmark');
  for (let run = 1; run <= options.runs && wantsDrains; run++) {
    const variants: Variant[] = ['plain', ...(options.scenarios.has('drain-idle') ? (['idle'] as const) : []), ...(options.scenarios.has('drain') ? (['polled'] as const) : [])];
    // Odd runs plain first, even runs plain last: neither variant always gets the fresher machine.
    if (run % 2 === 0) variants.reverse();
    for (const variant of variants) {
      checkInterrupted();
      progress(`[run ${run}/${options.runs}] ${VARIANT_LABELS[variant]}: filling a spool with ${options.messages} messages, then draining it`);
      const port = variant === 'plain' ? null : await freePort();
      const poller = variant === 'polled' ? new WebPoller(port!, credentials.user, credentials.password, options.timeLimitMs, POLL_INTERVAL_MS) : null;
      const drain = await measureMtaDrain(
        context,
        options,
        message,
        {
          processes: 1,
          run,
          addressing: 'dns',
          signing: 'none',
          extraArgs: port === null ? [] : ['--web', `127.0.0.1:${port}`, '--web-users', credentials.file],
          companion: poller ?? undefined,
        },
        signingSetup,
      );
      const record: WebDrain = { ...drain, variant, poller: poller?.summary ?? null };
      drains.push(record);
      const polled = record.poller ? `; poller: ${record.poller.ticks} ticks, ${record.poller.requests} requests, ${record.poller.failed} failed` : '';
      const trouble = drain.errors.length ? ` — ${drain.errors.join('; ')}` : '';
      progress(
        `  ${VARIANT_LABELS[variant]}: ${formatRate(drain.msgsPerSec)} msgs/s (${drain.delivered}/${drain.requested} in ${(drain.elapsedMs / 1000).toFixed(2)} s, ` +
          `${drain.cpuMsPerMsg.toFixed(3)} CPU ms/msg${drain.othersPercentOfCore >= 10 ? `, other processes busy ${Math.round(drain.othersPercentOfCore)}% of a core` : ''}${polled})${trouble}`,
      );
    }
  }

  checkInterrupted();
  const summaries = summarizeDrains(drains);
  const polledSummary = summaries.find((s) => s.variant === 'polled');
  const target = polledSummary
    ? { wanted: DRAIN_RATIO_TARGET, measured: polledSummary.vsPlain, perRun: polledSummary.vsPlainRuns, met: polledSummary.vsPlain === null ? null : polledSummary.vsPlain >= DRAIN_RATIO_TARGET }
    : null;
  const busiest = Math.max(0, ...drains.map((d) => d.othersPercentOfCore));
  if (busiest >= 10) notes.push(`other processes used up to ${Math.round(busiest)}% of a core during some drains (column "others"): rerun on a quiet machine`);
  const report: WebReport = {
    environment,
    options: {
      queued: options.queued,
      requests: options.requests,
      messages: options.messages,
      runs: options.runs,
      scenarios: [...options.scenarios],
      concurrency: options.concurrency,
      size: options.size,
      timeLimitMs: options.timeLimitMs,
      rowTimeLimitMs: options.rowTimeLimitMs,
      pollIntervalMs: POLL_INTERVAL_MS,
    },
    latency,
    drains: summaries,
    poller: pollerTotals(drains),
    target,
    notes,
  };
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderReport(report)}\n`);
}

function summarizeDrains(drains: WebDrain[]): VariantSummary[] {
  const order: Variant[] = ['plain', 'idle', 'polled'];
  const plainByRun = new Map(drains.filter((d) => d.variant === 'plain').map((d) => [d.run, d]));
  return order.flatMap((variant): VariantSummary[] => {
    const group = drains.filter((d) => d.variant === variant);
    if (!group.length) return [];
    const med = (pick: (d: WebDrain) => number | null) => {
      const values = group.map(pick).filter((value): value is number => value !== null && Number.isFinite(value));
      return values.length ? median(values) : null;
    };
    const vsPlainRuns = variant === 'plain' ? [] : group.flatMap((d) => (plainByRun.has(d.run) ? [round(d.msgsPerSec / plainByRun.get(d.run)!.msgsPerSec, 3)] : []));
    return [
      {
        variant,
        label: VARIANT_LABELS[variant],
        runs: group.length,
        msgsPerSec: round(med((d) => d.msgsPerSec) ?? NaN, 1),
        msgsPerSecRuns: group.map((d) => round(d.msgsPerSec, 1)),
        vsPlain: vsPlainRuns.length ? round(median(vsPlainRuns), 3) : null,
        vsPlainRuns,
        steadyMsgsPerSec: round(med((d) => d.steadyMsgsPerSec) ?? NaN, 1),
        firstDeliveryMs: round(med((d) => d.firstDeliveryMs) ?? NaN, 1),
        cpuMsPerMsg: round(med((d) => d.cpuMsPerMsg) ?? NaN, 4),
        cpuMsPerMsgRuns: group.map((d) => round(d.cpuMsPerMsg, 4)),
        eventLoopCpuMsPerMsg: round(med((d) => d.eventLoopCpuMsPerMsg) ?? NaN, 4),
        eventLoopCpuMsPerMsgRuns: group.map((d) => round(d.eventLoopCpuMsPerMsg ?? NaN, 4)),
        benchCpuMsPerMsg: round(med((d) => d.benchCpuMsPerMsg) ?? NaN, 4),
        machineBusyPercent: round(med((d) => d.machineBusyPercent) ?? NaN, 1),
        othersPercentOfCore: round(Math.max(...group.map((d) => d.othersPercentOfCore)), 1),
        delivered: group.reduce((sum, d) => sum + d.delivered, 0),
        requested: group.reduce((sum, d) => sum + d.requested, 0),
        errors: group.flatMap((d) => d.errors.map((error) => (group.length > 1 ? `run ${d.run}: ${error}` : error))),
      },
    ];
  });
}

/** The poller's requests over every polled drain, latencies pooled per path. */
function pollerTotals(drains: WebDrain[]): PollerTotals | null {
  const polled = drains.filter((d) => d.poller);
  const summaries = polled.map((d) => d.poller!);
  if (!summaries.length) return null;
  const logins = summaries.map((s) => s.loggedInAfterMs).filter((value): value is number => value !== null);
  return {
    ticks: summaries.reduce((sum, s) => sum + s.ticks, 0),
    drainSeconds: round(polled.reduce((sum, d) => sum + d.elapsedMs, 0) / 1000, 1),
    requests: summaries.reduce((sum, s) => sum + s.requests, 0),
    failed: summaries.reduce((sum, s) => sum + s.failed, 0),
    loggedInAfterMs: logins.length ? round(median(logins), 1) : null,
    maxConnections: Math.max(...summaries.map((s) => s.connections)),
    paths: POLLED_PATHS.map((polled) => {
      const samples = summaries.flatMap((s) => s.paths.find((p) => p.path === polled)?.samplesMs ?? []);
      return { path: polled, ok: samples.length, p50Ms: round(percentile(samples, 50), 2), p95Ms: round(percentile(samples, 95), 2), maxMs: round(samples.length ? Math.max(...samples) : NaN, 2) };
    }),
  };
}

function renderReport(report: WebReport): string {
  const env = report.environment;
  const o = report.options;
  const lines = [
    `mta-queue web UI benchmark — ${env.date}, commit ${env.commit}`,
    `${env.cpus} × ${env.cpuModel}, ${env.memoryGb} GiB, ${env.kernel}, Node ${env.node}, fdatasync ≈ ${env.fdatasyncMs} ms, load ${env.loadAverage.join(' ')}`,
    `mta-queue: ${env.mtaQueue} --web 127.0.0.1:PORT --web-users FILE (one user, scrypt-hashed); sink: ${env.sink}`,
  ];
  const l = report.latency;
  if (l) {
    lines.push('');
    lines.push(
      `Latency: ${l.queued.toLocaleString('en-US')} deferred messages (due in 24 h; ${l.rareMessages.toLocaleString('en-US')} to ${RARE_DOMAIN}), one mta-queue --concurrency ${o.concurrency}; ` +
        `one client, keep-alive, one request at a time; ${o.requests} requests per row, rows in turn, after 2 unmeasured rounds`,
    );
    const walk = l.walk
      ? `cursor walk ${l.walk.pages} pages${l.walk.pageSize ? ` of ${l.walk.pageSize}` : ''} to ${l.walk.depth.toLocaleString('en-US')} deep in ${(l.walk.ms / 1000).toFixed(1)} s${l.walk.reachedEnd ? ' (end of list)' : ''}`
      : 'no cursor walk';
    lines.push(
      `  web port answered ${l.portAfterMs === null ? '—' : `${formatMs(l.portAfterMs)} ms`} after spawn; login ${l.loginMs === null ? '—' : `${formatMs(l.loginMs)} ms`}; ` +
        `first /queue (cold) ${l.coldQueueMs === null ? '—' : `${formatMs(l.coldQueueMs)} ms`}; ${walk}; TCP connections used: ${l.connections}; mta-queue RSS afterwards ${l.rssMb === null ? '—' : `${l.rssMb.toFixed(0)} MB`}`,
    );
    if (l.rows.length) {
      lines.push('');
      const rows = l.rows.map((r) => [
        r.label,
        `${r.ok}/${r.asked}`,
        formatMs(r.p50Ms),
        formatMs(r.p95Ms),
        formatMs(r.maxMs),
        Number.isFinite(r.serverCpuMsPerRequest) ? r.serverCpuMsPerRequest.toFixed(1) : '—',
        Number.isFinite(r.bytes) ? (r.bytes / 1024).toFixed(1) : '—',
        r.messages === null ? '—' : String(r.messages),
        r.examined === null ? '—' : String(r.examined),
        r.targetMet === null ? '—' : r.targetMet ? 'met' : 'NOT met',
      ]);
      lines.push(renderTable(['request', 'ok', 'p50 ms', 'p95 ms', 'max ms', 'srv CPU ms/req', 'KiB', 'msgs', 'examined', `p95 ≤ ${LATENCY_TARGET_MS} ms`], rows));
      lines.push('');
      lines.push('ms: request written → last byte of the answer read (loopback). ok: answers 200 with the right content type (and a JSON "messages" array); only those are in the figures.');
      lines.push('srv CPU: mta-queue user+system CPU (all threads) per request, read from /proc before and after each. KiB, msgs, examined: median body size, messages per JSON page and envelopes the server read for it.');
      const met = l.rows.filter((r) => r.targetMet === true).length;
      lines.push(`target (p95 ≤ ${LATENCY_TARGET_MS} ms for every row): ${met}/${l.rows.length} rows met${met === l.rows.length ? ' — met' : ' — NOT met'}`);
    }
    for (const error of l.errors) lines.push(`! latency: ${error}`);
    for (const row of l.rows) for (const error of row.errors) lines.push(`! ${row.label}: ${error}`);
    for (const note of l.notes) lines.push(`note: latency: ${note}`);
  }
  if (report.drains.length) {
    lines.push('');
    lines.push(
      `Drain: bench:delivery's drain — ${o.messages} messages of ${o.size} bytes to ${SINK_DOMAIN}, one mta-queue --concurrency ${o.concurrency} --max-connections-per-destination ${o.concurrency}; ` +
        `runs: ${o.runs} (odd runs plain first, even runs plain last)`,
    );
    lines.push('');
    const rows = report.drains.map((s) => [
      s.label,
      formatRate(s.msgsPerSec),
      s.msgsPerSecRuns.map((v) => formatRate(v)).join(', '),
      s.vsPlain === null ? '—' : formatRatio(s.vsPlain),
      formatRate(s.steadyMsgsPerSec ?? NaN),
      formatMs(s.firstDeliveryMs ?? NaN),
      Number.isFinite(s.cpuMsPerMsg) ? s.cpuMsPerMsg.toFixed(3) : '—',
      Number.isFinite(s.eventLoopCpuMsPerMsg) ? s.eventLoopCpuMsPerMsg.toFixed(3) : '—',
      Number.isFinite(s.benchCpuMsPerMsg) ? s.benchCpuMsPerMsg.toFixed(3) : '—',
      Number.isFinite(s.machineBusyPercent) ? `${Math.round(s.machineBusyPercent)}%` : '—',
      Number.isFinite(s.othersPercentOfCore) ? `${Math.round(s.othersPercentOfCore)}%` : '—',
      `${s.delivered}/${s.requested}`,
    ]);
    lines.push(renderTable(['drain', 'msgs/s', 'runs', 'vs plain', 'steady/s', '1st ms', 'CPU ms/msg', 'loop ms/msg', 'bench ms/msg', 'machine busy', 'others', 'delivered'], rows));
    lines.push('');
    lines.push('msgs/s: delivered ÷ (spawn of mta-queue → sink has all and spool seen empty), median over runs; vs plain: over the plain drain of the same run, median over runs.');
    lines.push('CPU: mta-queue (all threads) per message; loop: its main thread alone, the event loop that delivers; bench: this process (DNS server, poller; the sink too if in-process).');
    const p = report.poller;
    if (p) {
      lines.push(
        `poller, over the polled drains (${p.drainSeconds.toFixed(1)} s): ${p.ticks} ticks, ${p.requests} requests (${p.failed} failed), logged in ${p.loggedInAfterMs === null ? '—' : `${formatMs(p.loggedInAfterMs)} ms`} after spawn (median), ` +
          `at most ${p.maxConnections} TCP connection${p.maxConnections === 1 ? '' : 's'} per drain; answers during the drain:`,
      );
      const width = Math.max(...p.paths.map((entry) => entry.path.length));
      if (p.ticks < (p.drainSeconds * 1000) / POLL_INTERVAL_MS / 2) {
        lines.push(`  (fewer than half the ticks of one per ${POLL_INTERVAL_MS / 1000} s: the poller's requests took longer than its interval, so it asked without pause)`);
      }
      for (const entry of p.paths) {
        lines.push(`  GET ${entry.path.padEnd(width)}  ${String(entry.ok).padStart(5)} × 200, p50 ${formatMs(entry.p50Ms)} ms, p95 ${formatMs(entry.p95Ms)} ms, max ${formatMs(entry.maxMs)} ms`);
      }
    }
    const plain = report.drains.find((s) => s.variant === 'plain');
    const polled = report.drains.find((s) => s.variant === 'polled');
    if (plain && polled && Number.isFinite(plain.cpuMsPerMsg) && Number.isFinite(polled.cpuMsPerMsg)) {
      const added = polled.cpuMsPerMsg - plain.cpuMsPerMsg;
      lines.push(`polling adds ${added.toFixed(3)} ms mta-queue CPU per delivered message (${((added / plain.cpuMsPerMsg) * 100).toFixed(0)} %; medians of runs)`);
      const loopAdded = polled.eventLoopCpuMsPerMsg - plain.eventLoopCpuMsPerMsg;
      if (Number.isFinite(loopAdded)) {
        lines.push(`  of which on the delivery event loop: ${loopAdded.toFixed(3)} ms (${((loopAdded / plain.eventLoopCpuMsPerMsg) * 100).toFixed(0)} %; runs, plain / polled: ${plain.eventLoopCpuMsPerMsgRuns.map((v, i) => `${v.toFixed(3)} / ${polled.eventLoopCpuMsPerMsgRuns[i]?.toFixed(3) ?? '—'}`).join(', ')})`);
      }
    }
    const t = report.target;
    if (t) {
      lines.push(
        t.measured === null
          ? 'target (polled drain at most 5 % slower than plain): not measured'
          : `target (polled drain at most 5 % slower than plain, ≥ ${t.wanted}×): measured ${formatRatio(t.measured)}` +
              (t.perRun.length > 1 ? ` (runs: ${t.perRun.map((v) => v.toFixed(2)).join(', ')})` : '') +
              ` — ${t.met ? 'met' : 'NOT met'}`,
      );
    }
    for (const s of report.drains) for (const error of s.errors) lines.push(`! ${s.label}: ${error}`);
  }
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

await benchRun.run('bench:web', 'mta-queue and the sink', (error) => error instanceof WebUsageError, main);
