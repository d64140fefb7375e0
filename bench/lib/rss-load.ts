import { performance } from 'node:perf_hooks';
import { BENCH_RECIPIENT, BENCH_SENDER } from './message.js';
import { summarizeErrors } from './plain-load.js';
import { readMemory } from './proc.js';
import { BenchSmtpClient } from './smtp-client.js';

export interface RssLoadResult {
  sessions: number;
  messageBytes: number;
  sent: number;
  elapsedMs: number;
  baselineRssMb: number;
  /** Highest VmRSS seen by sampling every 20 ms during the load. */
  peakSampledRssMb: number;
  /** VmHWM after the load: the kernel's own peak RSS over the server's whole life (no sampling gaps). */
  peakHwmMb: number;
  errors: string[];
}

/** `sessions` connections each send one large message at the same time while the server's memory is sampled. */
export async function runRssLoad(pid: number, port: number, sessions: number, payload: Buffer, messageBytes: number, timeLimitMs: number): Promise<RssLoadResult> {
  const errors: string[] = [];
  const baseline = await readMemory(pid);
  let peakSampled = baseline?.rssKb ?? NaN;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const reading = await readMemory(pid);
      if (reading) peakSampled = Math.max(peakSampled, reading.rssKb);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const started = performance.now();
  let sent = 0;
  const clients = new Set<BenchSmtpClient>();
  // Hard stop: past the time limit every connection is cut, so the run ends by itself whatever the server does.
  const deadline = setTimeout(() => {
    errors.push(`not finished within ${timeLimitMs} ms: connections cut`);
    for (const client of clients) client.destroy();
  }, timeLimitMs);
  try {
    await Promise.all(
      Array.from({ length: sessions }, async () => {
        let client: BenchSmtpClient | undefined;
        try {
          // Every reply and every stalled write is bounded by the reply timeout; the whole run by timeLimitMs.
          client = await BenchSmtpClient.open('127.0.0.1', port, Math.min(timeLimitMs, 120_000));
          clients.add(client);
          await client.sendMessage(BENCH_SENDER, BENCH_RECIPIENT, payload, 64 * 1024);
          sent += 1;
        } catch (error) {
          errors.push((error as Error).message);
        } finally {
          await client?.quit();
        }
      }),
    );
  } finally {
    clearTimeout(deadline);
    sampling = false;
    await sampler;
  }
  const elapsedMs = performance.now() - started;
  const after = await readMemory(pid);
  const mb = (kb: number) => kb / 1024;
  return {
    sessions,
    messageBytes,
    sent,
    elapsedMs,
    baselineRssMb: mb(baseline?.rssKb ?? NaN),
    peakSampledRssMb: mb(peakSampled),
    peakHwmMb: mb(after?.hwmKb ?? NaN),
    errors: summarizeErrors(errors),
  };
}
