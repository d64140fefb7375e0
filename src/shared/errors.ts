/**
 * Errors are values: callers branch on the class or `code`, never on message text. Where an error
 * ends an SMTP command, `smtp` is the reply the client gets (RFC 5321 code, RFC 3463 enhanced status).
 */
export interface SmtpReply {
  code: number;
  enhanced: string;
}

export abstract class RelayError extends Error {
  abstract readonly code: string;
  readonly smtp?: SmtpReply;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A flag, environment variable or file the operator gave us is unusable: exit status 2. */
export class ConfigError extends RelayError {
  readonly code = 'ECONFIG';
}

export class SpoolWriteError extends RelayError {
  readonly code = 'ESPOOLWRITE';
  override readonly smtp = { code: 452, enhanced: '4.3.1' };
}

export class CorruptSpoolEntryError extends RelayError {
  readonly code = 'ESPOOLCORRUPT';
}

/** A delivery's outcome arrived after its claim was given back to the queue (shutdown): it is not recorded. */
export class ClaimReleasedError extends RelayError {
  readonly code = 'ECLAIMRELEASED';
}

/** Shape smtp-server expects from a handler callback; the enhanced status leads the text (see relay-smtp-server). */
export function toSmtpServerError(error: RelayError & { smtp: SmtpReply }): Error & { responseCode: number } {
  return Object.assign(new Error(`${error.smtp.enhanced} ${error.message}`), { responseCode: error.smtp.code });
}

export function hasSmtpReply(error: unknown): error is RelayError & { smtp: SmtpReply } {
  return error instanceof RelayError && error.smtp !== undefined;
}
