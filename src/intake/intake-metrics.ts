import { Gauge, type Registry } from 'prom-client';
import { TallyCounter, type Tally } from '../shared/metrics.js';

/** The refusals mta-server makes itself (shared/errors.ts codes): their series exist at 0 from the start. */
const KNOWN_REASONS = ['ECLIENTBLOCKED', 'ETOOMANYCONN', 'EAUTHREQUIRED', 'EBADSENDER', 'EBADRCPT', 'ETOOMANYRCPT', 'ETOOLARGE', 'ESPOOLWRITE', 'EBADPARAM', 'EPARAMVALUE', 'ENONASCII', 'ETOOMANYHANDSHAKES'];

/**
 * mta-server's metrics. Counting on the SMTP path is adding to a number bound here once; the open-connection
 * gauge is read from the server's own connection table when scraped.
 */
export class IntakeMetrics {
  readonly connections: Tally;
  readonly authFailures: Tally;
  readonly accepted: Tally;
  readonly acceptedBytes: Tally;
  private readonly rejected: TallyCounter<'reason'>;
  private readonly rejectedBy = new Map<string, Tally>();

  constructor(registry: Registry, openConnections: () => number) {
    const counter = (name: string, help: string) => new TallyCounter({ name, help, registry }).bind();
    this.connections = counter('mta_server_connections_total', 'SMTP connections accepted by the listener (refused ones included)');
    this.authFailures = counter('mta_server_auth_failures_total', 'AUTH attempts refused (wrong credentials, or from a blocked address)');
    this.accepted = counter('mta_server_messages_accepted_total', 'messages spooled and answered 250');
    this.acceptedBytes = counter('mta_server_accepted_bytes_total', 'bytes of the accepted messages as spooled (with the Received header we add)');
    this.rejected = new TallyCounter({ name: 'mta_server_rejected_total', help: 'refusals, one per `rejected` log line, by error code', labelNames: ['reason'], registry });
    for (const reason of KNOWN_REASONS) this.rejectedBy.set(reason, this.rejected.bind({ reason }));
    new Gauge({
      name: 'mta_server_connections',
      help: 'SMTP connections open now',
      registers: [registry],
      collect() {
        this.set(openConnections());
      },
    });
  }

  rejection(reason: string): Tally {
    let tally = this.rejectedBy.get(reason);
    if (!tally) this.rejectedBy.set(reason, (tally = this.rejected.bind({ reason })));
    return tally;
  }
}
