import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';

const LEADING_ENHANCED_STATUS = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * smtp-server derives the enhanced status code (RFC 3463) from the reply code alone, so 452 always reads
 * 4.2.2. Our refusals need their own (452 4.3.1 for a spool failure, 452 4.5.3 for too many recipients): a
 * handler error whose text starts with an enhanced code is sent with that code instead of the derived one.
 */
class RelayConnection extends SMTPConnection {
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

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (typeof data === 'string' && LEADING_ENHANCED_STATUS.test(data)) return super.send(code, data, false);
    super.send(code, data, context);
  }
}

export interface ConnectionHooks {
  /** Called once per accepted connection, before the greeting; returns a function to call when it closes. */
  onOpen(connection: SMTPConnection): () => void;
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
    connection.whenClosed = this.hooks.onOpen(connection);
    connection.init();
  }
}
