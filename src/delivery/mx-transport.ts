import type { Readable } from 'node:stream';
import type { RecordedReply } from '../spool/envelope.js';
import { classifyDeliveryError, classifySmtpReply, parseEnhancedCode, type Verdict } from './classify.js';
import { KeyedLimiter } from './limiter.js';
import { RemoteSession, StartTlsFailedError, type SessionTarget, type TlsDetails } from './remote-session.js';
import { DnsLookupError, resolveMxTargets, type DnsResolver } from './resolve-mx.js';

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
}

export interface TransportOptions {
  resolver: DnsResolver;
  port: number;
  ehloName: string;
  maxConnectionsPerDestination: number;
  timeouts: SessionTarget['timeouts'];
  /** How long an idle connection is kept for the next message to the same MX. */
  idleTimeout: number;
  /** Told of every failed DNS look-up (for the metrics), whether or not another MX then took the mail. */
  onDnsFailure?(permanent: boolean): void;
}

export interface OutgoingMessage {
  sender: string;
  /** A fresh body for each transaction (a buffer is shared, a file is re-opened). */
  body(): Buffer | Readable;
  /** The envelope holds UTF-8 addresses (RFC 6531): only an MX that offers SMTPUTF8 may take it. */
  needsSmtpUtf8: boolean;
}

const SMTPUTF8_REFUSAL: RecordedReply = { code: null, enhanced: '5.6.7', text: 'the MX does not offer SMTPUTF8, which this message needs (RFC 6531)' };

/**
 * Delivers to a domain's MXes: walks them in order (and each one's addresses) until one takes the
 * transaction; a connection failure or a refused greeting moves on, a reply about a recipient does not.
 * Connections are pooled per MX address and capped per destination domain.
 */
export class MxTransport {
  private readonly idle = new Map<string, { session: RemoteSession; timer: NodeJS.Timeout }[]>();
  private readonly limiter: KeyedLimiter;

  constructor(private readonly options: TransportOptions) {
    this.limiter = new KeyedLimiter(options.maxConnectionsPerDestination);
  }

  async deliver(domain: string, recipients: string[], message: OutgoingMessage): Promise<DomainAttempt> {
    const release = await this.limiter.acquire(domain);
    try {
      return await this.walkMxes(domain, recipients, message);
    } finally {
      release();
    }
  }

  private async walkMxes(domain: string, recipients: string[], message: OutgoingMessage): Promise<DomainAttempt> {
    let lastFailure: { error: unknown; mx: string | null; ip: string | null } = { error: new Error('no MX was tried'), mx: null, ip: null };
    try {
      for (const target of await resolveMxTargets(domain, this.options.resolver)) {
        let addresses: string[];
        try {
          addresses = await target.addresses();
        } catch (error) {
          this.noteDnsFailure(error);
          lastFailure = { error, mx: target.host, ip: null };
          continue;
        }
        for (const ip of addresses) {
          try {
            return await this.transact(this.target(ip, target.host), recipients, message);
          } catch (error) {
            lastFailure = { error, mx: target.host, ip };
          }
        }
      }
    } catch (error) {
      this.noteDnsFailure(error);
      lastFailure = { error, mx: null, ip: null };
    }
    const outcome = classifyDeliveryError(lastFailure.error);
    return { outcomes: new Map(recipients.map((address) => [address, outcome])), mx: lastFailure.mx, ip: lastFailure.ip, tls: null };
  }

  private noteDnsFailure(error: unknown): void {
    if (error instanceof DnsLookupError) this.options.onDnsFailure?.(error.permanent);
  }

  private target(ip: string, host: string): SessionTarget {
    return { ip, port: this.options.port, host, ehloName: this.options.ehloName, timeouts: this.options.timeouts };
  }

  /** Throws only when this MX address could not take the transaction at all (try the next one). */
  private async transact(target: SessionTarget, recipients: string[], message: OutgoingMessage): Promise<DomainAttempt> {
    const pooled = this.takeIdle(target);
    let session = pooled ?? (await this.connect(target));
    let result;
    try {
      if (message.needsSmtpUtf8 && !session.supportsSmtpUtf8) {
        this.putIdle(session);
        const outcome: RecipientOutcome = { verdict: 'permanent', reply: SMTPUTF8_REFUSAL };
        return { outcomes: new Map(recipients.map((address) => [address, outcome])), mx: target.host, ip: target.ip, tls: session.tls };
      }
      result = await session.send(message.sender, recipients, message.body());
    } catch (error) {
      if (!pooled) throw error;
      // The remote may have dropped an idle connection since its last use: one fresh try before giving up on it.
      session = await this.connect(target);
      result = await session.send(message.sender, recipients, message.body());
    }
    const outcomes = new Map<string, RecipientOutcome>();
    const accepted = result.response ? replyFromText(result.response) : null;
    for (const address of result.accepted) outcomes.set(address, { verdict: classifySmtpReply(accepted!.code!, accepted!.enhanced), reply: accepted! });
    for (const { address, error } of result.refused) outcomes.set(address, classifyDeliveryError(error));
    // The end of DATA closes the transaction (RFC 5321 §4.1.1.4): RSET, a round trip per message, is needed
    // only when the transaction stopped before it (MAIL or every RCPT refused).
    const reusable = result.response !== null ? session.usable : await session.reset();
    if (reusable) this.putIdle(session);
    else session.close();
    return { outcomes, mx: target.host, ip: target.ip, tls: session.tls };
  }

  private async connect(target: SessionTarget): Promise<RemoteSession> {
    try {
      return await RemoteSession.open(target, true);
    } catch (error) {
      if (!(error instanceof StartTlsFailedError)) throw error;
      // Opportunistic TLS (Postfix `may`): a broken handshake is retried once in clear rather than stalling mail.
      return RemoteSession.open(target, false);
    }
  }

  private key(target: SessionTarget): string {
    return `${target.ip}:${target.port}`;
  }

  private takeIdle(target: SessionTarget): RemoteSession | undefined {
    const list = this.idle.get(this.key(target));
    while (list?.length) {
      const entry = list.pop()!;
      clearTimeout(entry.timer);
      if (entry.session.usable) return entry.session;
      entry.session.close();
    }
    return undefined;
  }

  private putIdle(session: RemoteSession): void {
    const key = this.key(session.target);
    const list = this.idle.get(key) ?? [];
    if (list.length >= this.options.maxConnectionsPerDestination) return session.close();
    const timer = setTimeout(() => {
      const index = list.findIndex((entry) => entry.session === session);
      if (index >= 0) list.splice(index, 1);
      session.close();
    }, this.options.idleTimeout);
    timer.unref();
    list.push({ session, timer });
    this.idle.set(key, list);
  }

  close(): void {
    for (const list of this.idle.values()) for (const entry of list.splice(0)) {
      clearTimeout(entry.timer);
      entry.session.close();
    }
  }
}

/** `250 2.0.0 Ok: queued as X` → code, enhanced code, text. */
export function replyFromText(response: string): RecordedReply {
  const code = Number(response.slice(0, 3));
  const rest = response.slice(4);
  const enhanced = parseEnhancedCode(rest);
  return { code: Number.isInteger(code) ? code : null, enhanced, text: enhanced ? rest.slice(enhanced.length + 1) : rest };
}
