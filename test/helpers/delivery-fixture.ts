import { Resolver } from 'node:dns/promises';
import { readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { resolveQueueConfig, type QueueConfig } from '../../src/config/queue-config.js';
import { mxTransport } from '../../src/delivery/mx-transport.js';
import { QueueRunner, type QueueDeps } from '../../src/delivery/queue-runner.js';
import { newLeaseToken, procProcessTable } from '../../src/cli/process-table.js';
import type { TransportFactory } from '../../src/delivery/transport.js';
import { encodeRecord } from '../../src/spool/batch-file.js';
import { newRecipient } from '../../src/spool/envelope.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { MessageWriter } from '../../src/spool/message-writer.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import { startDnsServer, type DnsServer, type DnsZone } from './dns-server.js';
import { LogCapture } from './log-capture.js';
import { startMxGroup, type MxBehaviour, type MxGroup } from './mx-server.js';
import { tempDir } from './temp.js';

function crlf(message: string): Buffer {
  return Buffer.from(message.replace(/\r?\n/g, '\r\n'));
}

function newEnvelope(sender: string, recipients: string[], now: number, smtpUtf8: boolean, user: string | null = 'test') {
  return {
    version: 1 as const,
    sender,
    recipients: recipients.map(newRecipient),
    user,
    client: { address: '127.0.0.1', hostname: null, helo: 'test.example', tls: null },
    arrivedAt: now,
    smtpUtf8,
    bodyType: '8bitmime' as const,
    nextAttemptAt: now,
    bounceOf: null,
  };
}

/** A clock the test moves by hand, so retries and expiry happen without waiting. */
export class ManualClock {
  constructor(public time = Date.now()) {}
  now = (): number => this.time;
  advance(ms: number): void {
    this.time += ms;
  }
}

export interface DeliveryFixture {
  dns: DnsServer;
  mx: MxGroup;
  layout: SpoolLayout;
  clock: ManualClock;
  logs: LogCapture;
  config: QueueConfig;
  resolver: Resolver;
  /** The MX transport towards this fixture's DNS and MXes, on the fixture's clock. */
  transport: TransportFactory;
  /** Puts a message into the spool the way mta-server does; returns its queue id. */
  enqueue(sender: string, recipients: string[], message: string, options?: { smtpUtf8?: boolean; user?: string | null }): Promise<string>;
  /** Puts several messages into one batch file in incoming/ (what a group commit of concurrent sessions makes); returns their ids. */
  enqueueBatch(messages: { sender: string; recipients: string[]; message: string }[]): Promise<string[]>;
  /** What mta-queue's composition root passes a QueueRunner, towards this fixture, with a lease of its own. */
  deps(overrides?: Partial<QueueDeps>): QueueDeps;
  /** One `mta-queue --once` pass in this process: deliver what is due now, then stop. */
  runOnce(): Promise<void>;
  /** Names of the files in a spool directory. */
  files(dir: 'incoming' | 'deferred' | 'data' | 'corrupt' | 'tmp'): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * The outside world of mta-queue, made real on loopback: a DNS server answering from `zone(mxHosts)` and one
 * fake MX per behaviour, all on one port at 127.0.0.2, .3, … (the port is what --smtp-port is set to).
 */
export async function startDeliveryFixture(behaviours: MxBehaviour[], zone: (hosts: string[]) => DnsZone, overrides: Partial<QueueConfig> = {}): Promise<DeliveryFixture> {
  const { dir, cleanup } = await tempDir('mta-delivery-');
  const mx = await startMxGroup(behaviours);
  const dns = await startDnsServer(zone(mx.mxes.map((server) => server.host)));
  const layout = spoolLayout(path.join(dir, 'spool'));
  await ensureSpool(layout);
  const writer = new MessageWriter(layout);
  const clock = new ManualClock();
  const logs = new LogCapture();
  const config: QueueConfig = {
    ...resolveQueueConfig({ spool: layout.root, smtpPort: String(mx.port), dnsServers: dns.address, hostname: 'relay.test', retrySchedule: '1m,5m', maxQueueTime: '1h', connectTimeout: '2s' }, 'relay.test'),
    ...overrides,
  };
  const resolver = new Resolver({ timeout: 300, tries: 1 });
  resolver.setServers([dns.address]);
  const transport = mxTransport(config, resolver, clock);
  const deps = (overrides: Partial<QueueDeps> = {}): QueueDeps => ({ logger: logs.logger, transport, clock, processes: procProcessTable(), leaseToken: newLeaseToken(), ...overrides });
  return {
    dns,
    mx,
    layout,
    clock,
    logs,
    config,
    resolver,
    transport,
    async enqueue(sender, recipients, message, options = {}) {
      const id = newQueueId(clock.now());
      const draft = writer.create(id);
      await draft.append([crlf(message)]);
      await draft.commit(newEnvelope(sender, recipients, clock.now(), options.smtpUtf8 ?? false, options.user));
      return id;
    },
    async enqueueBatch(messages) {
      const records = messages.map(({ sender, recipients, message }) => {
        const body = crlf(message);
        return { envelope: { ...newEnvelope(sender, recipients, clock.now(), false), id: newQueueId(clock.now()), size: body.length }, body };
      });
      const name = `${records[0]!.envelope.id}.batch`;
      await writeFile(path.join(layout.dir('tmp'), name), records.flatMap(({ envelope, body }) => encodeRecord(envelope, [body])), { mode: 0o600 });
      await rename(path.join(layout.dir('tmp'), name), path.join(layout.dir('incoming'), name));
      return records.map(({ envelope }) => envelope.id);
    },
    deps,
    async runOnce() {
      const runner = new QueueRunner(config, deps());
      await runner.start({ watch: false });
      await runner.drain();
      await runner.close();
    },
    async files(name) {
      return (await readdir(layout.dir(name))).sort();
    },
    async close() {
      await Promise.all([mx.close(), dns.close()]);
      await cleanup();
    },
  };
}
