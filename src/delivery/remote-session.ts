import net from 'node:net';
import { pipeline, Transform, type Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { RecordedReply } from '../spool/envelope.js';
import { parseEnhancedCode, replyExcerpt } from './classify.js';
import { DeliveryFailure, deliveryFailureFrom, type FailureStage } from './delivery-failure.js';
import { certificateRejection, tlsDetails, tlsOptions, UntrustedCertificateError, type TlsDetails, type TlsVerification } from './session-tls.js';
import { ReplyDeadlines, type SmtpDeadlines } from './smtp-deadlines.js';
import type { OutgoingDsn } from './transport.js';

export interface SessionTarget {
  ip: string;
  port: number;
  /** MX host name: TLS SNI and the name the certificate is checked against (an IP literal: its IP SANs). */
  host: string;
  /** Set for a relay host under `--relay-tls verify`; unset, any certificate is taken (opportunistic TLS). */
  verifyTls?: TlsVerification;
  /** Our EHLO name. */
  ehloName: string;
  /** The local address the socket binds (a pool's source address); absent: the system picks one. */
  localAddress?: string;
  /** How long each reply may take (smtp-deadlines.ts). */
  deadlines: SmtpDeadlines;
  /** Longest reply read at all; a longer one closes the connection (default MAX_REPLY_BYTES). */
  maxReplyBytes?: number;
}

/** What the remote said to each recipient of one transaction. */
export interface TransactionResult {
  accepted: string[];
  /** The final reply to DATA, when any recipient was accepted. */
  delivered: RecordedReply | null;
  /** Recipients refused by RCPT, or with every other one by MAIL or DATA. */
  refused: { address: string; failure: DeliveryFailure }[];
}

/**
 * nodemailer's idle timer, kept only as a backstop: every wait is bounded by a reply or body deadline, and an idle
 * pooled connection by the pool's own timer.
 */
const SOCKET_BACKSTOP_MS = 30 * 60_000;

/** A reply longer than this is not buffered: the connection is closed with a transient failure (4.4.2). */
export const MAX_REPLY_BYTES = 64 * 1024;

type ExtendedConnection = SMTPConnection & {
  _supportedExtensions?: string[];
  /** SIZE announced in EHLO, 0 for none or no limit (RFC 1870 §4). */
  _maxAllowedSize?: number;
  _socket?: net.Socket;
  /** Every command goes through it (and into the transaction log); see RemoteSession.withParameters. */
  _sendCommand(command: string, logCommand?: string): void;
  /** AUTH mechanisms named in the EHLO reply, upper-case. */
  _supportedAuth?: string[];
  upgrading?: boolean;
};

/** What one transaction says beyond the addresses; each parameter goes only to an MX that offers its extension. */
export interface TransactionEnvelope {
  from: string;
  to: string[];
  /** SMTPUTF8 on MAIL (RFC 6531 §3.4): the client used it, or an address needs it. */
  smtpUtf8?: boolean;
  /** BODY=8BITMIME on MAIL (RFC 6152). */
  eightBitMime?: boolean;
  /** SIZE= on MAIL (RFC 1870). */
  size?: number;
  /** RET and ENVID on MAIL, NOTIFY and ORCPT on each RCPT (RFC 3461 §4). */
  dsn?: OutgoingDsn;
}

/**
 * One SMTP connection to one MX address, reusable for several messages (RSET between them). Built on
 * nodemailer's SMTPConnection (EHLO, STARTTLS, PIPELINING, dot-stuffing, TCP_NODELAY) over a socket we connect
 * ourselves, so every reply runs against its own deadline.
 * Every failure leaves here as a DeliveryFailure.
 */
export class RemoteSession {
  private broken = false;
  /** The transaction being sent, for the parameters nodemailer cannot add itself. */
  private current: TransactionEnvelope | null = null;

  private constructor(
    private readonly connection: ExtendedConnection,
    private readonly deadlines: ReplyDeadlines,
    readonly target: SessionTarget,
    readonly tls: TlsDetails | null,
  ) {
    connection.on('error', () => (this.broken = true));
    connection.on('end', () => (this.broken = true));
    const sendCommand = connection._sendCommand.bind(connection);
    // The second argument is nodemailer's masked form of an AUTH line, the only one its logger may see.
    connection._sendCommand = (command: string, logCommand?: string) => sendCommand(this.withParameters(command), logCommand);
  }

  /**
   * Connects and says EHLO, upgrading with STARTTLS when offered. A failure of stage 'tls-handshake' lets the
   * caller reconnect with `useTls: false` (Postfix does the same for `may`: mail still goes, in clear).
   */
  static async open(target: SessionTarget, useTls: boolean): Promise<RemoteSession> {
    const deadlines = new ReplyDeadlines(target.deadlines, (error) => connection?._socket?.destroy(error));
    const failure = (error: unknown, stage: FailureStage = deadlines.current) =>
      deliveryFailureFrom(deadlines.expired ?? error, { mx: target.host, ip: target.ip, stage, greeted: deadlines.replies > 0 });
    let connection: ExtendedConnection | undefined;
    const socket = await connectSocket(target).catch((error) => Promise.reject(failure(error, 'connect')));
    // nodemailer's own timers only back ours up: its greeting and setup timers run from the connect.
    const setup = target.deadlines.greeting + 2 * target.deadlines.ehlo + target.deadlines.starttls;
    connection = new SMTPConnection({
      connection: socket,
      host: target.ip,
      port: target.port,
      name: target.ehloName,
      ignoreTLS: !useTls,
      opportunisticTLS: true,
      tls: tlsOptions(target.host, target.verifyTls),
      connectionTimeout: setup,
      greetingTimeout: setup,
      socketTimeout: SOCKET_BACKSTOP_MS,
      maxResponseSize: target.maxReplyBytes ?? MAX_REPLY_BYTES,
      // The transaction log is how we see each command written and each *complete* reply read.
      transactionLog: true,
      logger: conversationObserver(deadlines),
      allowInternalNetworkInterfaces: true,
    } as SMTPConnection.Options) as ExtendedConnection;
    const opened = connection;
    deadlines.await('greeting');
    return new Promise((resolve, reject) => {
      const fail = (error: Error) => {
        opened.removeListener('error', fail);
        const duringHandshake = !deadlines.expired && (opened.upgrading === true || (error as { code?: string }).code === 'ETLS');
        const untrusted = duringHandshake && target.verifyTls ? certificateRejection(opened._socket) : undefined;
        deadlines.stop();
        opened.close();
        const cause = untrusted ? new UntrustedCertificateError(oneLine(error.message), { cause: error }) : error;
        reject(failure(cause, duringHandshake ? 'tls-handshake' : deadlines.current));
      };
      opened.once('error', fail);
      opened.connect((error?: Error) => {
        // A silent close before the greeting comes to this callback, not as 'error'.
        if (error) return fail(error);
        opened.removeListener('error', fail);
        deadlines.settle();
        resolve(new RemoteSession(opened, deadlines, target, tlsDetails(opened._socket, target.host)));
      });
    });
  }

  get usable(): boolean {
    return !this.broken && !this.connection.destroyed;
  }

  /** The MX named `extension` in its EHLO reply (as nodemailer recognises them). */
  offers(extension: 'SMTPUTF8' | '8BITMIME' | 'SIZE' | 'DSN'): boolean {
    return (this.connection._supportedExtensions ?? []).includes(extension);
  }

  get supportsSmtpUtf8(): boolean {
    return this.offers('SMTPUTF8');
  }

  /** The largest message the MX announced with SIZE, null when it announced none (or 0: no fixed limit). */
  get maxMessageSize(): number | null {
    return this.offers('SIZE') && this.connection._maxAllowedSize ? this.connection._maxAllowedSize : null;
  }

  /**
   * AUTH PLAIN or LOGIN (the first the server names, as nodemailer picks it). Any refusal, 535 included, is
   * transient 4.7.8: a SASL failure towards a relay host is the operator's to fix, not the recipients' (Postfix
   * defers too). The password goes only to the socket, never into a failure's text.
   */
  authenticate(credentials: { user: string; password: string }): Promise<void> {
    const refused = (text: string, cause?: unknown, enhanced = '4.7.8') =>
      new DeliveryFailure({ verdict: 'transient', reply: { code: null, enhanced, text }, mx: this.target.host, ip: this.target.ip, stage: 'auth', greeted: true }, { cause });
    // Whoever is on the path would read it: the last guard, whatever --relay-tls says (X.7.10 encryption needed).
    if (!this.tls) return Promise.reject(refused(`no TLS with relay host ${this.target.host}: the password is never sent in clear text`, undefined, '4.7.10'));
    const offered = (this.connection._supportedAuth ?? []).filter((method) => method === 'PLAIN' || method === 'LOGIN');
    if (offered.length === 0) return Promise.reject(refused(`relay host ${this.target.host} offers no AUTH PLAIN or LOGIN`));
    return new Promise((resolve, reject) => {
      this.connection.login({ user: credentials.user, pass: credentials.password, method: offered[0] } as SMTPConnection.Credentials, (error) => {
        this.deadlines.settle();
        if (!error) return resolve();
        if (this.deadlines.expired) return reject(deliveryFailureFrom(this.deadlines.expired, { mx: this.target.host, ip: this.target.ip, stage: 'auth', greeted: true }));
        const response = (error as { response?: string }).response;
        const reply = response ? replyFromText(response) : null;
        // Not the relay's enhanced code (5.7.8 for bad credentials): the verdict is ours, and transient.
        const said = reply ? `${reply.code ?? ''} ${reply.text}`.trim() : oneLine(error.message);
        this.broken = true;
        reject(refused(`relay host ${this.target.host} refused AUTH: ${said}`, error));
      });
    });
  }

  /** One transaction; rejects (with a DeliveryFailure) only when nothing about any recipient is known. */
  send(envelope: TransactionEnvelope, message: Buffer | Readable): Promise<TransactionResult> {
    const failure = (error: unknown) => deliveryFailureFrom(this.deadlines.expired ?? error, { mx: this.target.host, ip: this.target.ip, stage: this.deadlines.current, greeted: true });
    const { from, to, dsn } = envelope;
    const options: SMTPConnection.Envelope = {
      from,
      to,
      // nodemailer adds each only when the EHLO reply offered it.
      use8BitMime: envelope.eightBitMime === true,
      ...(envelope.size !== undefined && { size: envelope.size }),
      ...(dsn && (dsn.ret || dsn.envid) && { dsn: { ...(dsn.ret && { ret: dsn.ret }), ...(dsn.envid && { envid: dsn.envid }) } }),
    };
    this.current = envelope;
    return new Promise((resolve, reject) => {
      this.connection.send(options, this.watchedBody(message), (error, info) => {
        this.current = null;
        this.deadlines.settle();
        if (!error) {
          const refused = (info.rejectedErrors ?? []).map((err) => ({ address: String((err as { recipient?: string }).recipient), failure: failure(err) }));
          return resolve({ accepted: info.accepted.map(String), refused, delivered: info.response ? replyFromText(info.response) : null });
        }
        const shaped = error as Error & { responseCode?: number; rejectedErrors?: (Error & { recipient?: string })[] };
        if (!this.deadlines.expired && shaped.rejectedErrors?.length) {
          const refused = shaped.rejectedErrors.map((err) => ({ address: String(err.recipient), failure: failure(err) }));
          const answered = new Set(refused.map((entry) => entry.address));
          // MAIL or DATA refusals answer for every recipient not refused one by one.
          const whole = failure(error);
          for (const address of to) if (!answered.has(address)) refused.push({ address, failure: whole });
          return resolve({ accepted: [], refused, delivered: null });
        }
        if (!this.deadlines.expired && shaped.responseCode) {
          const whole = failure(error);
          return resolve({ accepted: [], refused: to.map((address) => ({ address, failure: whole })), delivered: null });
        }
        this.broken = true;
        reject(failure(error));
      });
    });
  }

  /**
   * The MAIL and RCPT parameters nodemailer does not add: SMTPUTF8 when only the message (not an address) needs it
   * (nodemailer looks at the addresses alone), and NOTIFY/ORCPT per recipient (nodemailer has one set per
   * envelope). Added at the one point every command passes, so the transaction log shows what went out.
   */
  private withParameters(command: string): string {
    const envelope = this.current;
    if (!envelope) return command;
    if (/^MAIL FROM:/i.test(command)) {
      return envelope.smtpUtf8 && this.offers('SMTPUTF8') && !/ SMTPUTF8(?: |$)/.test(command) ? `${command} SMTPUTF8` : command;
    }
    const rcpt = /^RCPT TO:<(.*)>$/i.exec(command);
    const params = rcpt && this.offers('DSN') ? envelope.dsn?.recipients.get(rcpt[1]!) : undefined;
    if (!params) return command;
    const args: string[] = [];
    if (params.notify) args.push(`NOTIFY=${params.notify === 'NEVER' ? 'NEVER' : params.notify.join(',')}`);
    if (params.orcpt) args.push(`ORCPT=${xtext(params.orcpt)}`);
    return args.length ? `${command} ${args.join(' ')}` : command;
  }

  /** RSET, so the connection can carry the next message; false when it cannot be reused. */
  reset(): Promise<boolean> {
    if (!this.usable) return Promise.resolve(false);
    return new Promise((resolve) =>
      this.connection.reset((error) => {
        this.deadlines.settle();
        resolve(!error && this.usable);
      }),
    );
  }

  close(): void {
    this.broken = true;
    this.connection.quit();
    this.connection.close();
    // After QUIT, which armed its own deadline: nothing more is awaited from a closed connection.
    this.deadlines.stop();
  }

  /**
   * A streamed body (over 1 MiB) in pieces whose passing restarts the body-transfer deadline (Postfix
   * smtp_data_xfer_timeout); a buffered one goes as it is, its transfer covered by the deadline armed at the 354.
   */
  private watchedBody(message: Buffer | Readable): Buffer | Readable {
    if (Buffer.isBuffer(message)) return message;
    const watched = new Transform({
      transform: (chunk, _encoding, callback) => {
        this.deadlines.bodyProgress();
        callback(null, chunk);
      },
    });
    pipeline(message, watched, () => {});
    return watched;
  }
}

/** RFC 3461 §4: xtext, `+HH` for '+', '=' and every byte outside '!'..'~' (UTF-8 bytes one by one). */
function xtext(value: string): string {
  const byte = (b: number) => (b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d ? String.fromCharCode(b) : `+${b.toString(16).toUpperCase().padStart(2, '0')}`);
  return Array.from(Buffer.from(value, 'utf8'), byte).join('');
}

/** An error's message in a reply text: one bounded line (Node's TLS reasons quote the certificate's names). */
function oneLine(message: string): string {
  return message.replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** TCP connect within the connect deadline; TCP_NODELAY is set by nodemailer on the socket it is handed. */
function connectSocket(target: SessionTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.ip, port: target.port, localAddress: target.localAddress });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connect to ${target.ip}:${target.port} timed out after ${target.deadlines.connect} ms`), { code: 'ETIMEDOUT', timeoutType: 'CONNECT_TIMEOUT' }));
    }, target.deadlines.connect);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/** A logger for nodemailer that tells the deadlines what the transaction log shows. */
function conversationObserver(deadlines: ReplyDeadlines): Record<string, (entry: { tnx?: string; outByteCount?: number }, message?: unknown) => void> {
  const observe = (entry: { tnx?: string; outByteCount?: number }, message?: unknown) => {
    if (entry.tnx === 'client') deadlines.commandSent(String(message ?? ''));
    else if (entry.tnx === 'server') deadlines.replyReceived();
    // Logged once the encoded body, final "." included, has been handed to the socket.
    else if (entry.tnx === 'message' && entry.outByteCount !== undefined) deadlines.bodyDone();
  };
  return { trace: observe, debug: observe, info: observe, warn: observe, error: observe, fatal: observe };
}

/** `250 2.0.0 Ok: queued as X` → code, enhanced code, bounded text. */
export function replyFromText(response: string): RecordedReply {
  const excerpt = replyExcerpt(response);
  const code = Number(excerpt.slice(0, 3));
  const rest = excerpt.slice(4);
  const enhanced = parseEnhancedCode(rest);
  return { code: Number.isInteger(code) ? code : null, enhanced, text: enhanced ? rest.slice(enhanced.length + 1) : rest };
}
