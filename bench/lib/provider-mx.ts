import { performance } from 'node:perf_hooks';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

/**
 * A simulated big provider: a real SMTP server on a loopback address that enforces a provider's limits per
 * sending address and per connection, answering past them with that provider's own 4xx wording, and counts what
 * it saw. shared/design/testing.md ("A simulated provider") and peers.md (the campaign measured earlier).
 */

/** Whose replies the MX gives: the texts big providers send when a sender goes past their limits. */
export type ProviderStyle = 'yahoo' | 'microsoft' | 'gmail';
export type ThrottleReason = 'rate' | 'per-connection';

/**
 * `count` transactions per `windowMs` per sending address, as a token bucket: `count` at once at most, refilled
 * at count/windowMs. A fixed-window counter would let 2×count through across a window boundary, so the least
 * time a campaign needs would hang on where the provider's windows happen to fall.
 */
export interface WindowLimit {
  count: number;
  windowMs: number;
}

export interface ProviderLimits {
  rate: WindowLimit | null;
  /** Transactions one connection may carry; the next MAIL gets the provider's 421 and the connection closes. */
  perConnection: number | null;
}

interface Reply {
  code: number;
  text: (ip: string) => string;
}

/**
 * The replies as the providers word them (Yahoo's TSS04 from senders.yahooinc.com's error codes, Microsoft's
 * S775 from its NDR reference, Gmail's 4.7.28 and "Try again later, closing connection"). A 421 closes the
 * connection (smtp-server does so for every 421), a 451 leaves it open, as Microsoft's does.
 */
const REPLIES: Record<ProviderStyle, Record<ThrottleReason, Reply>> = {
  yahoo: {
    rate: { code: 421, text: (ip) => `4.7.0 [TSS04] Messages from ${ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes` },
    'per-connection': { code: 421, text: () => '4.7.0 Too many messages on this connection' },
  },
  microsoft: {
    rate: { code: 451, text: (ip) => `4.7.650 The mail server [${ip}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775)` },
    'per-connection': { code: 421, text: () => '4.3.2 The maximum number of messages per connection has been exceeded, closing transmission channel' },
  },
  gmail: {
    rate: { code: 421, text: () => '4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.' },
    'per-connection': { code: 421, text: () => '4.7.0 Try again later, closing connection.' },
  },
};

export interface SenderCounts {
  transactions: number;
  accepted: number;
  throttled: number;
}

export interface ProviderCounts {
  /** MAIL commands: every transaction a sender began, throttled ones included. */
  transactions: number;
  /** Transactions that ended with 250 after DATA. */
  accepted: number;
  throttled: Record<ThrottleReason, number>;
  connections: number;
  peakConcurrent: number;
  /** Expected recipients accepted (each counted once), and recipients accepted again or not expected here. */
  delivered: number;
  duplicates: number;
  unexpected: number;
  /** Per sending address (the connection's remote address, as a provider sees it). */
  senders: Record<string, SenderCounts>;
}

export interface ProviderMx {
  host: string;
  port: number;
  readonly counts: ProviderCounts;
  /** performance.now() when the last expected recipient arrived, or null while some are missing. */
  readonly completedAt: number | null;
  close(): Promise<void>;
}

/** Most distinct sending addresses tracked: a loopback run has one or two; the bound keeps the map small. */
const MAX_SENDERS = 64;
/** Larger messages are refused (552) by smtp-server: the campaign sends a few kilobytes each. */
const MAX_MESSAGE_BYTES = 1024 * 1024;

function throttleError(reply: Reply, ip: string): Error {
  return Object.assign(new Error(reply.text(ip)), { responseCode: reply.code });
}

/**
 * Starts the provider on `host:port`. `expected` are the recipients the campaign sends it, so that "delivered"
 * means each of them arrived, once.
 */
export async function startProviderMx(style: ProviderStyle, limits: ProviderLimits, host: string, port: number, expected: ReadonlySet<string>): Promise<ProviderMx> {
  const counts: ProviderCounts = {
    transactions: 0,
    accepted: 0,
    throttled: { rate: 0, 'per-connection': 0 },
    connections: 0,
    peakConcurrent: 0,
    delivered: 0,
    duplicates: 0,
    unexpected: 0,
    senders: {},
  };
  const arrived = new Set<string>();
  let completedAt: number | null = null;
  let open = 0;
  /** Transactions admitted on each open connection. */
  const perSession = new Map<string, number>();
  /** Each sending address's bucket: tokens left when last looked at, and when. */
  const buckets = new Map<string, { tokens: number; at: number }>();

  const senderOf = (ip: string): SenderCounts => {
    const key = Object.keys(counts.senders).length < MAX_SENDERS || counts.senders[ip] ? ip : 'other';
    return (counts.senders[key] ??= { transactions: 0, accepted: 0, throttled: 0 });
  };

  /** The reason this transaction is over a limit, or null (and the transaction is counted against the limits). */
  const overLimit = (session: SMTPServerSession, ip: string): ThrottleReason | null => {
    const onConnection = perSession.get(session.id) ?? 0;
    if (limits.perConnection !== null && onConnection >= limits.perConnection) return 'per-connection';
    if (limits.rate !== null) {
      const { count, windowMs } = limits.rate;
      const now = performance.now();
      const bucket = buckets.get(ip) ?? { tokens: count, at: now };
      bucket.tokens = Math.min(count, bucket.tokens + ((now - bucket.at) * count) / windowMs);
      bucket.at = now;
      buckets.set(ip, bucket);
      if (bucket.tokens < 1) return 'rate';
      bucket.tokens -= 1;
    }
    perSession.set(session.id, onConnection + 1);
    return null;
  };

  const server = new SMTPServer({
    name: `${style}.provider.bench.test`,
    banner: `simulated ${style} MX`,
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    hideSTARTTLS: true,
    logger: false,
    size: MAX_MESSAGE_BYTES,
    maxClients: 500,
    onConnect(_session, callback) {
      counts.connections += 1;
      open += 1;
      counts.peakConcurrent = Math.max(counts.peakConcurrent, open);
      callback();
    },
    onClose(session) {
      open -= 1;
      perSession.delete(session.id);
    },
    onMailFrom(_address, session, callback) {
      const ip = session.remoteAddress;
      const sender = senderOf(ip);
      counts.transactions += 1;
      sender.transactions += 1;
      const reason = overLimit(session, ip);
      if (reason === null) return callback();
      counts.throttled[reason] += 1;
      sender.throttled += 1;
      callback(throttleError(REPLIES[style][reason], ip));
    },
    onData(stream, session, callback) {
      stream.on('end', () => {
        if ((stream as { sizeExceeded?: boolean }).sizeExceeded) return callback(Object.assign(new Error('5.3.4 Message too big'), { responseCode: 552 }));
        counts.accepted += 1;
        senderOf(session.remoteAddress).accepted += 1;
        for (const { address } of session.envelope.rcptTo) {
          const recipient = address.toLowerCase();
          if (!expected.has(recipient)) counts.unexpected += 1;
          else if (arrived.has(recipient)) counts.duplicates += 1;
          else arrived.add(recipient);
        }
        counts.delivered = arrived.size;
        if (completedAt === null && arrived.size === expected.size) completedAt = performance.now();
        callback();
      });
      stream.resume();
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    host,
    port,
    counts,
    get completedAt() {
      return completedAt;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
