import type { Readable } from 'node:stream';
import type { Logger } from '../shared/logger.js';
import type { RecordedReply } from '../spool/envelope.js';
import type { TlsDetails } from './session-tls.js';
import type { Verdict } from './classify.js';

/**
 * The one seam between scheduling and the wire (chasquid's Courier, maddy's DeliveryTarget): the queue knows
 * delivery only as `deliver(domain, recipients, message) → every recipient's outcome`. The MX transport is one
 * implementation; signing and shaping wrap it; tests drive the queue's state transitions with a double.
 */
export interface Transport {
  /**
   * Where mail for `domain` goes, found before any slot is taken (shared/design/dispatch.md, route first): the
   * site it shares limits with, or the outcome when DNS alone decides. Never rejects. A transport without it
   * (a test double) makes every domain a site of its own.
   */
  locate?(domain: string): Promise<Destination | DestinationFailure>;
  /** Never rejects: every failure is an outcome for the recipients it concerns. */
  deliver(domain: string, recipients: string[], message: OutgoingMessage, options?: DeliveryOptions): Promise<DomainAttempt>;
  /** A connection to `destination` from `source` is idle in the pool: the next transaction opens none (max_connection_rate). */
  hasIdleConnection?(destination: Destination, source?: LocalSource | null): boolean;
  /** Drops idle connections; deliveries still running finish on their own. */
  close(): void;
}

/** Where a domain's mail goes. */
export interface Destination {
  /**
   * KumoMTA's site name: the MX host names, sorted and joined by ',' (outlook.com and hotmail.com share one), the
   * domain itself when it has no MX (implicit MX, RFC 5321 §5.1), `relay:HOST:PORT` with --relay-host.
   */
  site: string;
  mxHosts: string[];
  /** The address the walk dials first: connection limits also hold per address, whatever names point at it. */
  firstAddress: string | null;
}

/** DNS decided for every recipient of the domain (NXDOMAIN, null MX, a resolver failure): no slot is needed. */
export interface DestinationFailure {
  failure: RecipientOutcome;
  mx: string | null;
}

/** The shaping of the site that applies to this transaction. */
export interface DeliveryOptions {
  /** After this many transactions a connection is closed (QUIT), not pooled again. */
  maxDeliveriesPerConnection?: number;
  /** The pool address to send from; absent or null: the machine's own, EHLO --hostname. */
  source?: LocalSource | null;
}

/** A local address mail leaves from (a pool's), and the EHLO name it says ([sources."IP"] ehlo; null: --hostname). */
export interface LocalSource {
  address: string;
  ehlo: string | null;
}

/** What the runner lets a transport report besides outcomes (metrics). */
export interface TransportHooks {
  /** A DNS look-up failed, whether or not another MX then took the mail. */
  onDnsFailure(permanent: boolean): void;
  /** The runner's logger, for what the transport decides before any recipient's outcome (a refused MX address). */
  logger: Logger;
}

/** The composition root passes a factory, so the transport can report to the runner's metrics. */
export type TransportFactory = (hooks: TransportHooks) => Transport;

export interface OutgoingMessage {
  sender: string;
  /** The spool's queue id, for the log lines of what wraps the transport (signing). */
  queueId?: string;
  /** A fresh body for each transaction (a buffer is shared, a file is re-opened). */
  body(): Buffer | Readable;
  /** The envelope holds UTF-8 addresses or the client used SMTPUTF8 (RFC 6531): only an MX that offers SMTPUTF8 may take it. */
  needsSmtpUtf8: boolean;
  /** Some byte is >= 0x80 (RFC 6152): BODY=8BITMIME where offered, else converted or refused (eight-bit.ts). Absent: 7bit. */
  eightBit?: boolean;
  /** Bytes of the message, for SIZE= (RFC 1870) and the MX's announced maximum. */
  size?: number;
  /** RFC 3461 parameters passed on to an MX that offers DSN: RET and ENVID on MAIL, NOTIFY and ORCPT per RCPT. */
  dsn?: OutgoingDsn;
  /**
   * The message's relaxed/sha256 DKIM body hash (RFC 6376 §3.7), kept with the envelope: a signer reads it instead
   * of hashing the body again at a retry, or fills it in at the first attempt (the spooled bytes never change).
   */
  bodyHash?: { relaxedSha256?: string };
  /**
   * Set by what changed the message on its way out (signing): the message for an MX that does not offer 8BITMIME,
   * made from the original so that what was added holds for the bytes sent (a DKIM signature over the converted
   * body, not one the conversion would break). Absent: the body is converted as it is (eight-bit.ts).
   */
  sevenBitForm?(): Promise<SevenBitForm>;
}

/** What goes to an MX without 8BITMIME: these bytes, or, sending nothing, this outcome for every recipient. */
export type SevenBitForm = { body: Buffer } | { refusal: RecipientOutcome };

export interface OutgoingDsn {
  ret: 'FULL' | 'HDRS' | null;
  envid: string | null;
  recipients: ReadonlyMap<string, { notify?: ('SUCCESS' | 'FAILURE' | 'DELAY')[] | 'NEVER'; orcpt?: string }>;
}

export interface RecipientOutcome {
  verdict: Verdict;
  reply: RecordedReply;
}

/** One attempt at one destination domain: every recipient's outcome, and where it was decided. */
export interface DomainAttempt {
  outcomes: Map<string, RecipientOutcome>;
  mx: string | null;
  ip: string | null;
  tls: TlsDetails | null;
  /** No MX address took a session (every connection failed or was refused at the greeting): counts toward the site's breaker. */
  unreachable?: boolean;
  /** The MX that took the transaction offered DSN, so NOTIFY went on with it and success is reported from there
   *  (RFC 3461 §5.2); otherwise a NOTIFY=SUCCESS recipient gets a "relayed" DSN from us. */
  remoteDsn?: boolean;
}
