import type net from 'node:net';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerSession } from 'smtp-server';
import type { RelayError } from '../shared/errors.js';
import {
  AuthFailedError,
  AuthRequiredError,
  ClientBlockedError,
  InvalidRecipientError,
  InvalidSenderError,
  NonAsciiAddressError,
  TooManyRecipientsError,
} from './refusals.js';
import type { Logger } from '../shared/logger.js';
import type { AuthThrottle } from '../shared/auth-throttle.js';
import type { UserStore } from '../config/user-store.js';
import { isValidMailbox } from './address-syntax.js';
import type { ConnectionSlots } from './connection-slots.js';
import { checkMailParameters, checkRcptParameters } from './esmtp-parameters.js';

export interface SubmissionPolicyOptions {
  users: UserStore;
  throttle: AuthThrottle;
  trustedNetworks: net.BlockList | null;
  maxRecipients: number;
  slots: ConnectionSlots;
  logger: Logger;
}

/** Of a refused user name, the log keeps this many characters: a name can be as long as an AUTH line. */
const LOGGED_USERNAME_MAX = 100;

/**
 * Who may do what in a submission session. The relay is never open: without AUTH only trusted networks may
 * send. AUTH is offered only once the session is encrypted (RFC 4954 §4: no cleartext passwords), which
 * smtp-server cannot express server-wide, so plain sessions get AUTH disabled for themselves.
 */
export class SubmissionPolicy {
  constructor(private readonly options: SubmissionPolicyOptions) {}

  /**
   * A refusal (the session is then closed) or undefined to greet the client, which then holds a connection slot
   * until the caller releases it.
   */
  admitConnection(session: SMTPServerSession): RelayError | undefined {
    const address = session.remoteAddress;
    if (this.options.throttle.isBlocked(address)) return new ClientBlockedError('Too many failed authentication attempts, try again later');
    const full = this.options.slots.admit(address);
    if (full) return full;
    if (!session.secure) session.disabledCommands = ['AUTH'];
    return undefined;
  }

  secured(session: SMTPServerSession): void {
    delete session.disabledCommands;
  }

  async authenticate(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<SMTPServerAuthenticationResponse> {
    const address = session.remoteAddress;
    const log = this.options.logger.child({ session: session.id, client: address, user: loggableUsername(auth.username ?? '') });
    if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') throw new AuthFailedError('Authentication mechanism not supported');
    // The attempt counts from here, before the hash: parallel AUTHs wait for a place instead of racing past the limit.
    const attempt = await this.options.throttle.begin(address);
    if (!attempt) {
      log.warn({ event: 'auth', result: 'blocked', method: auth.method }, 'auth refused: client address blocked');
      throw new ClientBlockedError('Too many failed authentication attempts, try again later');
    }
    const matches = await this.options.users.verify(auth.username ?? '', auth.password ?? '').catch((error: unknown) => {
      attempt.failed();
      throw error;
    });
    if (!matches) {
      const blocked = attempt.failed();
      log.warn({ event: 'auth', result: 'fail', method: auth.method }, 'auth failed');
      if (!blocked) throw new AuthFailedError('Authentication credentials invalid');
      log.warn({ event: 'client-blocked' }, 'too many failed AUTH attempts, blocking client address');
      throw new ClientBlockedError('Too many failed authentication attempts, try again later');
    }
    attempt.succeeded();
    log.info({ event: 'auth', result: 'ok', method: auth.method }, 'auth ok');
    return { user: auth.username };
  }

  checkSender(address: SMTPServerAddress, session: SMTPServerSession): RelayError | undefined {
    const badParameter = checkMailParameters(address);
    if (badParameter) return badParameter;
    if (!this.mayRelay(session)) return new AuthRequiredError('Authentication required');
    if (!announcesSmtpUtf8(address) && isNonAscii(address.address)) return new NonAsciiAddressError('Non-ASCII sender address requires SMTPUTF8');
    // '' is the null reverse-path <>; apps forwarding bounces may use it.
    if (address.address !== '' && !isValidMailbox(address.address)) return new InvalidSenderError(`Bad sender address syntax <${address.address}>`);
    return undefined;
  }

  checkRecipient(address: SMTPServerAddress, session: SMTPServerSession): RelayError | undefined {
    const badParameter = checkRcptParameters(address);
    if (badParameter) return badParameter;
    if (!this.mayRelay(session)) return new AuthRequiredError('Authentication required');
    if (!announcesSmtpUtf8(session.envelope.mailFrom) && isNonAscii(address.address)) return new NonAsciiAddressError('Non-ASCII recipient address requires SMTPUTF8 on MAIL FROM');
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

/**
 * RFC 6531 §3.4: only a client that asked for SMTPUTF8 on MAIL may use UTF-8 addresses; a relay that took them
 * anyway would hand them to MXes that never offered the extension. The refusal does not echo the address, which
 * such a client did not announce it can read back.
 */
function isNonAscii(address: string): boolean {
  return /[^\x00-\x7f]/.test(address);
}

/**
 * From the accepted MAIL, not envelope.smtpUtf8: smtp-server sets that before onMailFrom and keeps it when the MAIL
 * is refused, so a refused `MAIL … SMTPUTF8` followed by a plain MAIL would still read as announced.
 */
function announcesSmtpUtf8(mail: SMTPServerAddress | false): boolean {
  return mail !== false && (mail.args || {}).SMTPUTF8 === true;
}

/**
 * A client-chosen user name as the log shows it: cut to LOGGED_USERNAME_MAX, with backslashes, control characters,
 * line separators and bidirectional overrides escaped (a terminal or log viewer would act on them).
 */
export function loggableUsername(name: string): string {
  const escaped = name.replace(/[\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g, (char) => {
    const code = char.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
  return escaped.length > LOGGED_USERNAME_MAX ? `${escaped.slice(0, LOGGED_USERNAME_MAX)}…` : escaped;
}
