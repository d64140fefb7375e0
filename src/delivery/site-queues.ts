import type { ShapingSettings } from '../config/policy.js';
import type { Clock } from '../shared/clock.js';
import { Fifo } from '../shared/fifo.js';
import { shapingUnder, type Backoffs } from './backoffs.js';
import type { Route } from './router.js';
import type { Throttles } from './throttle.js';
import type { WarmupCaps } from './warmup-caps.js';

/**
 * One ready queue per (site, source) (shared/design/dispatch.md; KumoMTA's ready queues, Postfix's per-destination
 * queues): a transaction waits in its site's queue, holding nothing shared, until the site's connection limit,
 * its provider's, its first MX address's, the daemon's `--concurrency` and the site's rates all allow it. A short
 * wait stays in memory; a long one (a suspension, a rate far below the queue) comes back at once as *held*: the
 * caller defers those recipients to that time without counting an attempt, and lets the claim go. Mail to other
 * sites never waits behind a site's queue.
 */
export interface AdmitRequest {
  route: Route;
  /** Recipients the transaction would carry; a rate may grant fewer (the rest wait for the next grant). */
  recipients: number;
  /** A pooled connection to the site is idle: the transaction opens none (max_connection_rate is not asked). */
  hasIdleConnection(): boolean;
}

/** Why a transaction was held: a small fixed set, so the metrics' `reason` label stays bounded. */
export const HOLD_CAUSES = ['suspend', 'throttle-rate', 'connection-wait', 'warm-up', 'stopping'] as const;
export type HoldCause = (typeof HOLD_CAUSES)[number];

export type Admission =
  | { kind: 'granted'; recipients: number; release(): void }
  | { kind: 'held'; until: number; reason: string; cause: HoldCause };

/** A site with connections in use or transactions waiting, for the metrics and the web UI's Sites table. */
export interface SiteActivity {
  route: Route;
  connections: number;
  waiting: number;
}

export interface SiteQueueOptions {
  concurrency: number;
  throttles: Throttles;
  backoffs: Backoffs;
  /** Today's warm-up cap of a pool address for the site's provider; absent: none (tests of other limits). */
  warmup?: WarmupCaps;
  clock: Clock;
  /** A transaction began to wait (it holds no slot now): the runner may claim more. */
  onWaiting?(): void;
}

/** A rate wait up to this long is kept in memory; a longer one is held (deferred). */
export const SHORT_WAIT_MS = 10_000;
/** A transaction waiting this long for a connection is held, so a stuck site does not keep its claims forever. */
export const MAX_PARK_MS = 120_000;
const PARK_SWEEP_MS = 5_000;

interface Waiter {
  request: AdmitRequest;
  resolve(admission: Admission): void;
  since: number;
}

type Decision = Admission | { kind: 'blocked'; key: string } | { kind: 'later'; ms: number };

class SiteQueue {
  readonly waiting = new Fifo<Waiter>();
  /** Its head waits for this key's connections (in `blockedOn` under it): woken when one is released. */
  blockedOn: string | null = null;
  timer: NodeJS.Timeout | undefined;

  constructor(readonly key: string) {}

  peek(): Waiter | undefined {
    return this.waiting.peek();
  }
}

/** The limit keys of a route, made once per route object (the router reuses them while nothing changed). */
interface LimitKeys {
  site: string;
  provider: string | null;
  address: string | null;
  messages: string;
  connections: string;
}

const limitKeys = new WeakMap<Route, LimitKeys>();

function keysOf(route: Route): LimitKeys {
  let keys = limitKeys.get(route);
  if (!keys) {
    const site = `site:${route.source}:${route.site}`;
    keys = {
      site,
      provider: route.provider === null ? null : `provider:${route.source}:${route.provider}`,
      // MX names an attacker invents on one address share that address's limit (shared/design/cli.md, Counting).
      address: route.firstAddress === null ? null : `ip:${route.source}:${route.firstAddress}`,
      messages: route.domainRate ? `messages:*:${route.site}` : `messages:${site}`,
      connections: `connections:${site}`,
    };
    limitKeys.set(route, keys);
  }
  return keys;
}

export class SiteQueues {
  private readonly queues = new Map<string, SiteQueue>();
  /** Connections in use per limit key: site, provider, MX address, and `shared` (--concurrency). */
  private readonly inUse = new Map<string, number>();
  /** Site queues whose head waits for a connection under a key, in the order they began waiting. */
  private readonly blockedOn = new Map<string, Set<SiteQueue>>();
  /** Per site queue, the due time handed to the last transaction held for a rate: the next one is spaced after it. */
  private readonly heldUntil = new Map<string, number>();
  /** Per site queue with connections in use, the route of its latest grant: what `activity()` shows of it. */
  private readonly activeRoutes = new Map<string, Route>();
  private waitingCount = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly options: SiteQueueOptions) {
    this.sweeper = setInterval(() => this.holdLongWaits(), PARK_SWEEP_MS);
    this.sweeper.unref();
  }

  /** Transactions waiting in a site queue (not counted as in flight by the runner: they hold nothing shared). */
  get waiting(): number {
    return this.waitingCount;
  }

  /** Connections in use per site, for `policy show` and the metrics. */
  connections(route: Route): number {
    return this.inUse.get(keysOf(route).site) ?? 0;
  }

  /** Every site with connections in use or transactions waiting: at most `--concurrency` plus the waiting queues. */
  activity(): SiteActivity[] {
    const sites = new Map<string, SiteActivity>();
    for (const [key, route] of this.activeRoutes) sites.set(key, { route, connections: this.used(key), waiting: 0 });
    for (const [key, queue] of this.queues) {
      const head = queue.peek();
      if (!head) continue;
      const site = sites.get(key);
      if (site) site.waiting = queue.waiting.length;
      else sites.set(key, { route: head.request.route, connections: 0, waiting: queue.waiting.length });
    }
    return [...sites.values()];
  }

  /** The admission at once when nothing waits for the site and it need not wait; else a promise of it. */
  admit(request: AdmitRequest): Admission | Promise<Admission> {
    const key = keysOf(request.route).site;
    let queue = this.queues.get(key);
    if (!queue) {
      const decision = this.decide(key, request, this.options.clock.now());
      if (decision.kind === 'granted' || decision.kind === 'held') return decision;
      this.queues.set(key, (queue = new SiteQueue(key)));
    }
    return new Promise((resolve) => {
      queue.waiting.push({ request, resolve, since: this.options.clock.now() });
      this.waitingCount++;
      if (queue.waiting.length === 1) this.serve(queue);
      if (queue.waiting.length > 0) this.options.onWaiting?.();
    });
  }

  /** Every waiting transaction comes back held until now: shutting down, the claims are let go. */
  close(): void {
    clearInterval(this.sweeper);
    const now = this.options.clock.now();
    for (const queue of this.queues.values()) {
      clearTimeout(queue.timer);
      for (let waiter = queue.waiting.shift(); waiter; waiter = queue.waiting.shift()) waiter.resolve({ kind: 'held', until: now, reason: 'held back: mta-queue is stopping', cause: 'stopping' });
    }
    this.waitingCount = 0;
    this.queues.clear();
  }

  /** Admits the queue's head while it can; stops at the first limit that holds it, to be woken when that changes. */
  private serve(queue: SiteQueue): void {
    clearTimeout(queue.timer);
    queue.timer = undefined;
    for (let head = queue.peek(); head; head = queue.peek()) {
      const decision = this.decide(queue.key, head.request, this.options.clock.now());
      if (decision.kind === 'blocked') return this.block(queue, decision.key);
      if (decision.kind === 'later') {
        queue.timer = setTimeout(() => this.serve(queue), decision.ms);
        return;
      }
      queue.waiting.shift();
      this.waitingCount--;
      head.resolve(decision);
    }
    if (queue.waiting.length === 0 && queue.blockedOn === null) this.queues.delete(queue.key);
  }

  private decide(siteKey: string, request: AdmitRequest, now: number): Decision {
    const { route } = request;
    const backoff = this.options.backoffs.find(route.site, route.source, now);
    if (backoff?.action === 'suspend') {
      return { kind: 'held', until: backoff.until, reason: `held back: ${route.site} suspended until ${iso(backoff.until)} by ${backoff.rule} (${backoff.reply})`, cause: 'suspend' };
    }
    const shaping: ShapingSettings = shapingUnder(backoff, route.shaping);
    const limit = shaping.connection_limit ?? Infinity;
    const names = keysOf(route);
    const keys = [siteKey];
    if (this.used(siteKey) >= limit) return { kind: 'blocked', key: siteKey };
    if (names.provider !== null && shaping.provider_connection_limit !== undefined) {
      if (this.used(names.provider) >= shaping.provider_connection_limit) return { kind: 'blocked', key: names.provider };
      keys.push(names.provider);
    }
    if (names.address !== null) {
      if (this.used(names.address) >= limit) return { kind: 'blocked', key: names.address };
      keys.push(names.address);
    }
    if (this.used('shared') >= this.options.concurrency) return { kind: 'blocked', key: 'shared' };
    keys.push('shared');

    let recipients = request.recipients;
    const allowance = route.local ? (this.options.warmup?.allowance(route.source, route, now) ?? null) : null;
    if (allowance) {
      if (allowance.left === 0) {
        const reason = `held back: warm-up cap of ${route.source} for ${allowance.provider} (${allowance.cap}/day, day ${allowance.day}) until ${iso(allowance.endsAt)}`;
        return { kind: 'held', until: allowance.endsAt, reason, cause: 'warm-up' };
      }
      recipients = Math.min(recipients, allowance.left);
    }
    const messageRate = shaping.max_message_rate;
    const messageKey = names.messages;
    if (messageRate) {
      recipients = Math.min(recipients, this.options.throttles.available(messageKey, messageRate, now));
      if (recipients === 0) {
        const answer = this.options.throttles.take(messageKey, messageRate, 1, now);
        return this.waitFor(siteKey, route.site, answer.ok ? 0 : answer.retryAfterMs, now, request.recipients * (messageRate.periodMs / messageRate.count), `its max_message_rate ${messageRate.text}`);
      }
    }
    const connectionRate = shaping.max_connection_rate;
    if (connectionRate && !request.hasIdleConnection()) {
      const answer = this.options.throttles.take(names.connections, connectionRate, 1, now);
      if (!answer.ok) return this.waitFor(siteKey, route.site, answer.retryAfterMs, now, connectionRate.periodMs / connectionRate.count, `its max_connection_rate ${connectionRate.text}`);
    }
    if (messageRate) this.options.throttles.take(messageKey, messageRate, recipients, now);
    if (allowance) this.options.warmup!.count(route.source, allowance, recipients);
    for (const key of keys) this.inUse.set(key, this.used(key) + 1);
    this.activeRoutes.set(siteKey, route);
    let released = false;
    return {
      kind: 'granted',
      recipients,
      release: () => {
        if (released) return;
        released = true;
        for (const key of keys) this.releaseKey(key);
      },
    };
  }

  /** A short rate wait stays in memory; a long one is held, spaced after the transactions held before it. */
  private waitFor(siteKey: string, site: string, ms: number, now: number, spacing: number, what: string): Decision {
    if (ms <= SHORT_WAIT_MS) return { kind: 'later', ms: Math.max(ms, 1) };
    const until = Math.max(now + ms, (this.heldUntil.get(siteKey) ?? 0) + spacing);
    this.heldUntil.set(siteKey, until);
    return { kind: 'held', until: Math.ceil(until), reason: `held back: ${site} at ${what} until ${iso(until)}`, cause: 'throttle-rate' };
  }

  private used(key: string): number {
    return this.inUse.get(key) ?? 0;
  }

  private block(queue: SiteQueue, key: string): void {
    if (queue.blockedOn === key) return;
    if (queue.blockedOn !== null) this.blockedOn.get(queue.blockedOn)?.delete(queue);
    queue.blockedOn = key;
    let blocked = this.blockedOn.get(key);
    if (!blocked) this.blockedOn.set(key, (blocked = new Set()));
    blocked.add(queue);
  }

  /** A connection under `key` is free again: the queues waiting for it are served in the order they began to wait. */
  private releaseKey(key: string): void {
    const left = this.used(key) - 1;
    if (left > 0) this.inUse.set(key, left);
    else {
      this.inUse.delete(key);
      this.activeRoutes.delete(key);
    }
    const blocked = this.blockedOn.get(key);
    if (!blocked) return;
    for (const queue of blocked) {
      blocked.delete(queue);
      queue.blockedOn = null;
      this.serve(queue);
      // Served, it took the connection (or blocked again on this key): later queues wait for the next release.
      if (this.used(key) >= 1 && queue.blockedOn === key) break;
    }
    if (blocked.size === 0) this.blockedOn.delete(key);
  }

  /** Transactions that waited MAX_PARK_MS for a connection are held: their claims go back to the spool. */
  private holdLongWaits(): void {
    const now = this.options.clock.now();
    for (const [key, until] of this.heldUntil) if (until < now) this.heldUntil.delete(key);
    for (const queue of [...this.queues.values()]) {
      let held = false;
      for (let head = queue.peek(); head && now - head.since >= MAX_PARK_MS; head = queue.peek()) {
        queue.waiting.shift();
        this.waitingCount--;
        held = true;
        const reason = `held back: waited ${Math.round((now - head.since) / 1000)}s for a connection to ${head.request.route.site}`;
        head.resolve({ kind: 'held', until: now + MAX_PARK_MS / 2, reason, cause: 'connection-wait' });
      }
      if (held && queue.waiting.length === 0) this.unblock(queue);
    }
  }

  private unblock(queue: SiteQueue): void {
    if (queue.blockedOn !== null) this.blockedOn.get(queue.blockedOn)?.delete(queue);
    queue.blockedOn = null;
    clearTimeout(queue.timer);
    this.queues.delete(queue.key);
  }
}

const iso = (time: number) => new Date(time).toISOString().replace(/\.\d{3}Z$/, 'Z');
