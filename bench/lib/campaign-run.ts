import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { MessageWriter } from '../../src/spool/message-writer.js';
import type { DnsServer } from '../../test/helpers/dns-server.js';
import { minimumSeconds, type CampaignMessage, type CampaignProvider, type ProviderKey } from './campaign-plan.js';
import type { CampaignSystem } from './campaign-options.js';
import { BENCH_SENDER, dataPayload } from './message.js';
import { freshSpool } from './mta-drain.js';
import { MtaQueueProcess } from './mta-queue-process.js';
import { runPlainLoad } from './plain-load.js';
import { PostfixRelay } from './postfix-relay.js';
import { freePort, freePortOn } from './proc.js';
import { startProviderMx, type ProviderCounts, type ProviderMx } from './provider-mx.js';
import { writeOne } from './spool-fill.js';

/** One campaign through one system: fill its queue, start the clock, wait until every provider has its mail. */

export interface CampaignContext {
  mtaRoot: string;
  workDir: string;
  dns: DnsServer;
  providers: CampaignProvider[];
  messages: CampaignMessage[];
  message: Buffer;
  timeLimitMs: number;
  retrySchedule: string;
  /** The --policy file, or null when this mta-queue has no --policy (the "before" figures). */
  policyFile: string | null;
  cleanups: Set<() => Promise<unknown>>;
  progress: (text: string) => void;
  checkInterrupted: () => void;
}

export interface ProviderOutcome {
  key: ProviderKey;
  label: string;
  requested: number;
  counts: ProviderCounts;
  /** Start → the provider's last expected message accepted; null when some never arrived. */
  completionSeconds: number | null;
  minimumSeconds: number | null;
}

export interface CampaignMeasurement {
  system: CampaignSystem;
  run: number;
  /** Start → every provider complete, or → giving up (time limit, process gone). */
  elapsedSeconds: number;
  complete: boolean;
  providers: ProviderOutcome[];
  errors: string[];
  notes: string[];
}

/** Postfix's own default for a destination (default_destination_concurrency_limit); mta-queue's --concurrency default too. */
const CONCURRENCY = 20;
/** Intake sessions filling Postfix's hold queue, and messages written at once into mta-queue's spool. */
const FILL_PARALLEL = 10;
const POLL_MS = 100;
const PORT_ATTEMPTS = 5;

/** The three providers on one port (mta-queue reaches every MX on its one --smtp-port), each on its own address. */
async function startProviders(providers: CampaignProvider[], messages: CampaignMessage[]): Promise<ProviderMx[]> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePortOn(providers[0]!.host);
    const started: ProviderMx[] = [];
    try {
      for (const provider of providers) {
        const expected = new Set(messages.filter((message) => message.provider === provider.key).map((message) => message.recipient));
        started.push(await startProviderMx(provider.style, provider.limits, provider.host, port, expected));
      }
      return started;
    } catch (error) {
      await Promise.all(started.map((mx) => mx.close()));
      // The port was free on the first address only: someone else's server can hold it on another.
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === PORT_ATTEMPTS) throw error;
    }
  }
}

interface SystemUnderTest {
  /** Starts delivering (the clock starts); resolves once it has. */
  start(): Promise<void>;
  /** Why it cannot go on (its process exited), or null. */
  failure(): string | null;
  stop(): Promise<string[]>;
}

export async function measureCampaign(context: CampaignContext, system: CampaignSystem, run: number): Promise<CampaignMeasurement> {
  const { providers, cleanups } = context;
  const mxes = await startProviders(providers, context.messages);
  const closeMxes = () => Promise.all(mxes.map((mx) => mx.close()));
  cleanups.add(closeMxes);
  const errors: string[] = [];
  const notes: string[] = [];
  let sut: SystemUnderTest | null = null;
  const stopSut = async () => {
    const running = sut;
    sut = null;
    if (running) notes.push(...(await running.stop()));
  };
  cleanups.add(stopSut);
  try {
    // Ctrl-C's cleanup stops and forgets `sut` while this loop may still be reading it: the loop keeps its own.
    const active = system === 'mta-relay' ? await prepareMtaQueue(context, mxes[0]!.port) : await preparePostfix(context, mxes[0]!.port);
    sut = active;
    context.checkInterrupted();
    const started = performance.now();
    await active.start();
    const deadline = started + context.timeLimitMs;
    let lastReport = started;
    for (;;) {
      if (mxes.every((mx) => mx.completedAt !== null)) break;
      context.checkInterrupted();
      const failure = active.failure();
      if (failure) {
        errors.push(failure);
        break;
      }
      if (performance.now() > deadline) {
        errors.push(`time limit (${context.timeLimitMs / 1000} s) reached`);
        break;
      }
      if (performance.now() - lastReport > 10_000) {
        lastReport = performance.now();
        context.progress(`  ${Math.round((lastReport - started) / 1000)} s: ${mxes.map((mx, i) => `${providers[i]!.key.toUpperCase()} ${mx.counts.delivered}/${providers[i]!.messages}`).join(', ')}`);
      }
      await sleep(POLL_MS);
    }
    const elapsedSeconds = (performance.now() - started) / 1000;
    await stopSut();
    const outcomes = providers.map((provider, index): ProviderOutcome => {
      const mx = mxes[index]!;
      const counts = structuredClone(mx.counts);
      if (counts.duplicates > 0) errors.push(`${provider.label}: ${counts.duplicates} recipients accepted more than once`);
      if (counts.unexpected > 0) errors.push(`${provider.label}: ${counts.unexpected} recipients that are not this provider's`);
      return {
        key: provider.key,
        label: provider.label,
        requested: provider.messages,
        counts,
        completionSeconds: mx.completedAt === null ? null : (mx.completedAt - started) / 1000,
        minimumSeconds: minimumSeconds(provider.messages, provider.limits.rate),
      };
    });
    return { system, run, elapsedSeconds, complete: outcomes.every((outcome) => outcome.completionSeconds !== null), providers: outcomes, errors, notes };
  } finally {
    await stopSut();
    cleanups.delete(stopSut);
    await closeMxes();
    cleanups.delete(closeMxes);
  }
}

/** A fresh spool holding the campaign (written as mta-server writes it), and mta-queue to be spawned on it. */
async function prepareMtaQueue(context: CampaignContext, port: number): Promise<SystemUnderTest> {
  const { layout, remove } = await freshSpool(context.workDir);
  let proc: MtaQueueProcess | null = null;
  try {
    const writer = new MessageWriter(layout);
    let next = 0;
    await Promise.all(
      Array.from({ length: FILL_PARALLEL }, async () => {
        while (next < context.messages.length) await writeOne(writer, context.message, BENCH_SENDER, context.messages[next++]!.recipient);
      }),
    );
  } catch (error) {
    await remove();
    throw error;
  }
  return {
    start: async () => {
      proc = MtaQueueProcess.start({
        repoRoot: context.mtaRoot,
        spool: layout.root,
        dnsServer: context.dns.address,
        smtpPort: port,
        concurrency: CONCURRENCY,
        perDestination: null,
        logLevel: 'warn',
        extraArgs: ['--retry-schedule', context.retrySchedule, ...(context.policyFile ? ['--policy', context.policyFile] : [])],
      });
    },
    failure: () => proc?.exitReason ?? null,
    stop: async () => {
      const notes: string[] = [];
      if (proc) {
        await proc.stop();
        if (proc.problemCount > 0) notes.push(`mta-queue logged ${proc.problemCount} warn/error lines, the last: ${proc.problems.at(-1)}`);
      }
      await remove();
      return notes;
    },
  };
}

/** A private Postfix with its defaults, a transport map to the providers, the campaign on hold until start. */
async function preparePostfix(context: CampaignContext, port: number): Promise<SystemUnderTest> {
  const transports = context.providers.flatMap((provider) => provider.domains.map((domain) => `${domain}=smtp:[${provider.host}]:${port}`));
  const relay = await PostfixRelay.start({ smtpdPort: await freePort(), relayhost: null, concurrency: CONCURRENCY, log: false, transports });
  try {
    const fill = await runPlainLoad({
      host: '127.0.0.1',
      port: relay.port,
      sessions: FILL_PARALLEL,
      messages: context.messages.length,
      payload: dataPayload(context.message),
      timeLimitMs: context.timeLimitMs,
      replyTimeoutMs: 60_000,
      recipientOf: (index) => context.messages[index]!.recipient,
    });
    if (fill.sent !== context.messages.length) throw new Error(`filling Postfix's hold queue: ${fill.sent}/${context.messages.length} accepted${fill.errors.length ? `: ${fill.errors.join('; ')}` : ''}`);
    const held = await relay.heldCount();
    if (held !== context.messages.length) throw new Error(`${held} messages on hold after ${context.messages.length} were accepted`);
  } catch (error) {
    await relay.stop();
    throw error;
  }
  return {
    start: () => relay.release(),
    failure: () => null,
    stop: () => relay.stop(),
  };
}
