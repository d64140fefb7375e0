import { watch, type FSWatcher } from 'node:fs';
import { Registry } from 'prom-client';
import type { QueueConfig } from '../config/queue-config.js';
import { systemClock, type Clock } from '../shared/clock.js';
import { Fifo } from '../shared/fifo.js';
import { CorruptSpoolEntryError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { isLoopback, startMetricsServer, type MetricsServer } from '../shared/metrics.js';
import { ensureSpool, spoolLayout } from '../spool/layout.js';
import { MessageWriter } from '../spool/message-writer.js';
import { queueIdTime } from '../spool/queue-id.js';
import { deferredName, isBatchName, type Candidate, type DeferredEntry } from '../spool/entry-names.js';
import { QueueStore, type Claim, type ClaimedFile, type ClaimedMessage } from '../spool/queue-store.js';
import { deliverClaimedMessage, type DeliveryContext } from './deliver-message.js';
import { DeliveryMetrics, type QueueSnapshot } from './delivery-metrics.js';
import { CachingResolver } from './dns-cache.js';
import { DueIndex } from './due-index.js';
import { MxTransport } from './mx-transport.js';
import type { DnsResolver } from './resolve-mx.js';

export interface QueueDeps {
  logger: Logger;
  resolver: DnsResolver;
  clock?: Clock;
  /** This process's id: names its claim directory. */
  pid: number;
  /** Whether another mta-queue that left claims behind is still running. */
  isAlive(pid: number): boolean;
  /** Where the metrics go (shared/metrics createMetricsRegistry); a private registry when absent. Served on --metrics. */
  metrics?: Registry;
}

/** How long DNS answers are reused; short, since node's resolver gives no TTL for MX records. */
const DNS_CACHE_MS = 60_000;
/** How often the deferred/ index is re-read, to see what other mta-queue processes deferred. */
const DEFERRED_RESCAN_MS = 60_000;
/**
 * Every claim renames out of incoming/ and fires a watch event: during a big drain, rescanning on each would
 * re-read a directory of thousands of names hundreds of times a second. Events within this window share a scan.
 */
const WATCH_SCAN_DELAY_MS = 50;
/** A message whose delivery failed for a reason of ours (not the remote's) waits this long before the next try. */
const LOCAL_ERROR_BACKOFF_MS = 60_000;

/**
 * The delivery daemon's scheduler: finds what is due (new arrivals by file-system events plus a poll, deferred
 * mail by its due time), claims it, and runs up to `concurrency` deliveries at once.
 */
export class QueueRunner {
  private readonly store: QueueStore;
  private readonly context: DeliveryContext;
  private readonly clock: Clock;
  private readonly due = new DueIndex();
  private readonly ready = new Fifo<Candidate>();
  /** Messages of claimed batches waiting for a delivery slot; they go before anything not yet claimed. */
  private readonly claimedReady = new Fifo<ClaimedMessage>();
  private readonly known = new Set<string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly claims = new Map<string, Claim>();
  private readonly timers: NodeJS.Timeout[] = [];
  private watcher: FSWatcher | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private scanTimer: NodeJS.Timeout | undefined;
  private deferredDuringRescan: DeferredEntry[] | undefined;
  private scanning: Promise<void> | undefined;
  private scanAgain: Promise<void> | undefined;
  private stopping = false;
  private idleWaiters: (() => void)[] = [];
  private readonly registry: Registry;
  private readonly metrics: DeliveryMetrics;
  private metricsServer: MetricsServer | null = null;
  /** How many of `ready` sit in deferred/ (promoted when due): the rest are in incoming/. */
  private readyDeferred = 0;

  constructor(
    private readonly config: QueueConfig,
    private readonly deps: QueueDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    const layout = spoolLayout(config.spool);
    this.store = new QueueStore(layout, deps.pid);
    this.registry = deps.metrics ?? new Registry();
    this.metrics = new DeliveryMetrics(this.registry, () => this.queueSnapshot(), () => this.clock.now());
    this.context = {
      store: this.store,
      writer: new MessageWriter(layout),
      transport: new MxTransport({
        resolver: new CachingResolver(deps.resolver, DNS_CACHE_MS, () => this.clock.now()),
        port: config.smtpPort,
        ehloName: config.hostname,
        maxConnectionsPerDestination: config.maxConnectionsPerDestination,
        timeouts: { connect: config.connectTimeout, greeting: config.connectTimeout, socket: 5 * 60_000 },
        idleTimeout: 10_000,
        onDnsFailure: (permanent) => this.metrics.dnsFailure(permanent),
      }),
      hostname: config.hostname,
      clock: this.clock,
      logger: deps.logger,
      retrySchedule: config.retrySchedule,
      maxQueueTime: config.maxQueueTime,
      metrics: this.metrics,
    };
  }

  /** Where /metrics and /healthz are served (`127.0.0.1:9588`, the bound port) once started, null without --metrics. */
  get metricsAddress(): string | null {
    return this.metricsServer?.address ?? null;
  }

  /** Recovers abandoned claims and indexes the queue; `watch` keeps looking for new mail until close(). */
  async start(options: { watch: boolean }): Promise<void> {
    await ensureSpool(this.store.layout);
    await this.startMetrics();
    await this.recoverClaims(true);
    await this.rescanDeferred();
    await this.scanIncoming();
    this.deps.logger.info(
      { event: 'started', spool: this.store.layout.root, deferred: this.due.size, ready: this.ready.length, concurrency: this.config.concurrency, metrics: this.metricsAddress },
      'mta-queue started',
    );
    if (!options.watch) return;
    this.watcher = watch(this.store.layout.dir('incoming'), () => this.scanSoon());
    this.watcher.on('error', (error) => this.deps.logger.warn({ event: 'watch-error', err: error }, 'spool watch failed, polling only'));
    // The poll also recovers claims of processes that died meanwhile (another mta-queue, or an admin command
    // splitting a batch), so they do not wait for the next start.
    this.timers.push(setInterval(() => void this.recoverClaims(false).then(() => this.scanIncoming()), this.config.pollInterval));
    this.timers.push(setInterval(() => void this.rescanDeferred(), DEFERRED_RESCAN_MS));
  }

  private async recoverClaims(atStart: boolean): Promise<void> {
    try {
      const recovered = await this.store.recoverAbandonedClaims(this.deps.isAlive, { includeOwnPid: atStart });
      if (recovered.length) this.deps.logger.warn({ event: 'recovered', count: recovered.length, queueIds: recovered.slice(0, 50) }, 'recovered claims of a stopped process');
    } catch (error) {
      if (atStart) throw error;
      this.deps.logger.error({ event: 'scan-failed', err: error }, 'could not read active/');
    }
  }

  /** Resolves once nothing is ready or in flight (what `--once` waits for). */
  async drain(): Promise<void> {
    for (;;) {
      await this.scanIncoming();
      this.pump();
      if (this.ready.length === 0 && this.claimedReady.length === 0 && this.inFlight.size === 0) return;
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }

  /**
   * Stops claiming; deliveries in flight get `shutdownTimeout` to finish. Claims still held after that (and the
   * messages of claimed batches not started yet) are put back in incoming/ for another process (or the next
   * start): the delivery may be repeated, never lost.
   */
  async close(): Promise<void> {
    this.stopping = true;
    this.watcher?.close();
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.wakeTimer);
    clearTimeout(this.scanTimer);
    const pending = [...this.inFlight.values()];
    this.deps.logger.info({ event: 'stopping', inFlight: pending.length }, 'stopping: no new claims');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), this.config.shutdownTimeout)));
    await Promise.race([Promise.all(pending), timedOut]);
    clearTimeout(timer);
    const released = await this.releaseClaims();
    this.context.transport.close();
    await this.metricsServer?.close();
    this.deps.logger.info({ event: 'stopped', released }, 'mta-queue stopped');
  }

  private async startMetrics(): Promise<void> {
    const address = this.config.metrics;
    if (!address) return;
    this.metricsServer = await startMetricsServer(this.registry, address, {
      healthy: () => !this.stopping,
      onError: (error) => this.deps.logger.warn({ event: 'metrics-error', err: error }, 'metrics endpoint error'),
    });
    if (!isLoopback(address.host)) this.deps.logger.warn({ event: 'metrics-exposed', metrics: this.metricsAddress }, 'metrics served beyond loopback, without authentication');
  }

  /** For the queue gauges, at scrape time only: counts the runner keeps anyway, and one pass over the ids it holds. */
  private queueSnapshot(): QueueSnapshot {
    let oldest = this.due.oldestId();
    for (const id of this.known) if (oldest === undefined || id < oldest) oldest = id;
    return {
      incoming: this.ready.length - this.readyDeferred,
      deferred: this.due.size + this.readyDeferred,
      active: this.inFlight.size + this.claimedReady.length,
      oldestArrivedAt: oldest === undefined ? null : queueIdTime(oldest),
    };
  }

  private async releaseClaims(): Promise<string[]> {
    const released: string[] = [];
    for (const claim of [...this.claims.values()]) {
      try {
        await this.store.release(claim);
        released.push(claim.id);
      } catch (error) {
        this.deps.logger.warn({ event: 'release-failed', queueId: claim.id, err: error }, 'claim kept; recovered at the next start');
      }
    }
    return released;
  }

  private scanSoon(): void {
    // With a backlog ready, a new arrival waits behind it anyway: the poll finds it in time.
    if (this.scanTimer || this.stopping || this.ready.length > 0) return;
    this.scanTimer = setTimeout(() => {
      this.scanTimer = undefined;
      void this.scanIncoming();
    }, WATCH_SCAN_DELAY_MS);
  }

  private scanIncoming(): Promise<void> {
    // One scan at a time; requests while one runs share a single follow-up scan, so nothing that arrived
    // during the listing waits for the next poll.
    if (this.scanning) {
      this.scanAgain ??= this.scanning.then(() => {
        this.scanAgain = undefined;
        return this.scanIncoming();
      });
      return this.scanAgain;
    }
    this.scanning = (async () => {
      try {
        const { entries, stray } = await this.store.listIncoming();
        // Processes sharing a spool read the same listing; each starts at its own point in it, so they do
        // not race for the same entries one after another (a lost race is a wasted rename).
        const start = entries.length ? (this.deps.pid * 7919) % entries.length : 0;
        for (let i = 0; i < entries.length; i++) this.enqueue({ dir: 'incoming', ...entries[(start + i) % entries.length]! });
        for (const name of stray) {
          await this.store.quarantine('incoming', name);
          this.deps.logger.error({ event: 'corrupt', file: `incoming/${name}`, reason: 'not a queue entry name' }, 'stray file moved to corrupt/');
        }
        this.promoteDue();
      } catch (error) {
        this.deps.logger.error({ event: 'scan-failed', err: error }, 'could not read the spool');
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning.then(() => this.pump());
  }

  private addDeferred(id: string, due: number): void {
    const entry = { id, due, name: deferredName(id, due) };
    this.due.add(entry);
    this.deferredDuringRescan?.push(entry);
  }

  private async rescanDeferred(): Promise<void> {
    try {
      // Entries deferred while the directory was being read may be missing from the listing: keep them.
      this.deferredDuringRescan = [];
      const listed = await this.store.listDeferred();
      const meanwhile = this.deferredDuringRescan;
      this.deferredDuringRescan = undefined;
      this.due.replaceAll([...listed, ...meanwhile].filter((entry) => !this.known.has(entry.id)));
      this.promoteDue();
      this.pump();
    } catch (error) {
      this.deps.logger.error({ event: 'scan-failed', err: error }, 'could not read deferred/');
    }
  }

  private promoteDue(): void {
    for (const entry of this.due.takeDue(this.clock.now())) this.enqueue({ dir: 'deferred', name: entry.name, id: entry.id });
    this.scheduleWake();
  }

  private scheduleWake(): void {
    clearTimeout(this.wakeTimer);
    const next = this.due.nextDue();
    if (next === undefined || this.stopping) return;
    this.wakeTimer = setTimeout(() => (this.promoteDue(), this.pump()), Math.min(Math.max(next - this.clock.now(), 0), 2 ** 31 - 1));
    this.wakeTimer.unref();
  }

  private enqueue(candidate: Candidate): void {
    if (this.known.has(candidate.id)) return;
    this.known.add(candidate.id);
    if (candidate.dir === 'deferred') this.readyDeferred++;
    this.ready.push(candidate);
  }

  private pump(): void {
    while (!this.stopping && this.inFlight.size < this.config.concurrency) {
      const message = this.claimedReady.shift();
      if (message) {
        this.startWork(message.claim.id, this.deliver(message));
        continue;
      }
      const candidate = this.ready.shift();
      if (!candidate) break;
      if (candidate.dir === 'deferred') this.readyDeferred--;
      this.startWork(candidate.id, this.run(candidate));
    }
    this.wakeIfIdle();
  }

  private startWork(id: string, work: Promise<void>): void {
    this.inFlight.set(
      id,
      work.finally(() => {
        this.inFlight.delete(id);
        this.known.delete(id);
        this.pump();
      }),
    );
  }

  private wakeIfIdle(): void {
    if (this.ready.length === 0 && this.claimedReady.length === 0 && this.inFlight.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Claims a candidate and queues its messages (one, or every message of a batch) for delivery slots. */
  private async run(candidate: Candidate): Promise<void> {
    let claimed: ClaimedFile | undefined;
    try {
      claimed = await this.store.claim(candidate);
      if (!claimed) return; // another process took it first
      for (const message of await this.store.open(claimed)) {
        this.known.add(message.claim.id);
        this.claims.set(message.claim.id, message.claim);
        this.claimedReady.push(message);
      }
    } catch (error) {
      await this.handleFailure(candidate.id, claimed, error);
    }
  }

  private async deliver({ claim, envelope }: ClaimedMessage): Promise<void> {
    try {
      const result = await deliverClaimedMessage(claim, envelope, this.context);
      if (result === 'deferred') this.addDeferred(envelope.id, envelope.nextAttemptAt);
    } catch (error) {
      await this.handleFailure(claim.id, claim, error);
    } finally {
      this.claims.delete(claim.id);
    }
  }

  private async handleFailure(id: string, claimed: ClaimedFile | Claim | undefined, error: unknown): Promise<void> {
    const log = this.deps.logger;
    if (error instanceof CorruptSpoolEntryError) {
      log.error({ event: 'corrupt', queueId: id, reason: error.message }, 'unreadable spool entry moved to corrupt/');
      return;
    }
    if (claimed && (error as NodeJS.ErrnoException).code === 'ENOENT' && (error as NodeJS.ErrnoException).path === this.store.layout.messagePath(claimed.id)) {
      try {
        await this.store.moveToCorrupt(claimed);
        log.error({ event: 'corrupt', queueId: id, reason: 'message file missing' }, 'envelope without its message moved to corrupt/');
      } catch (moveError) {
        log.error({ event: 'spool-error', queueId: id, err: moveError }, 'envelope without its message could not be moved aside; the claim is recovered at the next start');
      }
      return;
    }
    log.error({ event: 'delivery-error', queueId: id, err: error }, 'delivery failed on our side; will retry');
    if (!claimed) return;
    if (!('source' in claimed) && isBatchName(claimed.path)) {
      log.error({ event: 'spool-error', queueId: id, file: claimed.path }, 'claimed batch could not be read; it is recovered at the next start');
      return;
    }
    const due = this.clock.now() + LOCAL_ERROR_BACKOFF_MS;
    try {
      await this.store.postpone(claimed, due);
      this.addDeferred(claimed.id, due);
    } catch (err) {
      log.error({ event: 'spool-error', queueId: id, err }, 'could not postpone; the claim is recovered at the next start');
    }
  }
}
