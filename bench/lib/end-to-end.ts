import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { spoolLayout } from '../../src/spool/layout.js';
import { checkSignatures, type SignatureCheck } from './dkim-check.js';
import type { BenchKey } from './dkim-keys.js';
import { BENCH_SENDER, dataPayload } from './message.js';
import { cpuShares, readCpu, waitForSink, type CostShares } from './measure.js';
import type { MtaQueueProcess } from './mta-queue-process.js';
import type { MtaServerProcess } from './mta-server-process.js';
import type { OpenDkim } from './opendkim.js';
import type { PostfixRelay } from './postfix-relay.js';
import type { CaptureSink, SinkMx } from './sink-mx.js';
import { BenchSmtpClient } from './smtp-client.js';
import { runSmtpSource } from './smtp-source.js';
import { spoolCounts } from './spool-fill.js';

/**
 * One end-to-end measurement (issue 11's benchmark): smtp-source sends N messages over S sessions into a relay
 * whose delivery runs at the same time, and the clock stops when the sink has counted all N and the relay's
 * queue is empty. The relay is mta-server + mta-queue (signing) on a fresh spool, or the private Postfix with
 * the OpenDKIM milter. Before the clock: `warmup` messages the same way (waited for), and the check messages,
 * which go to the capturing sink to have their signatures verified.
 */

/** The capturing sink's domain: its MX is 127.0.0.3 (DNS for mta-queue, transport_maps for Postfix). */
export const CHECK_DOMAIN = 'check.test';
export const CHECK_RECIPIENT = `check@${CHECK_DOMAIN}`;
/** After the sink has every message, how long the queue may take to be seen empty. */
const SETTLE_MS = 15_000;

export type EndToEndSystem = 'mta-relay' | 'postfix';

export interface EndToEndRun extends CostShares {
  system: EndToEndSystem;
  /** mta-queue processes (0 for Postfix). */
  processes: number;
  run: number;
  requested: number;
  delivered: number;
  /** smtp-source start → every message at the sink and the queue seen empty. */
  elapsedMs: number;
  msgsPerSec: number;
  /** Messages ÷ smtp-source's own run time: how fast intake took them while delivery ran. */
  intakeMsgsPerSec: number;
  /** OpenDKIM's part of cpuMsPerMsg (null for mta-relay); cpuMsPerMsg is Postfix's master + all its daemons + opendkim. */
  milterCpuMsPerMsg: number | null;
  check: SignatureCheck | null;
  errors: string[];
}

export interface EndToEndContext {
  sink: SinkMx;
  capture: CaptureSink;
  message: Buffer;
  /** The keys the check messages are verified with. */
  keys: BenchKey[];
  /** a= of each signature a message must carry. */
  expected: string[];
  domain: string;
  messages: number;
  sessions: number;
  size: number;
  warmup: number;
  checkMessages: number;
  timeLimitMs: number;
  progress: (text: string) => void;
}

/** What the measurement needs of the relay under test. */
interface Relay {
  port: number;
  cpuMs(): Promise<number>;
  milterCpuMs(): Promise<number | null>;
  /** 0 when nothing is left to deliver. */
  queued(): Promise<number>;
  /** Why the relay cannot go on (a process exited), or null. */
  gone(): string | null;
}

export function mtaRelay(server: MtaServerProcess, queues: MtaQueueProcess[]): Relay {
  const layout = spoolLayout(server.spool);
  return {
    port: server.port,
    async cpuMs() {
      let total = await server.cpuMs();
      for (const queue of queues) total += await queue.cpuMs();
      return total;
    },
    milterCpuMs: async () => null,
    async queued() {
      const counts = await spoolCounts(layout);
      return counts.incoming + counts.deferred + counts.active + counts.data;
    },
    gone: () => server.exitReason ?? queues.find((queue) => queue.exitReason)?.exitReason ?? null,
  };
}

export function postfixRelay(relay: PostfixRelay, milter: OpenDkim): Relay {
  return {
    port: relay.port,
    cpuMs: async () => (await relay.cpuMs()) + (await milter.cpuMs()),
    milterCpuMs: () => milter.cpuMs(),
    queued: () => relay.queuedCount(),
    gone: () => milter.exitReason,
  };
}

/** Waits (bounded) for the sink to reach `target` and then for the relay's queue to be empty. */
async function drained(context: EndToEndContext, relay: Relay, target: number, deadline: number, errors: string[]): Promise<number> {
  const reached = await waitForSink(context.sink, target, deadline, relay.gone);
  if (reached.error) errors.push(reached.error);
  let ended = performance.now();
  if (reached.at === null) return ended;
  const settle = ended + SETTLE_MS;
  for (;;) {
    const queued = await relay.queued();
    ended = performance.now();
    if (queued === 0) return ended;
    if (ended > settle) {
      errors.push(`${queued} queue entries left ${SETTLE_MS / 1000} s after the last delivery`);
      return ended;
    }
    await sleep(5);
  }
}

/** The check messages: our own client, one session, From: a@bench.test like smtp-source's, to check@check.test. */
async function sendCheckMessages(context: EndToEndContext, relay: Relay): Promise<SignatureCheck> {
  context.capture.messages.length = 0;
  const client = await BenchSmtpClient.open('127.0.0.1', relay.port, 30_000);
  try {
    for (let i = 0; i < context.checkMessages; i++) await client.sendMessage(BENCH_SENDER, CHECK_RECIPIENT, dataPayload(context.message));
  } finally {
    await client.quit();
  }
  const arrived = await context.capture.waitFor(context.checkMessages, 60_000);
  const check = await checkSignatures(context.capture.messages.slice(), context.expected, context.domain, context.keys);
  if (!arrived) check.problems.unshift(`only ${context.capture.messages.length}/${context.checkMessages} check messages reached the capturing sink within 60 s`);
  return check;
}

export async function measureEndToEnd(context: EndToEndContext, system: EndToEndSystem, processes: number, run: number, relay: Relay): Promise<EndToEndRun> {
  const { sink } = context;
  const errors: string[] = [];
  if (context.warmup > 0) {
    const target = sink.count + context.warmup;
    const warm = await runSmtpSource(relay.port, context.sessions, context.warmup, context.size, context.timeLimitMs);
    if (warm.error) throw new Error(`warm-up: ${warm.error}`);
    const warmErrors: string[] = [];
    await drained(context, relay, target, performance.now() + context.timeLimitMs, warmErrors);
    if (warmErrors.length) throw new Error(`warm-up: ${warmErrors.join('; ')}`);
  }
  const check = await sendCheckMessages(context, relay);
  for (const problem of check.problems) errors.push(`DKIM check: ${problem}`);

  const baseline = sink.count;
  const cpuBefore = await readCpu(sink);
  const systemBefore = await relay.cpuMs();
  const milterBefore = await relay.milterCpuMs();
  const started = performance.now();
  const deadline = started + context.timeLimitMs;
  const source = runSmtpSource(relay.port, context.sessions, context.messages, context.size, context.timeLimitMs);
  const ended = await drained(context, relay, baseline + context.messages, deadline, errors);
  const sent = await source;
  if (sent.error) errors.push(sent.error);
  const delivered = sink.count - baseline;
  const systemCpu = (await relay.cpuMs()) - systemBefore;
  const milterAfter = await relay.milterCpuMs();
  const shares = await cpuShares(sink, cpuBefore, started, systemCpu, delivered);
  const gone = relay.gone();
  if (gone) errors.push(gone);
  const elapsedMs = ended - started;
  return {
    system,
    processes,
    run,
    requested: context.messages,
    delivered,
    elapsedMs,
    msgsPerSec: (delivered / elapsedMs) * 1000,
    intakeMsgsPerSec: (context.messages / sent.elapsedMs) * 1000,
    cpuMsPerMsg: shares.cpuMsPerMsg,
    milterCpuMsPerMsg: milterBefore === null || milterAfter === null || delivered === 0 ? null : (milterAfter - milterBefore) / delivered,
    benchCpuMsPerMsg: shares.benchCpuMsPerMsg,
    machineBusyPercent: shares.machineBusyPercent,
    othersPercentOfCore: shares.othersPercentOfCore,
    check,
    errors,
  };
}
