import { RelayError } from '../shared/errors.js';

/** Refusals of the submission service: each is the SMTP reply a client gets for one policy or syntax rule. */
export class MessageTooLargeError extends RelayError {
  readonly code = 'ETOOLARGE';
  override readonly smtp = { code: 552, enhanced: '5.3.4' };
}

export class AuthRequiredError extends RelayError {
  readonly code = 'EAUTHREQUIRED';
  override readonly smtp = { code: 530, enhanced: '5.7.0' };
}

export class AuthFailedError extends RelayError {
  readonly code = 'EAUTHFAILED';
  override readonly smtp = { code: 535, enhanced: '5.7.8' };
}

/** Too many failed AUTH attempts from one address; the connection is closed (421 always closes). */
export class ClientBlockedError extends RelayError {
  readonly code = 'ECLIENTBLOCKED';
  override readonly smtp = { code: 421, enhanced: '4.7.0' };
}

export class TooManyConnectionsError extends RelayError {
  readonly code = 'ETOOMANYCONN';
  override readonly smtp = { code: 421, enhanced: '4.7.0' };
}

/** An implicit-TLS socket beyond its address's share of handshakes: closed at once, it cannot read a reply. */
export class TooManyHandshakesError extends RelayError {
  readonly code = 'ETOOMANYHANDSHAKES';
}

export class TooManyRecipientsError extends RelayError {
  readonly code = 'ETOOMANYRCPT';
  override readonly smtp = { code: 452, enhanced: '4.5.3' };
}

export class InvalidSenderError extends RelayError {
  readonly code = 'EBADSENDER';
  override readonly smtp = { code: 553, enhanced: '5.1.7' };
}

export class InvalidRecipientError extends RelayError {
  readonly code = 'EBADRCPT';
  override readonly smtp = { code: 553, enhanced: '5.1.3' };
}

/** RFC 6531 §3.7.4.1: a non-ASCII address in a transaction whose MAIL did not carry SMTPUTF8. */
export class NonAsciiAddressError extends RelayError {
  readonly code = 'ENONASCII';
  override readonly smtp = { code: 553, enhanced: '5.6.7' };
}

/** A MAIL or RCPT parameter we do not implement (RFC 5321 §4.1.1.11, §4.5.3.1.x: 555). */
export class UnsupportedParameterError extends RelayError {
  readonly code = 'EBADPARAM';
  override readonly smtp = { code: 555, enhanced: '5.5.4' };
}

/** A parameter we implement with a value it does not allow (RFC 3461 DSN values, lengths). */
export class InvalidParameterError extends RelayError {
  readonly code = 'EPARAMVALUE';
  override readonly smtp = { code: 501, enhanced: '5.5.4' };
}

/** Too many error replies in one session (Postfix smtpd_hard_error_limit); the connection is closed. */
export class TooManyErrorsError extends RelayError {
  readonly code = 'ETOOMANYERRORS';
  override readonly smtp = { code: 421, enhanced: '4.7.0' };
}
