/**
 * The sites delivery is busy with or backed off from, as the web UI shows them: delivery (src/delivery) answers
 * it from memory, the web UI (src/web) shows it, and neither imports the other. Times in epoch milliseconds.
 */

export interface SiteBackoffStatus {
  action: 'suspend' | 'throttle';
  /** `built-in rule 1`, `file rule 2`, `connection-failures`. */
  rule: string;
  until: number;
  /** The remote reply that started it (remote data: escape it when shown). */
  reply: string;
}

export interface SiteStatus {
  /** The sorted MX host names joined by `,`, `relay:HOST:PORT`, or the domain (names from DNS: escape when shown). */
  site: string;
  /** The source address's name (`default` outside pools). */
  source: string;
  /** The provider-table entry, or null: a site of its own. */
  provider: string | null;
  /** Transactions in flight to the site. */
  connections: number;
  /** The effective connection_limit (a throttle's, while one is in force); null: no limit of its own. */
  connectionLimit: number | null;
  /** The effective max_message_rate as written (`100/min`); null: none. */
  messageRate: string | null;
  /** Transactions waiting in the site's queue. */
  waiting: number;
  backoff: SiteBackoffStatus | null;
}

export interface SitesReport {
  /** Busiest first (connections and waiting transactions), then the backed-off ones, soonest ending first; bounded. */
  sites: SiteStatus[];
  /** Sites active or backed off in all (`sites` may show fewer). */
  total: number;
  /** Every back-off in force, counted. */
  backoffs: { count: number; suspend: number; throttle: number };
}
