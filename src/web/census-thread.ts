import { Worker } from 'node:worker_threads';
import type { Logger } from '../shared/logger.js';
import type { QueueStats } from '../spool/queue-inspect.js';

/** Where the overview and /api/stats get their census: this process's QueueIndex, or a census thread. */
export type CensusSource = (now: number, top?: number) => Promise<QueueStats>;

/**
 * A census thread (census-worker.ts) and the requests waiting for it. Should the thread die, the census falls back
 * to `fallback` (the in-process one) and says so once.
 */
export class CensusThread {
  /** Started at the first census: a UI nobody opens costs no thread. */
  private worker: Worker | null = null;
  private readonly waiting = new Map<number, { now: number; top: number; resolve: (stats: QueueStats) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private failed = false;

  constructor(
    private readonly spool: string,
    private readonly fallback: CensusSource,
    private readonly logger: Logger,
  ) {}

  readonly census: CensusSource = (now, top = 10) => {
    if (this.failed) return this.fallback(now, top);
    const worker = (this.worker ??= this.start());
    const id = this.nextId++;
    return new Promise<QueueStats>((resolve, reject) => {
      this.waiting.set(id, { now, top, resolve, reject });
      worker.postMessage({ id, now, top });
    });
  };

  async close(): Promise<void> {
    this.failed = true;
    await this.worker?.terminate();
  }

  private start(): Worker {
    const worker = new Worker(new URL('./census-worker.js', import.meta.url), { workerData: { spool: this.spool } });
    worker.unref();
    worker.on('message', (answer: { id: number; stats?: QueueStats; error?: string }) => {
      const request = this.waiting.get(answer.id);
      this.waiting.delete(answer.id);
      if (answer.stats) request?.resolve(answer.stats);
      else request?.reject(new Error(answer.error ?? 'census failed'));
    });
    worker.on('error', (error) => this.fail(error));
    worker.on('exit', (code) => this.fail(new Error(`census thread exited with ${code}`)));
    return worker;
  }

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.logger.error({ event: 'web-census-thread-failed', err: error }, 'the census thread failed; the web UI counts in the main thread from now on');
    for (const [id, request] of this.waiting) {
      this.waiting.delete(id);
      this.fallback(request.now, request.top).then(request.resolve, request.reject);
    }
  }
}
