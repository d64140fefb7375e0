import { parentPort, workerData } from 'node:worker_threads';
import { spoolLayout } from '../spool/layout.js';
import { QueueIndex } from '../spool/queue-index.js';

/**
 * The census (QueueIndex.census) on a thread of its own: its first look at a busy spool opens every batch file and
 * deferred envelope, work that on the delivery daemon's event loop would be taken from delivery. Answers
 * `{ id, now, top }` with `{ id, stats }` or `{ id, error }`.
 */
const index = new QueueIndex(spoolLayout((workerData as { spool: string }).spool));
parentPort!.on('message', (request: { id: number; now: number; top: number }) => {
  index.census(request.now, request.top).then(
    (stats) => parentPort!.postMessage({ id: request.id, stats }),
    (error: Error) => parentPort!.postMessage({ id: request.id, error: error.message }),
  );
});
