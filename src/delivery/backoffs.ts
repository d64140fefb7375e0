import { parseShapingTable, shapingTable, type BackoffRule, type ShapingSettings } from '../config/policy.js';
import type { Logger } from '../shared/logger.js';
import { BackoffStore, treatingCorruptAsNone } from '../spool/backoff-store.js';
import { formatReply, type RecordedReply } from '../spool/envelope.js';

/**
 * Back-offs in force per (site, source): what a receiver told us to do (the policy's rules matched against its
 * replies) and what the site's own failures imposed (the connection breaker). Kept in the spool through the
 * store, so they survive a restart and other processes and `mta-queue policy resume` see them.
 */
export interface ActiveBackoff {
  site: string;
  source: string;
  rule: string;
  action: 'suspend' | 'throttle';
  until: number;
  reply: string;
  /** For a throttle: the settings that replace the site's meanwhile. */
  shaping: ShapingSettings;
}

/** A site's settings while `backoff` is in force: a throttle's replace the site's own, key by key. */
export function shapingUnder(backoff: ActiveBackoff | undefined, shaping: ShapingSettings): ShapingSettings {
  return backoff ? { ...shaping, ...backoff.shaping } : shaping;
}

/** The breaker's rule name, as `policy show` and the logs print it. */
export const CONNECTION_FAILURES_RULE = 'connection-failures';
const DEFAULT_FAILURES_BEFORE_DELAY = 10;
const DEFAULT_FAILURE_DELAY_MS = 5 * 60_000;
const REPLY_KEPT = 300;

const keyOf = (site: string, source: string) => `${site}\u0000${source}`;

export class Backoffs {
  private readonly active = new Map<string, ActiveBackoff>();
  /** When each N/hour rule matched lately, per site, source and rule. */
  private readonly matches = new Map<string, number[]>();
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly store: BackoffStore | null,
    private readonly logger: Logger,
  ) {}

  /** The back-off for (site, source) at `now`, if one is in force. */
  find(site: string, source: string, now: number): ActiveBackoff | undefined {
    if (this.active.size === 0) return undefined;
    const key = keyOf(site, source);
    const backoff = this.active.get(key);
    if (!backoff || backoff.until > now) return backoff;
    this.active.delete(key);
    this.logger.info({ event: 'backoff-ended', site, source, rule: backoff.rule }, `back-off of ${site} ended`);
    return undefined;
  }

  /** Nothing to count: a delivered, reachable transaction changes nothing here (the hot path skips the sink). */
  get quiet(): boolean {
    return this.failures.size === 0;
  }

  get inForce(): ActiveBackoff[] {
    return [...this.active.values()];
  }

  /** Reads the spool's back-offs (at start; then whenever the file changed: another process, `policy resume`). */
  async load(now: number): Promise<void> {
    if (!this.store) return;
    const store = this.store;
    const records = await treatingCorruptAsNone(() => store.read(now), [], this.logger);
    const before = new Map(this.active);
    this.active.clear();
    for (const record of records) {
      const shaping = parseShapingTable(record.shaping, (problem) => this.logger.warn({ event: 'backoff-unreadable', site: record.site, problem }, 'a back-off setting in the spool was not understood and is ignored'));
      this.active.set(keyOf(record.site, record.source), { ...record, shaping });
    }
    for (const [key, backoff] of before) {
      if (!this.active.has(key) && backoff.until > now) this.logger.info({ event: 'backoff-lifted', site: backoff.site, source: backoff.source, rule: backoff.rule }, `back-off of ${backoff.site} lifted`);
    }
  }

  async refresh(now: number): Promise<void> {
    if (this.store && (await this.store.changed())) await this.load(now);
  }

  /** A reply from `site`: the first rule that matches it may start a back-off (now, or at its N/hour threshold). */
  async observeReply(site: string, source: string, reply: RecordedReply, rules: readonly BackoffRule[], now: number, queueId: string): Promise<void> {
    if (reply.code !== null && reply.code < 400) return;
    const text = formatReply(reply);
    const rule = rules.find((candidate) => candidate.match.test(text));
    if (!rule) return;
    const trigger = rule.trigger;
    if (trigger.kind === 'threshold') {
      const key = `${keyOf(site, source)}\u0000${rule.name}`;
      const recent = (this.matches.get(key) ?? []).filter((time) => time > now - trigger.periodMs);
      recent.push(now);
      if (recent.length < trigger.count) return void this.matches.set(key, recent);
      this.matches.delete(key);
    }
    await this.impose({ site, source, rule: rule.name, action: rule.action, until: now + rule.durationMs, reply: text.slice(0, REPLY_KEPT), shaping: rule.shaping }, now, queueId);
  }

  /**
   * The breaker: after `consecutive_connection_failures_before_delay` transactions in a row that reached no MX, the
   * whole site waits `connection_failure_delay`, instead of every queued message paying a connection attempt.
   */
  async observeConnection(site: string, source: string, reachable: boolean, shaping: ShapingSettings, reply: RecordedReply | null, now: number, queueId: string): Promise<void> {
    if (reachable && this.failures.size === 0) return;
    const key = keyOf(site, source);
    if (reachable) return void this.failures.delete(key);
    const count = (this.failures.get(key) ?? 0) + 1;
    if (count < (shaping.consecutive_connection_failures_before_delay ?? DEFAULT_FAILURES_BEFORE_DELAY)) return void this.failures.set(key, count);
    this.failures.delete(key);
    const delay = shaping.connection_failure_delay ?? DEFAULT_FAILURE_DELAY_MS;
    await this.impose({ site, source, rule: CONNECTION_FAILURES_RULE, action: 'suspend', until: now + delay, reply: reply ? formatReply(reply).slice(0, REPLY_KEPT) : '', shaping: {} }, now, queueId);
  }

  private async impose(backoff: ActiveBackoff, now: number, queueId: string): Promise<void> {
    const key = keyOf(backoff.site, backoff.source);
    const current = this.active.get(key);
    // A suspension is not shortened or weakened by a throttle that matches meanwhile.
    if (current && current.until >= backoff.until && (current.action === 'suspend' || backoff.action === 'throttle')) return;
    this.active.set(key, backoff);
    this.logger.warn(
      { event: 'backoff-started', queueId, site: backoff.site, source: backoff.source, rule: backoff.rule, action: backoff.action, until: new Date(backoff.until).toISOString(), reply: backoff.reply },
      `${backoff.action === 'suspend' ? 'suspended' : 'throttled'} ${backoff.site} until ${new Date(backoff.until).toISOString()} (${backoff.rule})`,
    );
    try {
      const store = this.store;
      if (store) await treatingCorruptAsNone(() => store.put({ ...backoff, since: now, shaping: shapingTable(backoff.shaping) }, now), undefined, this.logger);
    } catch (error) {
      // In force in this process regardless; only a restart or another process would not know of it.
      this.logger.error({ event: 'backoff-not-saved', site: backoff.site, err: error }, 'the back-off could not be written to the spool');
    }
  }
}
