import { performance } from 'node:perf_hooks';
import { BENCH_RECIPIENT, BENCH_SENDER } from './message.js';
import { BenchSmtpClient } from './smtp-client.js';

export interface PlainLoadOptions {
  host: string;
  port: number;
  sessions: number;
  /** Total over all sessions; sessions take the next message from a shared counter. */
  messages: number;
  /** Message + `.\r\n`. */
  payload: Buffer;
  /** No session starts a message after this long; the run then reports what it did (bounded in time). */
  timeLimitMs: number;
  replyTimeoutMs: number;
  /** The recipient of message `index` (0-based); default: every message to BENCH_RECIPIENT. */
  recipientOf?: (index: number) => string;
}

export interface LoadResult {
  sent: number;
  requested: number;
  elapsedMs: number;
  msgsPerSec: number;
  /** Per message: final payload write → 250 (bench client) or sendMail → resolve (nodemailer). */
  latenciesMs: number[];
  errors: string[];
  timedOut: boolean;
}

/**
 * `sessions` persistent connections (connected and greeted before the clock starts) sending `messages`
 * messages between them, one transaction at a time per connection.
 */
export async function runPlainLoad(options: PlainLoadOptions): Promise<LoadResult> {
  const errors: string[] = [];
  const opened = await Promise.allSettled(Array.from({ length: options.sessions }, () => BenchSmtpClient.open(options.host, options.port, options.replyTimeoutMs)));
  const clients: BenchSmtpClient[] = [];
  for (const result of opened) {
    if (result.status === 'fulfilled') clients.push(result.value);
    else errors.push(`connect: ${(result.reason as Error).message}`);
  }
  const latencies: number[] = [];
  let next = 0;
  let timedOut = false;
  const started = performance.now();
  const deadline = started + options.timeLimitMs;
  await Promise.all(
    clients.map(async (client) => {
      try {
        while (next < options.messages) {
          if (performance.now() > deadline) {
            timedOut = true;
            return;
          }
          const index = next++;
          latencies.push(await client.sendMessage(BENCH_SENDER, options.recipientOf?.(index) ?? BENCH_RECIPIENT, options.payload));
        }
      } catch (error) {
        errors.push((error as Error).message);
      }
    }),
  );
  const elapsedMs = performance.now() - started;
  await Promise.all(clients.map((client) => client.quit()));
  return loadResult(options.messages, latencies, elapsedMs, errors, timedOut);
}

/** The result of a run that sent one message per entry of `latencies` in `elapsedMs`. */
export function loadResult(requested: number, latencies: number[], elapsedMs: number, errors: string[], timedOut: boolean): LoadResult {
  return {
    sent: latencies.length,
    requested,
    elapsedMs,
    msgsPerSec: (latencies.length / elapsedMs) * 1000,
    latenciesMs: latencies,
    errors: summarizeErrors(errors),
    timedOut,
  };
}

/** Identical messages once each with a count, so 50 sessions failing alike print one line. */
export function summarizeErrors(errors: string[]): string[] {
  const counts = new Map<string, number>();
  for (const error of errors) counts.set(error, (counts.get(error) ?? 0) + 1);
  return [...counts].map(([error, count]) => (count > 1 ? `${error} (×${count})` : error));
}
