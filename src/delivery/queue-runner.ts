import { watch, type FSWatcher } from 'node:fs';
import { Registry } from 'prom-client';
import type { QueueConfig } from '../config/queue-config.js';
import { systemClock, type Clock } from '../shared/clock.js';
import { Fifo } from '../shared/fifo.js';
import { ClaimReleasedError, CorruptSpoolEntryError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { isLoopback, startMetricsServer, type MetricsServer } from '../shared/metrics.js';
import type { ProcessTable } from '../spool/claim-lease.js';
import { ensureSpool, spoolLayout } from '../spool/layout.js';
import type { SpoolFs } from '../spool/spool-fs.js';
import { pruneTombstones } from '../spool/tombstones.js';
import { MessageWriter } from '../spool/message-writer.js';
import { queueIdTime } from '../spool/queue-id.js';
import { deferredName, type Candidate, type DeferredEntry } from '../spool/entry-names.js';
import { QueueStore, type Claim, type ClaimedFile, type ClaimedMessage } from '../spool/queue-store.js';
import { deliverClaimedMessage, type DeliveryContext } from './deliver-message.js';
import { DeliveryMetrics, type QueueSnapshot } from './delivery-metrics.js';
import type { ShapingState } from './shaping-metrics.js';
import { sitesReport } from './site-report.js';
import type { SitesReport } from '../shared/site-status.js';
import { DueIndex } from './due-index.js';
import { DeferredWatch } from './deferred-watch.js';
import { Backoffs } from './backoffs.js';
import { WarmupCaps } from './warmup-caps.js';
import { WarmupStore } from '../spool/warmup-store.js';
import { BackoffStore } from '../spool/backoff-store.js';
import { Router } from './router.js';
import { SiteQueues } from './site-queues.js';
import { LocalThrottles } from './throttle.js';
import type { TransportFactory } from './transport.js';
import { builtInPolicy, type Policy } from '../config/policy.js';

export interface QueueDeps {
  logger: Logger;
  /** The wire (delivery/mx-transport `mxTransport` in production, a double in tests). */
  transport: TransportFactory;
  clock?: Clock;
  /** This process and the others: who owns which claim directory (spool/claim-lease.ts). */
  processes: ProcessTable;
  /** Makes this process's claim directory name unique (`active/<pid>-<token>/`). */
  leaseToken: string;
  /** Every spool call goes through it (a fault-injecting double in tests); node's file system by default. */
  spoolFs?: SpoolFs;
  /** Where the metrics go (shared/metrics createMetricsRegistry); a private registry when absent. Served on --metrics. */
  metrics?: Registry;
  /** The shaping policy in force (`--policy`, reloaded on SIGHUP by the caller); the built-in one when absent. */
  policy?: () => Policy;
}

/**
 * Every claim renames out of incoming/ and fires a watch event: during a big drain, rescanning on each would
 * re-read a directory of thousands of names hundreds of times a second. Events within this window share a scan.
 */
const WATCH_SCAN_DELAY_MS = 50;
/**
 * Messages claimed at once, per `--concurrency` slot. More than one per slot: a message waiting for a slot at its
 * destination must not keep others, for other destinations, from being claimed (Postfix's active queue holds far
 * more messages than it has delivery agents).
 */
const CLAIMED_PER_SLOT = 10;
/**
 * Transactions waiting in site queues hold no slot and are not counted against the claims above, so mail for an
 * idle site is claimed while another site's queue is long (no head-of-line blocking). Up to this many times the
 * claims above may wait so: an envelope each in memory (no body), and claimed, so out of reach of `delete` and
 * `hold` until they leave (a site that keeps them 2 minutes gives them back, held back).
 */
const WAITING_PER_CLAIM = 5;

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
  /** Ids this process is busy with (ready, being claimed or delivered): a second listing does not add them. */
  private readonly known = new Set<string>();
  /** Claiming and delivering work under way, each counted once (a batch and its first message share an id). */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly claims = new Map<string, Claim>();
  /** Candidates being claimed and read right now (counted as active until their messages are in `claims`). */
  private claiming = 0;
  /** Claimed files that could not be read (EMFILE, EIO), and claimed messages whose postpone failed: tried again later. */
  private readonly retries = new Set<NodeJS.Timeout>();
  /** Claimed files waiting to be read again (the first read failed): given back to incoming/ at shutdown. */
  private readonly unread = new Set<ClaimedFile>();
  private stranded = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private watcher: FSWatcher | undefined;
  /** What other mta-queue processes on the spool defer (ours go into the index directly). */
  private deferredWatch: DeferredWatch | undefined;
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
  private readonly backoffs: Backoffs;
  private readonly warmup: WarmupCaps;
  private pumpScheduled = false;

  constructor(
    private readonly config: QueueConfig,
    private readonly deps: QueueDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    const layout = spoolLayout(config.spool, deps.spoolFs);
    this.store = new QueueStore(layout, deps.processes, deps.leaseToken);
    this.registry = deps.metrics ?? new Registry();
    this.metrics = new DeliveryMetrics(this.registry, () => this.queueSnapshot(), () => this.clock.now(), () => this.shapingState());
    const transport = deps.transport({ onDnsFailure: (permanent) => this.metrics.dnsFailure(permanent), logger: deps.logger });
    const policy = deps.policy ?? ((fallback) => () => fallback)(builtInPolicy({ connection_limit: config.maxConnectionsPerDestination }));
    // In the spool: they survive a restart, and other processes and `mta-queue policy resume` see them.
    this.backoffs = new Backoffs(new BackoffStore(layout), deps.logger);
    this.warmup = new WarmupCaps(new WarmupStore(layout), policy, deps.logger);
    this.context = {
      store: this.store,
      writer: new MessageWriter(layout),
      transport,
      router: new Router({ transport, policy, relayHost: config.relayHost !== null, backoffs: this.backoffs, warmup: this.warmup, clock: this.clock }),
      sites: new SiteQueues({ concurrency: config.concurrency, throttles: new LocalThrottles(), backoffs: this.backoffs, warmup: this.warmup, clock: this.clock, onWaiting: () => this.pumpSoon() }),
      backoffs: this.backoffs,
      policy,
      hostname: config.hostname,
      clock: this.clock,
      logger: deps.logger,
      retrySchedule: config.retrySchedule,
      maxQueueTime: config.maxQueueTime,
      metrics: this.metrics,
    };
  }

  /** This process's claim directory, `active/<pid>-<token>/`. */
  get claimDirectory(): string {
    return this.store.activeDir;
  }

  /** Where /metrics and /healthz are served (`127.0.0.1:9588`, the bound port) once started, null without --metrics. */
  get metricsAddress(): string | null {
    return this.metricsServer?.address ?? null;
  }

  /** Recovers abandoned claims and indexes the queue; `watch` keeps looking for new mail until close(). */
  async start(options: { watch: boolean }): Promise<void> {
    await ensureSpool(this.store.layout);
    await this.startMetrics();
    await this.store.takeLease();
    await this.recoverClaims(true);
    await this.backoffs.load(this.clock.now());
    await this.warmup.load(this.clock.now());
    // Watched before the first read, so nothing deferred meanwhile falls between the two.
    if (options.watch) this.watchDeferred();
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
    this.timers.push(setInterval(() => void this.upkeep().then(() => this.scanIncoming()), this.config.pollInterval));
  }

  private watchDeferred(): void {
    this.deferredWatch = new DeferredWatch({
      layout: this.store.layout,
      logger: this.deps.logger,
      busy: (id) => this.known.has(id),
      found: (entry) => {
        this.addDeferred(entry.id, entry.due);
        this.scheduleWake();
      },
      rescan: () => this.rescanDeferred(),
    });
    this.deferredWatch.start();
  }

  private async recoverClaims(atStart: boolean): Promise<void> {
    const recovered = await this.store.recoverAbandonedClaims(this.clock.now(), { atStart });
    if (recovered.length) this.deps.logger.warn({ event: 'recovered', count: recovered.length, queueIds: recovered.slice(0, 50) }, 'recovered claims of a stopped process');
  }

  /**
   * Every poll: the lease's heartbeat, the claims of processes that died meanwhile (another mta-queue, or an
   * admin command splitting a batch), anything in our own claim directory that no claim accounts for, and the
   * tombstones no batch needs any more. A failure here is logged and tried again at the next poll.
   */
  private async upkeep(): Promise<void> {
    const log = this.deps.logger;
    try {
      if (!(await this.store.refreshLease(this.clock.now()))) log.error({ event: 'lease-lost', dir: this.store.activeDir }, 'our claim directory was taken as abandoned (the process was stopped too long); its claims are delivered by whoever took them');
      await this.recoverClaims(false);
      this.stranded = (await this.store.strandedClaims()).length;
      if (this.stranded > 0) {
        const moved = await this.store.giveBackStranded();
        log.warn({ event: 'stranded', count: this.stranded, givenBack: moved.length, files: moved.slice(0, 50) }, 'claims no delivery accounted for given back to incoming/');
      }
      const unremoved = await this.store.removeSettledBatches();
      if (unremoved.length) log.error({ event: 'spool-error', count: unremoved.length, err: unremoved[0] }, 'batch files whose messages are all settled could not be removed; tried again at the next poll');
      await pruneTombstones(this.store.layout);
      // `mta-queue policy resume`, or another process's back-off.
      await this.backoffs.refresh(this.clock.now());
      await this.warmup.refresh(this.clock.now());
    } catch (error) {
      log.error({ event: 'scan-failed', err: error }, 'could not keep active/ in order; tried again at the next poll');
    }
  }

  /** Resolves once nothing is ready or in flight (what `--once` waits for). */
  async drain(): Promise<void> {
    for (;;) {
      await this.scanIncoming();
      this.pump();
      if (this.idle()) return;
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
    this.deferredWatch?.close();
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.wakeTimer);
    clearTimeout(this.scanTimer);
    // Transactions waiting for their site come back held until now: their claims are released below.
    this.context.sites.close();
    const pending = [...this.inFlight];
    for (const retry of this.retries) clearTimeout(retry);
    this.retries.clear();
    this.deps.logger.info({ event: 'stopping', inFlight: pending.length }, 'stopping: no new claims');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), this.config.shutdownTimeout)));
    await Promise.race([Promise.all(pending), timedOut]);
    clearTimeout(timer);
    const released = await this.releaseClaims();
    await this.warmup.flush();
    await this.store.removeSettledBatches();
    for (const claimed of this.unread) this.store.forget(claimed);
    // What no claim accounts for any more (a file whose reading failed, waiting to be tried again) goes back too.
    await this.store.giveBackStranded().catch((error: unknown) => this.deps.logger.warn({ event: 'release-failed', err: error }, 'claims kept; recovered at the next start'));
    await this.store.dropLease().catch(() => undefined);
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
      active: this.claims.size + this.claiming,
      oldestArrivedAt: oldest === undefined ? null : queueIdTime(oldest),
      stranded: this.stranded,
    };
  }

  /** The site queues and back-offs as they are now, for the shaping gauges (at scrape time only). */
  private shapingState(): ShapingState {
    const sites = this.context.sites;
    return { activity: sites.activity(), backoffs: this.backoffs.inForce, waiting: sites.waiting, policy: this.context.policy(), now: this.clock.now() };
  }

  /** The web UI's Sites table: the sites busy or backed off now, bounded (delivery/site-report.ts). */
  sitesReport(): SitesReport {
    const { activity, backoffs, policy, now } = this.shapingState();
    return sitesReport(activity, backoffs, policy, now);
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
        const start = entries.length ? (this.deps.processes.self.pid * 7919) % entries.length : 0;
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

  /** A transaction began to wait in its site queue: room for another claim, once this turn of the loop is done. */
  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    const limit = this.config.concurrency * CLAIMED_PER_SLOT;
    const sites = this.context.sites;
    // A message waiting in a site queue (each waiting transaction counted as one) leaves its claim free for another.
    while (!this.stopping && this.inFlight.size - Math.min(sites.waiting, this.inFlight.size) < limit && sites.waiting < limit * WAITING_PER_CLAIM) {
      const message = this.claimedReady.shift();
      if (message) {
        this.startWork(this.deliver(message));
        continue;
      }
      const candidate = this.ready.shift();
      if (!candidate) break;
      if (candidate.dir === 'deferred') this.readyDeferred--;
      this.startWork(this.run(candidate));
    }
    this.wakeIfIdle();
  }

  private startWork(work: Promise<void>): void {
    const tracked = work.finally(() => {
      this.inFlight.delete(tracked);
      this.pump();
    });
    this.inFlight.add(tracked);
  }

  private idle(): boolean {
    return this.ready.length === 0 && this.claimedReady.length === 0 && this.inFlight.size === 0;
  }

  private wakeIfIdle(): void {
    if (this.idle()) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Claims a candidate and queues its messages (one, or every message of a batch) for delivery slots. */
  private async run(candidate: Candidate): Promise<void> {
    let claimed: ClaimedFile | undefined;
    this.claiming++;
    try {
      claimed = await this.store.claim(candidate);
      if (claimed) await this.openClaimed(claimed);
    } catch (error) {
      await this.handleFailure(candidate.id, claimed, error);
    } finally {
      this.claiming--;
      if (!this.claims.has(candidate.id)) this.known.delete(candidate.id);
    }
  }

  private async openClaimed(claimed: ClaimedFile): Promise<void> {
    for (const message of await this.store.open(claimed)) {
      this.known.add(message.claim.id);
      this.claims.set(message.claim.id, message.claim);
      this.claimedReady.push(message);
    }
  }

  private async deliver(message: ClaimedMessage): Promise<void> {
    const { claim, envelope } = message;
    let settled = true;
    try {
      const result = await deliverClaimedMessage(claim, envelope, this.context);
      if (result === 'deferred') this.addDeferred(envelope.id, envelope.nextAttemptAt);
    } catch (error) {
      settled = await this.handleFailure(claim.id, message, error);
    } finally {
      if (settled) {
        this.claims.delete(claim.id);
        this.known.delete(claim.id);
      }
    }
  }

  /** Logs a failure on our side and puts the claim back for a later try; false when it is still ours to retry. */
  private async handleFailure(id: string, claimed: ClaimedFile | ClaimedMessage | undefined, error: unknown): Promise<boolean> {
    const log = this.deps.logger;
    if (error instanceof ClaimReleasedError) {
      log.warn({ event: 'late-outcome', queueId: id }, 'delivery finished after its claim was given back at shutdown; outcome dropped, the message is delivered again');
      return true;
    }
    if (error instanceof CorruptSpoolEntryError) {
      log.error({ event: 'corrupt', queueId: id, reason: error.message }, 'unreadable spool entry moved to corrupt/');
      return true;
    }
    const file = claimed && 'claim' in claimed ? claimed.claim : claimed;
    if (file && (error as NodeJS.ErrnoException).code === 'ENOENT' && (error as NodeJS.ErrnoException).path === this.store.layout.messagePath(file.id)) {
      try {
        await this.store.moveToCorrupt(file);
        log.error({ event: 'corrupt', queueId: id, reason: 'message file missing' }, 'envelope without its message moved to corrupt/');
      } catch (moveError) {
        log.error({ event: 'spool-error', queueId: id, err: moveError }, 'envelope without its message could not be moved aside; given back at the next poll');
        this.store.forget(file);
      }
      return true;
    }
    log.error({ event: 'delivery-error', queueId: id, err: error }, 'delivery failed on our side; will retry');
    if (!claimed) return true;
    if (!('claim' in claimed)) {
      // Claimed, but not readable now (EMFILE, EIO): it stays ours and is opened again after the back-off.
      this.unread.add(claimed);
      this.retryLater(() => this.startWork(this.reopen(claimed)));
      return true;
    }
    const due = this.clock.now() + this.config.localErrorBackoff;
    try {
      // With the states this attempt reached, so a recipient it delivered is not delivered again.
      await this.store.whileHeld(claimed.claim, () => this.store.postpone(claimed.claim, claimed.envelope, due));
      this.addDeferred(id, due);
      return true;
    } catch (postponeError) {
      if (postponeError instanceof ClaimReleasedError) return true;
      log.error({ event: 'spool-error', queueId: id, err: postponeError }, 'could not postpone; the message stays claimed and is tried again after the back-off');
      this.retryLater(() => {
        // Its entry already got as far as the queue (a rename succeeded, a sync after it failed): only the postpone
        // is left to do, and delivering it again from the claim would send it twice.
        if (claimed.claim.placedAt) return this.startWork(this.finishPostpone(claimed, postponeError));
        this.claimedReady.push(claimed);
        this.pump();
      });
      return false;
    }
  }

  private async finishPostpone(message: ClaimedMessage, error: unknown): Promise<void> {
    if (!(await this.handleFailure(message.claim.id, message, error))) return;
    this.claims.delete(message.claim.id);
    this.known.delete(message.claim.id);
  }

  private async reopen(claimed: ClaimedFile): Promise<void> {
    this.unread.delete(claimed);
    try {
      await this.openClaimed(claimed);
    } catch (error) {
      await this.handleFailure(claimed.id, claimed, error);
    }
  }

  private retryLater(retry: () => void): void {
    const timer = setTimeout(() => {
      this.retries.delete(timer);
      if (!this.stopping) retry();
    }, this.config.localErrorBackoff);
    timer.unref();
    this.retries.add(timer);
  }
}
