import type net from 'node:net';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerSession } from 'smtp-server';
import type { RelayError } from '../shared/errors.js';
import {
  AuthFailedError,
  AuthRequiredError,
  ClientBlockedError,
  InvalidRecipientError,
  InvalidSenderError,
  TooManyConnectionsError,
  TooManyRecipientsError,
} from './refusals.js';
import type { Logger } from '../shared/logger.js';
import type { AuthThrottle } from './auth-throttle.js';
import type { UserStore } from './user-store.js';
import { isValidMailbox } from './address-syntax.js';

export interface SubmissionPolicyOptions {
  users: UserStore;
  throttle: AuthThrottle;
  trustedNetworks: net.BlockList | null;
  maxRecipients: number;
  maxConnectionsPerIp: number;
  connectionsFrom(address: string): number;
  logger: Logger;
}

/**
 * Who may do what in a submission session. The relay is never open: without AUTH only trusted networks may
 * send. AUTH is offered only once the session is encrypted (RFC 4954 §4: no cleartext passwords), which
 * smtp-server cannot express server-wide, so plain sessions get AUTH disabled for themselves.
 */
export class SubmissionPolicy {
  constructor(private readonly options: SubmissionPolicyOptions) {}

  /** Resolves to a refusal (the session is then closed) or undefined to greet the client. */
  checkConnect(session: SMTPServerSession): RelayError | undefined {
    const address = session.remoteAddress;
    if (this.options.throttle.isBlocked(address)) return new ClientBlockedError('Too many failed authentication attempts, try again later');
    if (this.options.connectionsFrom(address) > this.options.maxConnectionsPerIp) {
      return new TooManyConnectionsError('Too many connections from your address, try again later');
    }
    if (!session.secure) session.disabledCommands = ['AUTH'];
    return undefined;
  }

  secured(session: SMTPServerSession): void {
    delete session.disabledCommands;
  }

  async authenticate(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<SMTPServerAuthenticationResponse> {
    const address = session.remoteAddress;
    const log = this.options.logger.child({ session: session.id, client: address, user: auth.username });
    if (this.options.throttle.isBlocked(address)) throw new ClientBlockedError('Too many failed authentication attempts, try again later');
    if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') throw new AuthFailedError('Authentication mechanism not supported');
    if (await this.options.users.verify(auth.username ?? '', auth.password ?? '')) {
      this.options.throttle.recordSuccess(address);
      log.info({ event: 'auth', result: 'ok', method: auth.method }, 'auth ok');
      return { user: auth.username };
    }
    const blocked = this.options.throttle.recordFailure(address);
    log.warn({ event: 'auth', result: 'fail', method: auth.method }, 'auth failed');
    if (blocked) {
      log.warn({ event: 'client-blocked' }, 'too many failed AUTH attempts, blocking client address');
      throw new ClientBlockedError('Too many failed authentication attempts, try again later');
    }
    throw new AuthFailedError('Authentication credentials invalid');
  }

  checkSender(address: SMTPServerAddress, session: SMTPServerSession): RelayError | undefined {
    if (!this.mayRelay(session)) return new AuthRequiredError('Authentication required');
    // '' is the null reverse-path <>; apps forwarding bounces may use it.
    if (address.address !== '' && !isValidMailbox(address.address)) return new InvalidSenderError(`Bad sender address syntax <${address.address}>`);
    return undefined;
  }

  checkRecipient(address: SMTPServerAddress, session: SMTPServerSession): RelayError | undefined {
    if (!this.mayRelay(session)) return new AuthRequiredError('Authentication required');
    if (!isValidMailbox(address.address)) return new InvalidRecipientError(`Bad recipient address syntax <${address.address}>`);
    if (session.envelope.rcptTo.length >= this.options.maxRecipients) return new TooManyRecipientsError(`Too many recipients (at most ${this.options.maxRecipients} per message)`);
    return undefined;
  }

  private mayRelay(session: SMTPServerSession): boolean {
    return Boolean(session.user) || this.isTrusted(session.remoteAddress);
  }

  private isTrusted(address: string): boolean {
    const networks = this.options.trustedNetworks;
    if (!networks) return false;
    return networks.check(address, address.includes(':') ? 'ipv6' : 'ipv4');
  }
}
