import { performance } from 'node:perf_hooks';
import nodemailer from 'nodemailer';
import { BENCH_RECIPIENT, BENCH_SENDER } from './message.js';
import { loadResult, type LoadResult } from './plain-load.js';

export interface NodemailerLoadOptions {
  port: number;
  sessions: number;
  messages: number;
  warmup: number;
  /** The message itself (no terminator: nodemailer dot-stuffs and ends DATA). */
  message: Buffer;
  user: string;
  password: string;
  timeLimitMs: number;
  /** Called between the warm-up and the measured part (CPU and spool readings). */
  beforeMeasure?: () => Promise<void>;
}

/**
 * Submission as an application does it: nodemailer's pooled transport, STARTTLS (required) and AUTH PLAIN,
 * `maxConnections` = sessions, connections kept for the whole run (maxMessages: Infinity; nodemailer's
 * default of 100 would reconnect, re-handshake and re-authenticate every 100 messages). Exactly `sessions`
 * sendMail calls are in flight, so every connection is busy and none queues; latency is sendMail → resolved,
 * i.e. the whole MAIL/RCPT/DATA transaction. The warm-up opens the connections (TLS + AUTH) off the clock.
 */
export async function runNodemailerLoad(options: NodemailerLoadOptions): Promise<LoadResult> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: options.port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false, servername: 'bench.test' },
    auth: { user: options.user, pass: options.password },
    pool: true,
    maxConnections: options.sessions,
    maxMessages: Infinity,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 60_000,
  });
  const envelope = { from: BENCH_SENDER, to: [BENCH_RECIPIENT] };
  const errors: string[] = [];
  const drive = async (count: number, deadline: number, latencies: number[] | null) => {
    let next = 0;
    let timedOut = false;
    await Promise.all(
      Array.from({ length: options.sessions }, async () => {
        while (next < count) {
          if (performance.now() > deadline) {
            timedOut = true;
            return;
          }
          next += 1;
          const started = performance.now();
          try {
            await transport.sendMail({ envelope, raw: options.message });
            latencies?.push(performance.now() - started);
          } catch (error) {
            errors.push((error as Error).message);
            return;
          }
        }
      }),
    );
    return timedOut;
  };
  try {
    await drive(Math.max(options.warmup, options.sessions), performance.now() + options.timeLimitMs, null);
    await options.beforeMeasure?.();
    const latencies: number[] = [];
    const started = performance.now();
    const timedOut = await drive(options.messages, started + options.timeLimitMs, latencies);
    return loadResult(options.messages, latencies, performance.now() - started, errors, timedOut);
  } finally {
    transport.close();
  }
}
