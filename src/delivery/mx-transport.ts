import type { QueueConfig } from '../config/queue-config.js';
import type { RelayHostConfig } from '../config/relay-host.js';
import type { Clock } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import type { RecordedReply } from '../spool/envelope.js';
import type { Readable } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { addressScope, mayConnectTo, RefusedAddressError } from './address-scope.js';
import { capabilityRefusal, classifySmtpReply } from './classify.js';
import { DeliveryFailure, deliveryFailureFrom } from './delivery-failure.js';
import { CachingResolver } from './dns-cache.js';
import { mayTryAnotherAddress, MX_LIMITS, type MxLimits, type MxWalk } from './mx-order.js';
import { readWhole, sevenBitForm } from './eight-bit.js';
import { RemoteSession, type SessionTarget, type TransactionResult } from './remote-session.js';
import { UntrustedCertificateError } from './session-tls.js';
import { resolveMxTargets, resolveRelayTargets, type DnsResolver, type MxTarget } from './resolve-mx.js';
import { POSTFIX_DEADLINES, type SmtpDeadlines } from './smtp-deadlines.js';
import type { DeliveryOptions, Destination, LocalSource, DestinationFailure, DomainAttempt, OutgoingMessage, RecipientOutcome, Transport, TransportFactory } from './transport.js';

export interface TransportOptions {
  resolver: DnsResolver;
  /** The clock for how long a located destination is kept; Date.now when absent. */
  now?: () => number;
  port: number;
  /** Loopback, private and link-local MX addresses may be dialled (a lab set-up; address-scope.ts). */
  allowPrivateDestinations: boolean;
  ehloName: string;
  /** Idle connections kept per MX address. */
  maxConnectionsPerDestination: number;
  /** How long each reply may take; POSTFIX_DEADLINES for what is not given. */
  deadlines?: Partial<SmtpDeadlines>;
  /** Longest reply read at all (default MAX_REPLY_BYTES, 64 KiB). */
  maxReplyBytes?: number;
  /** How far one delivery walks the MX list (default MX_LIMITS: 5 addresses, 2 greeted sessions). */
  mxLimits?: MxLimits;
  /** How long an idle connection is kept for the next message to the same MX. */
  idleTimeout: number;
  /** `--relay-host`: every domain's mail goes to this host (on its port, not `port`) instead of the domain's MXes. */
  relayHost?: RelayHostConfig | null;
  /** Told of every failed DNS look-up (for the metrics), whether or not another MX then took the mail. */
  onDnsFailure?(permanent: boolean): void;
  /** Where a refused MX address is logged (`mx-address-refused`). */
  logger?: Logger;
}

/** Refused addresses named in one log line; a hostile zone can list hundreds. */
const MAX_REFUSED_LOGGED = 8;

const NOTHING_TRIED: RecordedReply = { code: null, enhanced: '4.4.4', text: 'no MX address could be tried' };

/** How long DNS answers are reused; short, since node's resolver gives no TTL for MX records. */
const DNS_CACHE_MS = 60_000;
/** Destinations kept at most (a campaign to many small domains): past it the memory starts over. */
const MAX_DESTINATIONS = 10_000;

/** The MX transport as mta-queue's configuration asks for it. */
export function mxTransport(config: QueueConfig, resolver: DnsResolver, clock: Clock): TransportFactory {
  return (hooks) =>
    new MxTransport({
      resolver: new CachingResolver(resolver, DNS_CACHE_MS, () => clock.now()),
      now: () => clock.now(),
      port: config.relayHost?.port ?? config.smtpPort,
      allowPrivateDestinations: config.allowPrivateDestinations,
      relayHost: config.relayHost,
      ehloName: config.hostname,
      maxConnectionsPerDestination: config.maxConnectionsPerDestination,
      // --connect-timeout has always bounded the banner too (a silent MX costs one timeout, not Postfix's 300 s).
      deadlines: { connect: config.connectTimeout, greeting: config.connectTimeout },
      idleTimeout: 10_000,
      onDnsFailure: hooks.onDnsFailure,
      logger: hooks.logger,
    });
}

/**
 * Delivers to a domain's MXes: walks them in order (and each one's addresses) until one takes the
 * transaction, within MX_LIMITS; a connection failure or a refused greeting moves on, a reply about a
 * recipient does not. Connections are pooled per MX address; how many run per destination is the scheduler's.
 */
export class MxTransport implements Transport {
  private readonly idle = new Map<string, { session: RemoteSession; timer: NodeJS.Timeout }[]>();
  /** Transactions each session has carried, for max_deliveries_per_connection. */
  private readonly transactions = new WeakMap<RemoteSession, number>();
  private readonly deadlines: SmtpDeadlines;
  /** `--relay-tls verify`: the CAs are parsed once here, not at every connection. */
  private readonly verifyTls: SessionTarget['verifyTls'];

  constructor(private readonly options: TransportOptions) {
    this.deadlines = { ...POSTFIX_DEADLINES, ...options.deadlines };
    const relay = options.relayHost;
    if (relay?.tls === 'verify') this.verifyTls = { trust: relay.trustedCas ? createSecureContext({ ca: relay.trustedCas }) : null };
  }

  /** What locate found per domain, kept as long as DNS answers are: a queue of mail to one site asks once. */
  private readonly destinations = new Map<string, { expires: number; destination: Destination }>();

  async locate(domain: string): Promise<Destination | DestinationFailure> {
    const now = this.options.now?.() ?? Date.now();
    const known = this.destinations.get(domain);
    if (known && known.expires > now) return known.destination;
    const found = await this.findDestination(domain);
    if ('site' in found) {
      if (this.destinations.size >= MAX_DESTINATIONS) this.destinations.clear();
      this.destinations.set(domain, { expires: now + DNS_CACHE_MS, destination: found });
    }
    return found;
  }

  private async findDestination(domain: string): Promise<Destination | DestinationFailure> {
    const relay = this.options.relayHost;
    try {
      const targets = await this.targets(domain);
      const first = targets[0];
      const addresses = first ? await first.addresses().catch(() => []) : [];
      const privateAllowed = this.options.allowPrivateDestinations || Boolean(relay);
      const firstAddress = addresses.find((ip) => mayConnectTo(ip, privateAllowed)) ?? null;
      if (relay) return { site: `relay:${relay.host}:${relay.port}`, mxHosts: [], firstAddress };
      const mxHosts = [...new Set(targets.map((target) => target.host.toLowerCase()))].sort();
      return { site: mxHosts.join(','), mxHosts, firstAddress };
    } catch (error) {
      const failure = this.noteFailure(error, { mx: null, ip: null, stage: 'dns', greeted: false });
      return { failure: failure.outcome(), mx: failure.mx };
    }
  }

  hasIdleConnection(destination: Destination, source?: LocalSource | null): boolean {
    if (destination.firstAddress === null) return false;
    return (this.idle.get(poolKey(destination.firstAddress, this.options.port, source?.address))?.length ?? 0) > 0;
  }

  private targets(domain: string): Promise<MxTarget[]> {
    const relay = this.options.relayHost;
    return relay ? Promise.resolve(resolveRelayTargets(relay.host, this.options.resolver)) : resolveMxTargets(domain, this.options.resolver);
  }

  async deliver(domain: string, recipients: string[], message: OutgoingMessage, options: DeliveryOptions = {}): Promise<DomainAttempt> {
    // Made only when no MX address could be tried at all: an Error (and its stack) per message costs.
    let last: DeliveryFailure | undefined;
    const walk: MxWalk = { addressesTried: 0, sessionsGreeted: 0 };
    const limits = this.options.mxLimits ?? MX_LIMITS;
    try {
      const targets = await this.targets(domain);
      walking: for (const target of targets) {
        let addresses: string[];
        try {
          addresses = await target.addresses();
        } catch (error) {
          last = this.noteFailure(error, { mx: target.host, ip: null, stage: 'dns', greeted: false });
          continue;
        }
        const { usable, refusal } = this.screenAddresses(target.host, addresses, domain, message.queueId);
        last = refusal ?? last;
        for (const ip of usable) {
          if (!mayTryAnotherAddress(walk, limits)) break walking;
          walk.addressesTried++;
          try {
            return await this.transact(this.target(ip, target.host, options.source ?? null), recipients, message, options);
          } catch (error) {
            last = deliveryFailureFrom(error, { mx: target.host, ip, stage: 'connect', greeted: false });
            if (last.greeted) walk.sessionsGreeted++;
          }
        }
      }
    } catch (error) {
      last = this.noteFailure(error, { mx: null, ip: null, stage: 'dns', greeted: false });
    }
    last ??= new DeliveryFailure({ verdict: 'transient', reply: NOTHING_TRIED, mx: null, ip: null, stage: 'dns', greeted: false });
    const outcome = last.outcome();
    const unreachable = walk.addressesTried > 0 && last.stage !== 'dns';
    return { outcomes: new Map(recipients.map((address) => [address, outcome])), mx: last.mx, ip: last.ip, tls: null, unreachable };
  }

  private noteFailure(error: unknown, context: Parameters<typeof deliveryFailureFrom>[1]): DeliveryFailure {
    const failure = deliveryFailureFrom(error, context);
    if (failure.stage === 'dns') this.options.onDnsFailure?.(failure.verdict === 'permanent');
    return failure;
  }

  /** The addresses of `host` we may connect to, with a failure (4.4.4) when it has none; refused ones are logged. */
  private screenAddresses(host: string, addresses: string[], domain: string, queueId?: string): { usable: string[]; refusal?: DeliveryFailure } {
    // The relay host is the operator's own choice, often on a private network; only an MX is anyone's to publish.
    const privateAllowed = this.options.allowPrivateDestinations || Boolean(this.options.relayHost);
    const usable = addresses.filter((ip) => mayConnectTo(ip, privateAllowed));
    const refused = addresses.filter((ip) => !mayConnectTo(ip, privateAllowed));
    if (refused.length === 0) return { usable };
    const role = this.options.relayHost ? 'relay host' : 'MX';
    const described = refused.slice(0, MAX_REFUSED_LOGGED).map((ip) => `${addressScope(ip)} address ${ip}`);
    this.options.logger?.warn(
      { event: 'mx-address-refused', queueId, domain, mx: host, refused: described, count: refused.length },
      `${role} ${host}: not connecting to ${described[0]}${refused.length > 1 ? ' and others' : ''} (--allow-private-destinations allows all but unspecified addresses in a lab)`,
    );
    if (usable.length) return { usable };
    const more = refused.length > 1 ? ` (and ${refused.length - 1} more)` : '';
    const error = new RefusedAddressError(`${role} ${host} resolves only to ${described[0]}${more}; not connecting`);
    return { usable, refusal: deliveryFailureFrom(error, { mx: host, ip: refused[0]!, stage: 'connect', greeted: false }) };
  }

  private target(ip: string, host: string, source: LocalSource | null): SessionTarget {
    return { ip, port: this.options.port, host, ehloName: source?.ehlo ?? this.options.ehloName, localAddress: source?.address, deadlines: this.deadlines, maxReplyBytes: this.options.maxReplyBytes, verifyTls: this.verifyTls };
  }

  /** Throws (a DeliveryFailure) only when this MX address could not take the transaction at all (try the next one). */
  private async transact(target: SessionTarget, recipients: string[], message: OutgoingMessage, options: DeliveryOptions): Promise<DomainAttempt> {
    const pooled = this.takeIdle(target);
    let session = pooled ?? (await this.connect(target));
    let result;
    try {
      result = await this.sendOn(session, recipients, message);
    } catch (error) {
      if (!pooled) throw error;
      // The remote may have dropped an idle connection since its last use: one fresh try before giving up on it.
      session = await this.connect(target);
      result = await this.sendOn(session, recipients, message);
    }
    if ('refusal' in result) {
      // Refused by us before MAIL: the session is as clean as it was.
      this.putIdle(session);
      return { outcomes: new Map(recipients.map((address) => [address, result.refusal])), mx: target.host, ip: target.ip, tls: session.tls };
    }
    const outcomes = new Map<string, RecipientOutcome>();
    const delivered = result.delivered;
    for (const address of result.accepted) if (delivered) outcomes.set(address, { verdict: classifySmtpReply(delivered.code ?? 0, delivered.enhanced), reply: delivered });
    for (const { address, failure } of result.refused) outcomes.set(address, failure.outcome());
    // The end of DATA closes the transaction (RFC 5321 §4.1.1.4): RSET, a round trip per message, is needed
    // only when the transaction stopped before it (MAIL or every RCPT refused).
    const reusable = delivered !== null ? session.usable : await session.reset();
    const used = (this.transactions.get(session) ?? 0) + 1;
    this.transactions.set(session, used);
    if (reusable && used < (options.maxDeliveriesPerConnection ?? Infinity)) this.putIdle(session);
    else session.close();
    return { outcomes, mx: target.host, ip: target.ip, tls: session.tls, remoteDsn: session.offers('DSN') };
  }

  /**
   * One transaction on `session`, with the MAIL parameters its EHLO allows; or our refusal, before MAIL, when the
   * message needs what the MX does not offer (classify.ts CAPABILITY_REFUSALS): SMTPUTF8, a SIZE large enough,
   * 8BITMIME for a message that cannot be converted (eight-bit.ts).
   */
  private async sendOn(session: RemoteSession, recipients: string[], message: OutgoingMessage): Promise<TransactionResult | { refusal: RecipientOutcome }> {
    const refused = (reply: RecordedReply) => ({ refusal: { verdict: 'permanent' as const, reply } });
    if (message.needsSmtpUtf8 && !session.supportsSmtpUtf8) return refused(capabilityRefusal('smtputf8'));
    const max = session.maxMessageSize;
    const tooLarge = (size: number) => refused(capabilityRefusal('size', `${size} bytes, the MX takes at most ${max}`));
    // Checked before the body is read: converting to 7 bits only makes a message larger.
    if (max !== null && message.size !== undefined && message.size > max) return tooLarge(message.size);
    const eightBitMime = message.eightBit === true && session.offers('8BITMIME');
    const send = (body: Buffer | Readable, size: number | undefined) => session.send({ from: message.sender, to: recipients, smtpUtf8: message.needsSmtpUtf8, eightBitMime, size, dsn: message.dsn }, body);
    if (message.eightBit && !eightBitMime) {
      // Rare (every large provider offers 8BITMIME), so the whole message is read into memory for it.
      const form = message.sevenBitForm ? await message.sevenBitForm() : sevenBitForm(await readWhole(message.body()));
      if ('refusal' in form) return form;
      if (max !== null && form.body.length > max) return tooLarge(form.body.length);
      return send(form.body, form.body.length);
    }
    const body = message.body();
    return send(body, message.size ?? (Buffer.isBuffer(body) ? body.length : undefined));
  }

  private async connect(target: SessionTarget): Promise<RemoteSession> {
    const relay = this.options.relayHost;
    return relay ? this.connectToRelay(target, relay) : this.connectToMx(target);
  }

  private async connectToMx(target: SessionTarget): Promise<RemoteSession> {
    try {
      return await RemoteSession.open(target, true);
    } catch (error) {
      if (!(error instanceof DeliveryFailure && error.stage === 'tls-handshake')) throw error;
      // Opportunistic TLS (Postfix `may`): a broken handshake is retried once in clear rather than stalling mail.
      return RemoteSession.open(target, false);
    }
  }

  /**
   * With `--relay-tls verify` or `require`, no clear-text fallback: no STARTTLS, a failed handshake or (verify) a
   * certificate that does not check out defers the recipients before AUTH or MAIL is sent (Postfix
   * smtp_tls_security_level=secure / encrypt, 4.7.4 / 4.7.5). Then AUTH, if configured, which never goes in clear.
   */
  private async connectToRelay(target: SessionTarget, relay: RelayHostConfig): Promise<RemoteSession> {
    const tlsRefusal = (enhanced: string, text: string, cause?: unknown) =>
      new DeliveryFailure({ verdict: 'transient', reply: { code: null, enhanced, text }, mx: target.host, ip: target.ip, stage: 'tls-handshake', greeted: true }, { cause });
    const inClear = `--relay-tls ${relay.tls} sends nothing in clear text`;
    let session: RemoteSession;
    if (relay.tls === 'may') {
      session = await this.connectToMx(target);
    } else {
      try {
        session = await RemoteSession.open(target, true);
      } catch (error) {
        if (!(error instanceof DeliveryFailure && error.stage === 'tls-handshake')) throw error;
        const untrusted = error.cause instanceof UntrustedCertificateError ? error.cause : null;
        if (untrusted) throw tlsRefusal('4.7.5', `relay certificate not trusted: ${untrusted.reason} (${target.host}; --relay-ca FILE for a private CA)`, error);
        throw tlsRefusal('4.7.5', `TLS handshake with relay host ${target.host} failed; ${inClear}`, error);
      }
      if (!session.tls) {
        session.close();
        throw tlsRefusal('4.7.4', `relay host ${target.host} does not offer STARTTLS; ${inClear}`);
      }
    }
    if (relay.credentials) {
      try {
        await session.authenticate(relay.credentials);
      } catch (error) {
        session.close();
        throw error;
      }
    }
    return session;
  }

  private key(target: SessionTarget): string {
    return poolKey(target.ip, target.port, target.localAddress);
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

/** Idle connections are kept per MX address and per source: one from source A never carries source B's mail. */
function poolKey(ip: string, port: number, localAddress: string | undefined): string {
  return localAddress === undefined ? `${ip}:${port}` : `${ip}:${port} from ${localAddress}`;
}

export { replyFromText } from './remote-session.js';
