import { checkServerIdentity, TLSSocket } from 'node:tls';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

export interface TlsDetails {
  version: string;
  cipher: string;
  /** Chain and name checked out. Opportunistic TLS (Postfix `may`) delivers either way; this is for the log. */
  verified: boolean;
}

export interface SessionTarget {
  ip: string;
  port: number;
  /** MX host name: TLS SNI and the name the certificate is checked against. */
  host: string;
  /** Our EHLO name. */
  ehloName: string;
  timeouts: { connect: number; greeting: number; socket: number };
}

/** What the remote said to each recipient of one transaction. */
export interface TransactionResult {
  accepted: string[];
  /** Replies that refused a recipient (RCPT) or the whole message (MAIL, DATA): error-shaped for classify. */
  refused: { address: string; error: unknown }[];
  /** The final reply to DATA, when any recipient was accepted. */
  response: string | null;
}

type ExtendedConnection = SMTPConnection & { _supportedExtensions?: string[] };

/** The STARTTLS handshake failed (nodemailer reports it as ESOCKET or ETLS, depending on how the peer broke it). */
export class StartTlsFailedError extends Error {
  readonly code = 'ETLS';
}

/**
 * One SMTP connection to one MX address, reusable for several messages (RSET between them). Built on
 * nodemailer's SMTPConnection, which already does EHLO, STARTTLS, PIPELINING, dot-stuffing and TCP_NODELAY.
 */
export class RemoteSession {
  private broken = false;

  private constructor(
    private readonly connection: ExtendedConnection,
    readonly target: SessionTarget,
    readonly tls: TlsDetails | null,
  ) {
    connection.on('error', () => (this.broken = true));
    connection.on('end', () => (this.broken = true));
  }

  /**
   * Connects and says EHLO, upgrading with STARTTLS when offered. When the TLS handshake itself fails the
   * caller may reconnect with `useTls: false` (Postfix does the same for `may`: mail still goes, in clear).
   */
  static open(target: SessionTarget, useTls: boolean): Promise<RemoteSession> {
    const connection: ExtendedConnection = new SMTPConnection({
      host: target.ip,
      port: target.port,
      name: target.ehloName,
      ignoreTLS: !useTls,
      opportunisticTLS: true,
      tls: { servername: target.host, rejectUnauthorized: false },
      connectionTimeout: target.timeouts.connect,
      greetingTimeout: target.timeouts.greeting,
      socketTimeout: target.timeouts.socket,
      allowInternalNetworkInterfaces: true,
      logger: false,
    });
    return new Promise((resolve, reject) => {
      const fail = (error: Error) => {
        const duringHandshake = connection.upgrading === true || (error as { code?: string }).code === 'ETLS';
        connection.close();
        reject(duringHandshake ? new StartTlsFailedError(`STARTTLS handshake failed: ${error.message}`, { cause: error }) : error);
      };
      connection.once('error', fail);
      connection.connect(() => {
        connection.removeListener('error', fail);
        resolve(new RemoteSession(connection, target, tlsDetails(connection._socket, target.host)));
      });
    });
  }

  get usable(): boolean {
    return !this.broken && !this.connection.destroyed;
  }

  get supportsSmtpUtf8(): boolean {
    return (this.connection._supportedExtensions ?? []).includes('SMTPUTF8');
  }

  /** One transaction; rejects only for connection-level failures (nothing about any recipient is known). */
  send(from: string, to: string[], message: Buffer | Readable): Promise<TransactionResult> {
    return new Promise((resolve, reject) => {
      this.connection.send({ from, to }, message, (error, info) => {
        if (!error) {
          const refused = (info.rejectedErrors ?? []).map((err) => ({ address: String((err as { recipient?: string }).recipient), error: err }));
          return resolve({ accepted: info.accepted.map(String), refused, response: info.response });
        }
        const shaped = error as Error & { responseCode?: number; rejectedErrors?: (Error & { recipient?: string })[] };
        if (shaped.rejectedErrors?.length) {
          const refused = shaped.rejectedErrors.map((err) => ({ address: String(err.recipient), error: err }));
          const answered = new Set(refused.map((entry) => entry.address));
          // MAIL or DATA refusals answer for every recipient not refused one by one.
          for (const address of to) if (!answered.has(address)) refused.push({ address, error });
          return resolve({ accepted: [], refused, response: null });
        }
        if (shaped.responseCode) return resolve({ accepted: [], refused: to.map((address) => ({ address, error })), response: null });
        this.broken = true;
        reject(error);
      });
    });
  }

  /** RSET, so the connection can carry the next message; false when it cannot be reused. */
  reset(): Promise<boolean> {
    if (!this.usable) return Promise.resolve(false);
    return new Promise((resolve) => this.connection.reset((error) => resolve(!error && this.usable)));
  }

  close(): void {
    this.broken = true;
    this.connection.quit();
    this.connection.close();
  }
}

function tlsDetails(socket: unknown, host: string): TlsDetails | null {
  if (!(socket instanceof TLSSocket)) return null;
  const cipher = socket.getCipher();
  const nameMatches = checkServerIdentity(host, socket.getPeerCertificate()) === undefined;
  return { version: socket.getProtocol() ?? cipher.version, cipher: cipher.name, verified: socket.authorized && nameMatches };
}
