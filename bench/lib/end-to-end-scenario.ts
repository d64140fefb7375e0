import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeCertificate } from '../../test/helpers/certs.js';
import type { DnsServer } from '../../test/helpers/dns-server.js';
import type { DeliveryBenchOptions } from './delivery-options.js';
import { describeCheck, type SignatureCheck } from './dkim-check.js';
import { SIGNING_ALGORITHMS, type BenchKey, type BenchKeyType } from './dkim-keys.js';
import { CHECK_DOMAIN, measureEndToEnd, mtaRelay, postfixRelay, type EndToEndContext, type EndToEndRun, type EndToEndSystem } from './end-to-end.js';
import type { CostShares, RateOverRuns } from './measure.js';
import { buildMessage } from './message.js';
import { MtaQueueProcess } from './mta-queue-process.js';
import { MtaServerProcess } from './mta-server-process.js';
import { OpenDkim } from './opendkim.js';
import { detectPostfix } from './private-postfix.js';
import { PostfixRelay } from './postfix-relay.js';
import { freePort } from './proc.js';
import type { CaptureSink, SinkMx } from './sink-mx.js';
import { hasSmtpSource } from './smtp-source.js';
import { formatRate, formatRatio, median, renderTable, round } from './stats.js';

/**
 * The `e2e` scenario of bench:delivery: mta-server + mta-queue signing with rsa-2048 against Postfix + the
 * OpenDKIM milter signing the same domain with the same key, `--runs` rounds, the order alternated each round
 * (ours first in odd rounds, Postfix first in even ones) so that a machine getting busier or quieter does not
 * favour one side; the ratio is taken round by round and the median reported.
 */

/** Issue 11: signed end to end at least this many times Postfix + OpenDKIM in the same run. */
export const E2E_TARGET = 2.5;
const USER = { name: 'bench', password: 'bench-password-not-secret' };

export interface EndToEndScenario {
  options: DeliveryBenchOptions;
  mtaRoot: string;
  workDir: string;
  sink: SinkMx;
  capture: CaptureSink;
  dns: DnsServer;
  keys: Record<BenchKeyType, BenchKey>;
  /** The --dkim-dir holding the active rsa-2048 key of `domain`. */
  rsaKeyDir: string;
  domain: string;
  sinkHost: string;
  captureHost: string;
  cleanups: Set<() => Promise<unknown>>;
  progress: (text: string) => void;
  checkInterrupted: () => void;
  notes: string[];
}

export interface EndToEndSummary extends RateOverRuns, CostShares {
  system: EndToEndSystem;
  intakeMsgsPerSec: number;
  milterCpuMsPerMsg: number | null;
  delivered: number;
  requested: number;
  check: string | null;
  errors: string[];
}

export async function runEndToEndScenario(scenario: EndToEndScenario): Promise<EndToEndSummary[]> {
  const { options, progress, notes, cleanups } = scenario;
  if (!(await hasSmtpSource())) {
    notes.push('e2e: not measured (/usr/sbin/smtp-source not found: Debian package postfix)');
    return [];
  }
  const postfix = await detectPostfix();
  const opendkimMissing = postfix.ok ? await OpenDkim.unavailable() : null;
  let postfixLabel = 'Postfix + OpenDKIM';
  let milter: OpenDkim | null = null;
  let relay: PostfixRelay | null = null;
  const stopPostfix = async () => {
    const [r, m] = [relay, milter];
    relay = null;
    milter = null;
    if (r) notes.push(...(await r.stop()));
    if (m) await m.stop();
  };
  cleanups.add(stopPostfix);
  if (!postfix.ok) notes.push(`e2e: Postfix + OpenDKIM not measured (${postfix.reason})`);
  else if (opendkimMissing) notes.push(`e2e: Postfix + OpenDKIM not measured (${opendkimMissing})`);
  else {
    try {
      milter = await OpenDkim.start(scenario.keys.rsa);
      relay = await PostfixRelay.start({
        smtpdPort: await freePort(),
        relayhost: `[${scenario.sinkHost}]:${scenario.sink.port}`,
        concurrency: options.concurrency,
        log: options.postfixLog,
        hold: false,
        milterSocket: milter.socket,
        transports: [`${CHECK_DOMAIN}=smtp:[${scenario.captureHost}]:${scenario.capture.port}`],
      });
      postfixLabel = `Postfix ${postfix.version} + ${await OpenDkim.version()}`;
      progress(`e2e: ${postfixLabel}: smtpd 127.0.0.1:${relay.port} with smtpd_milters=unix:${milter.socket} (opendkim PID ${milter.pid}, ${milter.root}), relayhost [${scenario.sinkHost}]:${scenario.sink.port}`);
    } catch (error) {
      notes.push(`e2e: Postfix + OpenDKIM not measured (${(error as Error).message})`);
      await stopPostfix();
    }
  }

  const certificate = await makeCertificate(scenario.workDir, 'bench.test');
  const usersFile = path.join(scenario.workDir, 'e2e-users.txt');
  await writeFile(usersFile, `${USER.name}:${USER.password}\n`, { mode: 0o600 });
  const context: EndToEndContext = {
    sink: scenario.sink,
    capture: scenario.capture,
    message: buildMessage(options.size, 'mta-relay end-to-end check'),
    keys: [scenario.keys.rsa],
    expected: SIGNING_ALGORITHMS.rsa,
    domain: scenario.domain,
    messages: options.e2eMessages,
    sessions: options.e2eSessions,
    size: options.size,
    warmup: options.warmup,
    checkMessages: options.checkMessages,
    timeLimitMs: options.timeLimitMs,
    progress,
  };

  const measureMta = async (processes: number, run: number): Promise<EndToEndRun> => {
    const server = await MtaServerProcess.start({
      repoRoot: scenario.mtaRoot,
      workDir: scenario.workDir,
      usersFile,
      certFile: certificate.certFile,
      keyFile: certificate.keyFile,
      extraArgs: options.e2eSessions > 40 ? ['--max-connections-per-ip', String(options.e2eSessions + 10)] : [],
    });
    const queues: MtaQueueProcess[] = [];
    const stop = async () => {
      await Promise.all(queues.map((queue) => queue.stop()));
      await server.stop();
    };
    cleanups.add(stop);
    try {
      for (let i = 0; i < processes; i++) {
        queues.push(
          MtaQueueProcess.start({
            repoRoot: scenario.mtaRoot,
            spool: server.spool,
            dnsServer: scenario.dns.address,
            smtpPort: scenario.sink.port,
            concurrency: options.concurrency,
            perDestination: options.perDestination,
            logLevel: 'warn',
            extraArgs: ['--dkim-dir', scenario.rsaKeyDir],
          }),
        );
      }
      const result = await measureEndToEnd(context, 'mta-relay', processes, run, mtaRelay(server, queues));
      for (const queue of queues) if (queue.problemCount > 0) result.errors.push(`mta-queue ${queue.pid} logged ${queue.problemCount} warn/error lines, last: ${queue.problems.at(-1)}`);
      if (server.logLines > 0) result.errors.push(`mta-server logged ${server.logLines} warn/error lines, last: ${server.recentLog.trim().split('\n').pop()}`);
      return result;
    } finally {
      await stop();
      cleanups.delete(stop);
    }
  };
  const measurePostfix = async (run: number): Promise<EndToEndRun> => {
    await relay!.clearQueue();
    return measureEndToEnd(context, 'postfix', 0, run, postfixRelay(relay!, milter!));
  };

  const results: EndToEndRun[] = [];
  const take = async (what: string, measure: () => Promise<EndToEndRun>) => {
    scenario.checkInterrupted();
    progress(`${what}: ${options.warmup} warm-up messages, ${options.checkMessages} check messages, then smtp-source -s ${options.e2eSessions} -m ${options.e2eMessages} -l ${options.size}`);
    try {
      const result = await measure();
      results.push(result);
      const milterPart = result.milterCpuMsPerMsg === null ? '' : `, of which opendkim ${result.milterCpuMsPerMsg.toFixed(3)}`;
      progress(
        `  ${formatRate(result.msgsPerSec)} msgs/s end to end (${result.delivered}/${result.requested} in ${(result.elapsedMs / 1000).toFixed(2)} s; intake ${formatRate(result.intakeMsgsPerSec)} msgs/s; ` +
          `${result.cpuMsPerMsg.toFixed(3)} CPU ms/msg${milterPart})${result.errors.length ? ` — ${result.errors.join('; ')}` : ''}`,
      );
      if (result.check) progress(`  DKIM check: ${describeCheck(result.check)}`);
    } catch (error) {
      progress(`  failed: ${(error as Error).message}`);
      notes.push(`e2e ${what}: ${(error as Error).message}`);
    }
  };
  for (let run = 1; run <= options.runs; run++) {
    const ours = options.processes.map((processes) => () => take(`[e2e round ${run}/${options.runs}] mta-server + mta-queue ×${processes} (rsa-2048)`, () => measureMta(processes, run)));
    const theirs = relay ? [() => take(`[e2e round ${run}/${options.runs}] ${postfixLabel}`, () => measurePostfix(run))] : [];
    for (const step of run % 2 === 1 ? [...ours, ...theirs] : [...theirs, ...ours]) await step();
  }
  await stopPostfix();
  cleanups.delete(stopPostfix);
  return summarizeEndToEnd(results, postfixLabel);
}

function summarizeEndToEnd(results: EndToEndRun[], postfixLabel: string): EndToEndSummary[] {
  const groups = new Map<string, EndToEndRun[]>();
  for (const result of results) groups.set(`${result.system}/${result.processes}`, [...(groups.get(`${result.system}/${result.processes}`) ?? []), result]);
  const postfixByRun = new Map(results.filter((r) => r.system === 'postfix').map((r) => [r.run, r.msgsPerSec]));
  return [...groups.values()].map((group) => {
    const first = group[0]!;
    const med = (pick: (r: EndToEndRun) => number | null) => {
      const values = group.map(pick).filter((v): v is number => v !== null && Number.isFinite(v));
      return values.length ? median(values) : null;
    };
    const vsPostfixRuns = first.system === 'postfix' ? [] : group.flatMap((r) => (postfixByRun.has(r.run) ? [round(r.msgsPerSec / postfixByRun.get(r.run)!, 3)] : []));
    const checks = group.flatMap((r) => (r.check ? [r.check] : []));
    const check = checks.length
      ? describeCheck(checks.reduce((sum: SignatureCheck, c) => ({ ...c, checked: sum.checked + c.checked, good: sum.good + c.good, method: c.method === 'present' ? c.method : sum.method })))
      : null;
    const milter = med((r) => r.milterCpuMsPerMsg);
    return {
      system: first.system,
      label: first.system === 'postfix' ? postfixLabel : `mta-server + mta-queue ×${first.processes} rsa-2048`,
      processes: first.processes,
      runs: group.length,
      msgsPerSec: round(med((r) => r.msgsPerSec) ?? NaN, 1),
      msgsPerSecRuns: group.map((r) => round(r.msgsPerSec, 1)),
      vsPostfix: vsPostfixRuns.length ? round(median(vsPostfixRuns), 3) : null,
      vsPostfixRuns,
      intakeMsgsPerSec: round(med((r) => r.intakeMsgsPerSec) ?? NaN, 1),
      cpuMsPerMsg: round(med((r) => r.cpuMsPerMsg) ?? NaN, 4),
      milterCpuMsPerMsg: milter === null ? null : round(milter, 4),
      benchCpuMsPerMsg: round(med((r) => r.benchCpuMsPerMsg) ?? NaN, 4),
      machineBusyPercent: round(med((r) => r.machineBusyPercent) ?? NaN, 1),
      othersPercentOfCore: round(Math.max(...group.map((r) => r.othersPercentOfCore)), 1),
      delivered: group.reduce((sum, r) => sum + r.delivered, 0),
      requested: group.reduce((sum, r) => sum + r.requested, 0),
      check,
      errors: group.flatMap((r) => r.errors.map((error) => (group.length > 1 ? `round ${r.run}: ${error}` : error))),
    };
  });
}

export function renderEndToEnd(summaries: EndToEndSummary[], options: Record<string, unknown>): string[] {
  const fixed = (value: number | null) => (value === null || !Number.isFinite(value) ? '—' : value.toFixed(3));
  const rows = summaries.map((s) => [
    s.label,
    s.system === 'postfix' ? '—' : String(s.processes),
    formatRate(s.msgsPerSec),
    s.vsPostfix === null ? '—' : formatRatio(s.vsPostfix),
    formatRate(s.intakeMsgsPerSec),
    fixed(s.cpuMsPerMsg),
    fixed(s.milterCpuMsPerMsg),
    fixed(s.benchCpuMsPerMsg),
    Number.isFinite(s.machineBusyPercent) ? `${Math.round(s.machineBusyPercent)}%` : '—',
    Number.isFinite(s.othersPercentOfCore) ? `${Math.round(s.othersPercentOfCore)}%` : '—',
    `${s.delivered}/${s.requested}`,
  ]);
  const lines = [
    `End to end with DKIM signing: smtp-source -s ${options.e2eSessions} -m ${options.e2eMessages} -l ${options.size} → relay → sink, delivery running during intake; ` +
      `${options.warmup} warm-up messages first; rounds: ${options.runs}, order alternated`,
    renderTable(['end to end', 'procs', 'msgs/s', 'vs Postfix+OpenDKIM', 'intake/s', 'CPU ms/msg', 'milter ms/msg', 'bench ms/msg', 'machine busy', 'others', 'delivered'], rows),
    'msgs/s: messages ÷ (smtp-source start → all at the sink and the queue empty); intake/s: messages ÷ smtp-source\'s run time.',
    'CPU: mta-server + mta-queue, or Postfix master + every daemon + opendkim (its share: milter ms/msg); bench: this process and smtp-source (reaped child).',
    `DKIM check: ${options.checkMessages} messages per measurement through the same relay to the capturing sink (${CHECK_DOMAIN}), verified:`,
  ];
  const width = Math.max(...summaries.map((s) => s.label.length));
  for (const s of summaries) lines.push(`  ${s.label.padEnd(width)}  ${s.check ?? 'not checked'}`);
  for (const s of summaries) {
    if (s.system === 'postfix') continue;
    const runs = s.vsPostfixRuns.length > 1 ? ` (rounds: ${s.vsPostfixRuns.map((v) => v.toFixed(2)).join(', ')})` : '';
    lines.push(
      `target (signed end to end ≥ ${E2E_TARGET}× Postfix + OpenDKIM in the same run), ×${s.processes}: ` +
        (s.vsPostfix === null ? 'not measured (no Postfix + OpenDKIM row)' : `measured ${formatRatio(s.vsPostfix)}${runs} — ${s.vsPostfix >= E2E_TARGET ? 'met' : 'NOT met'}`),
    );
  }
  for (const s of summaries) for (const error of s.errors) lines.push(`! ${s.label}: ${error}`);
  return lines;
}
