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
