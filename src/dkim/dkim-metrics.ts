import type { Registry } from 'prom-client';
import { TallyCounter, type Tally } from '../shared/metrics.js';

/** mta-queue's signing counter; series bound once, so counting a message is one addition (shared/metrics.ts). */
export class DkimMetrics {
  readonly signed: Tally;
  readonly unsigned: Tally;

  constructor(registry: Registry) {
    const counter = new TallyCounter({
      name: 'mta_queue_dkim_signed_total',
      help: 'messages at each delivery attempt, by whether they left DKIM-signed (unsigned: no single From: address, or no active key for its domain, a parent of it or --dkim-default-domain)',
      labelNames: ['result'],
      registry,
    });
    this.signed = counter.bind({ result: 'signed' });
    this.unsigned = counter.bind({ result: 'unsigned' });
  }
}
