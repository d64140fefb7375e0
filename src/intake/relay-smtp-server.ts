import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { RelayError, SmtpReply } from '../shared/errors.js';

const LEADING_ENHANCED_STATUS = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * smtp-server derives the enhanced status code (RFC 3463) from the reply code alone, so 452 always reads
 * 4.2.2. Our refusals need their own (452 4.3.1 for a spool failure, 452 4.5.3 for too many recipients): a
 * handler error whose text starts with an enhanced code is sent with that code instead of the derived one.
 */
export class RelayConnection extends SMTPConnection {
  /** Error replies (4xx and 5xx) since the session began or last had a message accepted. */
  private errorReplies = 0;
  /** Set by the server before init(): the error budget and what to send once it is spent. */
  errorLimit: ErrorLimit | undefined;

  /**
   * Runs once when the connection is gone. Not a 'close' listener on the socket: smtp-server's STARTTLS upgrade
   * calls removeAllListeners() on the plain socket, so such a hook never ran for an upgraded session (its per-IP
   * count and open-connection entry leaked, and an address was refused 421 after that many STARTTLS sessions).
   */
  whenClosed: (() => void) | undefined;

  override _onClose(): void {
    super._onClose();
    const closed = this.whenClosed;
    this.whenClosed = undefined;
    closed?.();
  }

  /** After an accepted message the count starts again: a long session of good mail is not cut for old mistakes. */
  resetErrors(): void {
    this.errorReplies = 0;
  }

  /**
   * Postfix smtpd_hard_error_limit: once a session has had `limit` error replies, the next command gets 421 and
   * the connection is closed, so 5,000 pipelined bad commands cost 21 replies and as many log lines, not 5,000.
   */
  override _onCommand(command: Buffer, callback?: () => void): void {
    const limit = this.errorLimit;
    if (limit && this.errorReplies >= limit.errors) {
      const reply = limit.reached(this);
      this.send(reply.smtp.code, `${reply.smtp.enhanced} ${this.name} ${reply.message}`);
      return; // 421 closes; the parser gets no callback, so nothing pipelined behind is read
    }
    super._onCommand(command, callback);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (code >= 400 && code !== 421) this.errorReplies++;
    if (typeof data === 'string' && LEADING_ENHANCED_STATUS.test(data)) return super.send(code, data, false);
    super.send(code, data, context);
  }
}

export interface ErrorLimit {
  /** Error replies a session may get before its next command is answered 421 and the connection closed. */
  errors: number;
  /** Called once when the limit closes a session (to log it): the 421 refusal to send. */
  reached(connection: RelayConnection): RelayError & { smtp: SmtpReply };
}

export interface ConnectionHooks {
  /** Called once per accepted connection, before the greeting; returns a function to call when it closes. */
  onOpen(connection: RelayConnection): () => void;
  errorLimit: ErrorLimit;
  /**
   * Before an implicit-TLS socket's handshake: undefined closes it at once (it cannot read a cleartext 421), else
   * the function to call once the handshake is over, whichever way it ended.
   */
  startHandshake(socket: net.Socket): (() => void) | undefined;
  /** Longest a handshake may take, however slowly the client trickles its bytes. */
  handshakeTimeout: number;
}

/** smtp-server with our reply codes and a hook on every connection (per-IP counts, session deadline). */
export class RelaySmtpServer extends SMTPServer {
  constructor(
    options: SMTPServerOptions,
    private readonly hooks: ConnectionHooks,
  ) {
    super(options);
  }

  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new RelayConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data: unknown) => this._onClientConnect(data as Parameters<SMTPServer['_onClientConnect']>[0]));
    connection.errorLimit = this.hooks.errorLimit;
    connection.whenClosed = this.hooks.onOpen(connection);
    connection.init();
  }

  override _acceptSocket(socket: net.Socket, handshake: boolean): (() => void) | false {
    if (!handshake) return super._acceptSocket(socket, handshake);
    const end = this.hooks.startHandshake(socket);
    const release = end && super._acceptSocket(socket, handshake);
    if (!release) {
      end?.();
      socket.on('error', () => undefined);
      socket.destroy();
      return false;
    }
    // smtp-server's own handshake deadline is the idle timeout (minutes), restarted by every byte; this one is not.
    const deadline = setTimeout(() => {
      const upgraded = this._pendingSockets.get(socket);
      // Failed the way smtp-server fails its own handshake timeout, so the server's 'error' event reports it.
      if (upgraded && upgraded !== socket) upgraded.destroy(Object.assign(new Error('TLS handshake timeout'), { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' }));
      else socket.destroy();
    }, this.hooks.handshakeTimeout);
    let released = false;
    const releaseOnce = () => {
      if (released) return;
      released = true;
      clearTimeout(deadline);
      socket.removeListener('close', releaseOnce);
      end();
      release();
    };
    socket.once('close', releaseOnce);
    return releaseOnce;
  }
}
