import { readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { newLeaseToken, procProcessTable } from '../../src/cli/process-table.js';
import { resolveQueueConfig, type QueueConfig } from '../../src/config/queue-config.js';
import { classifySmtpReply } from '../../src/delivery/classify.js';
import { QueueRunner, type QueueDeps } from '../../src/delivery/queue-runner.js';
import type { DomainAttempt, OutgoingMessage, Transport } from '../../src/delivery/transport.js';
import { encodeRecord } from '../../src/spool/batch-file.js';
import { newRecipient, serializeEnvelope, type Envelope } from '../../src/spool/envelope.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { scanQueue, type SpoolItem } from '../../src/spool/queue-listing.js';
import { FaultyFs } from './faulty-fs.js';
import { LogCapture } from './log-capture.js';
import { tempDir } from './temp.js';

/** A reply as a remote MX would give it; every recipient of the transaction gets it. */
export interface ScriptedReply {
  code: number;
  enhanced: string;
  text?: string;
}

export interface TransportCall {
  domain: string;
  recipients: string[];
  body: Buffer;
  /** Lets a held call finish with this reply (the default reply when none is given). */
  answer(reply?: ScriptedReply): void;
}

/**
 * The transport seam's double: records every transaction and answers it from `script`, at once or, when the
 * script says `hold`, only when the test calls `answer` (a remote that is slow, or stalled, on demand).
 */
export class TransportDouble implements Transport {
  readonly calls: TransportCall[] = [];
  private waiters: (() => void)[] = [];

  constructor(private readonly script: (domain: string, recipients: string[]) => ScriptedReply | 'hold' = () => ({ code: 250, enhanced: '2.0.0', text: 'Ok' })) {}

  readonly factory = (): Transport => this;

  async deliver(domain: string, recipients: string[], message: OutgoingMessage): Promise<DomainAttempt> {
    const body = await bodyBytes(message.body());
    const scripted = this.script(domain, recipients);
    const reply = await new Promise<ScriptedReply>((resolve) => {
      const call: TransportCall = { domain, recipients, body, answer: (given) => resolve(given ?? (scripted === 'hold' ? { code: 250, enhanced: '2.0.0' } : scripted)) };
      this.calls.push(call);
      for (const wake of this.waiters.splice(0)) wake();
      if (scripted !== 'hold') call.answer(scripted);
    });
    const outcome = { verdict: classifySmtpReply(reply.code, reply.enhanced), reply: { code: reply.code, enhanced: reply.enhanced, text: reply.text ?? 'scripted' } };
    return { outcomes: new Map(recipients.map((address) => [address, outcome])), mx: `mx.${domain}`, ip: '127.0.0.2', tls: null };
  }

  close(): void {}

  /** Resolves once `count` transactions have started. */
  async waitForCalls(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.calls.length < count) {
      if (Date.now() > deadline) throw new Error(`only ${this.calls.length} of ${count} transactions started within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
}

async function bodyBytes(body: Buffer | Readable): Promise<Buffer> {
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function crlf(text: string): Buffer {
  return Buffer.from(text.replace(/\r?\n/g, '\r\n'));
}

export function testEnvelope(id: string, sender: string, recipients: string[], size: number, now = Date.now()): Envelope {
  return {
    version: 1,
    id,
    sender,
    recipients: recipients.map(newRecipient),
    user: 'test',
    client: { address: '127.0.0.1', hostname: null, helo: 'test.example', tls: null },
    arrivedAt: now,
    size,
    smtpUtf8: false,
    bodyType: '7bit',
    nextAttemptAt: now,
    bounceOf: null,
  };
}

/** A spool in a temp directory whose file system is a FaultyFs, and QueueRunners on it wired as mta-queue's are. */
export interface QueueHarness {
  layout: SpoolLayout;
  fs: FaultyFs;
  logs: LogCapture;
  config: QueueConfig;
  /** A message with an entry of its own (`data/<id>.eml` + `incoming/<id>.json`), as a deferral or a release leaves it. */
  enqueueOwn(recipients: string[], message?: string, sender?: string): Promise<string>;
  /** Messages in one batch file in incoming/, as a group commit leaves them. */
  enqueueBatch(messages: { recipients: string[]; message?: string }[]): Promise<string[]>;
  runner(transport: TransportDouble, config?: Partial<QueueConfig>, deps?: Partial<QueueDeps>): QueueRunner;
  /** What `mta-queue --once` does: start, deliver what is due, stop. */
  runOnce(transport: TransportDouble, config?: Partial<QueueConfig>): Promise<void>;
  items(): Promise<SpoolItem[]>;
  files(dir: 'incoming' | 'deferred' | 'data' | 'held' | 'tmp' | 'deleted'): Promise<string[]>;
  close(): Promise<void>;
}

export async function startQueueHarness(): Promise<QueueHarness> {
  const { dir, cleanup } = await tempDir('mta-harness-');
  const fs = new FaultyFs();
  const layout = spoolLayout(path.join(dir, 'spool'), fs);
  await ensureSpool(layout);
  const logs = new LogCapture();
  const config = resolveQueueConfig({ spool: layout.root, hostname: 'relay.test', retrySchedule: '1m,5m', maxQueueTime: '1h', shutdownTimeout: '200ms', pollInterval: '100ms' }, 'relay.test');
  const message = (seq: string) => `From: app@shop.example\nTo: someone@example.test\nSubject: ${seq}\nX-Seq: ${seq}\n\nbody ${seq}\n`;
  let seq = 0;
  const runner = (transport: TransportDouble, overrides: Partial<QueueConfig> = {}, deps: Partial<QueueDeps> = {}) =>
    new QueueRunner({ ...config, ...overrides }, { logger: logs.logger, transport: transport.factory, processes: procProcessTable(), leaseToken: newLeaseToken(), spoolFs: fs, ...deps });
  return {
    layout,
    fs,
    logs,
    config,
    async enqueueOwn(recipients, text = message(`own-${++seq}`), sender = 'app@shop.example') {
      const id = newQueueId();
      const body = crlf(text);
      await writeFile(layout.messagePath(id), body, { mode: 0o600 });
      await writeFile(path.join(layout.dir('incoming'), `${id}.json`), serializeEnvelope(testEnvelope(id, sender, recipients, body.length)), { mode: 0o600 });
      return id;
    },
    async enqueueBatch(messages) {
      const records = messages.map(({ recipients, message: text = message(`batch-${++seq}`) }) => {
        const body = crlf(text);
        return { envelope: testEnvelope(newQueueId(), 'app@shop.example', recipients, body.length), body };
      });
      const name = `${records[0]!.envelope.id}.batch`;
      await writeFile(path.join(layout.dir('tmp'), name), records.flatMap(({ envelope, body }) => encodeRecord(envelope, [body])), { mode: 0o600 });
      await rename(path.join(layout.dir('tmp'), name), path.join(layout.dir('incoming'), name));
      return records.map(({ envelope }) => envelope.id);
    },
    runner,
    async runOnce(transport, overrides = {}) {
      const once = runner(transport, overrides);
      await once.start({ watch: false });
      await once.drain();
      await once.close();
    },
    items: () => scanQueue(spoolLayout(layout.root)),
    async files(name) {
      return (await readdir(layout.dir(name))).sort();
    },
    async close() {
      await cleanup();
    },
  };
}

/** Polls `check` until it returns true, or fails the test with `what` after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
