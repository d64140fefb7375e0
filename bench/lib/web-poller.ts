import { performance } from 'node:perf_hooks';
import type { DrainCompanion } from './mta-drain.js';
import type { MtaQueueProcess } from './mta-queue-process.js';
import { waitForPort } from './proc.js';
import { percentile } from './stats.js';
import { snippet, WebClient } from './web-client.js';

/** What a browser tab with the overview and the queue open asks for, once per tick, one request after another. */
export const POLLED_PATHS = ['/', '/queue', '/api/stats'] as const;

export interface PollerSummary {
  /** Spawn of mta-queue → the web port accepting connections; null if it never did. */
  portAfterMs: number | null;
  /** Spawn → logged in. */
  loggedInAfterMs: number | null;
  ticks: number;
  requests: number;
  failed: number;
  /** Per polled path: answers with status 200 and their latencies (all of them in samplesMs). */
  paths: { path: string; ok: number; p50Ms: number; p95Ms: number; maxMs: number; samplesMs: number[] }[];
  connections: number;
  errors: string[];
}

/**
 * The drain's browser-like poller: once mta-queue's web port answers it logs in (POST /login, session cookie)
 * and then every `intervalMs` GETs /, /queue and /api/stats, one after another on one keep-alive connection.
 * A tick that takes longer than the interval is followed at once by the next. Bounded: it stops when the drain
 * stops it, after `timeLimitMs`, or after `intervalMs`-spaced ticks of that span, whichever comes first.
 */
export class WebPoller implements DrainCompanion {
  private stopped = false;
  private running: Promise<void> | null = null;
  private client: WebClient | null = null;
  private spawnedAt = 0;
  private readonly latencies = new Map<string, number[]>(POLLED_PATHS.map((path) => [path, []]));
  private readonly problems: string[] = [];
  private problemCount = 0;
  private summaryValue: PollerSummary | null = null;
  private portAt: number | null = null;
  private loginAt: number | null = null;
  private ticks = 0;
  private requests = 0;
  private failed = 0;
  private wake: (() => void) | null = null;

  constructor(
    private readonly port: number,
    private readonly user: string,
    private readonly password: string,
    private readonly timeLimitMs: number,
    private readonly intervalMs = 1000,
  ) {}

  start(procs: readonly MtaQueueProcess[]): void {
    if (this.running) return;
    const proc = procs[0]!;
    this.spawnedAt = proc.spawnedAt;
    this.running = this.run(proc).catch((error: Error) => this.problem(`poller: ${error.message}`));
  }

  async stop(): Promise<string[]> {
    if (this.summaryValue) return [];
    this.stopped = true;
    this.wake?.();
    await this.running;
    this.client?.close();
    const paths = POLLED_PATHS.map((path) => {
      const values = this.latencies.get(path)!;
      return { path, ok: values.length, p50Ms: percentile(values, 50), p95Ms: percentile(values, 95), maxMs: values.length ? Math.max(...values) : NaN, samplesMs: values };
    });
    this.summaryValue = {
      portAfterMs: this.portAt === null ? null : this.portAt - this.spawnedAt,
      loggedInAfterMs: this.loginAt === null ? null : this.loginAt - this.spawnedAt,
      ticks: this.ticks,
      requests: this.requests,
      failed: this.failed,
      paths,
      connections: this.client?.connections ?? 0,
      errors: this.problemCount > this.problems.length ? [...this.problems, `… ${this.problemCount - this.problems.length} more`] : [...this.problems],
    };
    const errors = [...this.summaryValue.errors];
    if (this.loginAt === null) errors.unshift('the poller never logged in: the drain ran unpolled');
    return errors;
  }

  /** After stop(). */
  get summary(): PollerSummary | null {
    return this.summaryValue;
  }

  private async run(proc: MtaQueueProcess): Promise<void> {
    const deadline = performance.now() + this.timeLimitMs;
    await waitForPort(this.port, Math.min(60_000, this.timeLimitMs), () => proc.exitReason ?? (this.stopped ? 'stopped before the web port answered' : null));
    this.portAt = performance.now();
    const client = new WebClient('127.0.0.1', this.port, 30_000);
    this.client = client;
    await client.login(this.user, this.password);
    this.loginAt = performance.now();
    const maxTicks = Math.ceil(this.timeLimitMs / this.intervalMs) + 1;
    let next = performance.now();
    while (!this.stopped && this.ticks < maxTicks && performance.now() < deadline) {
      this.ticks += 1;
      for (const path of POLLED_PATHS) {
        if (this.stopped) break;
        this.requests += 1;
        try {
          const answer = await client.get(path, { headers: path.startsWith('/api/') ? { accept: 'application/json' } : { accept: 'text/html' } });
          if (answer.status === 200) this.latencies.get(path)!.push(answer.ms);
          else {
            this.failed += 1;
            this.problem(`GET ${path}: ${answer.status} ${snippet(answer.body, 120)}`);
          }
        } catch (error) {
          this.failed += 1;
          this.problem(`GET ${path}: ${(error as Error).message}`);
        }
      }
      next = Math.max(next + this.intervalMs, performance.now());
      const wait = next - performance.now();
      if (wait > 0 && !this.stopped) await this.sleepUnlessStopped(wait);
    }
  }

  /** Waits `ms`, or less if stop() comes first. */
  private sleepUnlessStopped(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private problem(text: string): void {
    this.problemCount += 1;
    if (this.problems.length < 5) this.problems.push(text);
  }
}
