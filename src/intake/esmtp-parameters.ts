import type { SMTPServerAddress, SMTPServerEnvelope } from 'smtp-server';
import type { RelayError } from '../shared/errors.js';
import type { Envelope, RecipientRecord } from '../spool/envelope.js';
import { InvalidParameterError, UnsupportedParameterError } from './refusals.js';

/**
 * The MAIL and RCPT parameters of the extensions we advertise; anything else is refused 555 5.5.4 (RFC 5321
 * §4.1.1.11) instead of being dropped unread. smtp-server parses them all and checks SIZE (RFC 1870), BODY
 * (RFC 6152), SMTPUTF8 (RFC 6531), RET and NOTIFY's words and ORCPT's `type;` prefix (RFC 3461); what it leaves
 * unchecked of RFC 3461 is checked here. AUTH= (RFC 4954 §5) must be accepted where AUTH is offered; we ignore it.
 */
const MAIL_PARAMETERS = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID', 'AUTH']);
const RCPT_PARAMETERS = new Set(['NOTIFY', 'ORCPT']);

/** RFC 3461 §4.4: ENVID is printable US-ASCII, at most 100 characters (after xtext decoding, as smtp-server gives it). */
const ENVID = /^[\x21-\x7e]{1,100}$/;
/** RFC 3461 §4.2: an ORCPT parameter is at most 500 characters. */
const ORCPT_MAX = 500;

export function checkMailParameters(address: SMTPServerAddress): RelayError | undefined {
  const args = address.args || {};
  const unknown = Object.keys(args).find((key) => !MAIL_PARAMETERS.has(key));
  if (unknown) return new UnsupportedParameterError(`Unsupported option: ${unknown}`);
  const envid = args.ENVID;
  if (envid !== undefined && (typeof envid !== 'string' || !ENVID.test(envid))) return new InvalidParameterError('Bad ENVID parameter: at most 100 printable characters');
  return undefined;
}

export function checkRcptParameters(address: SMTPServerAddress): RelayError | undefined {
  const args = address.args || {};
  const unknown = Object.keys(args).find((key) => !RCPT_PARAMETERS.has(key));
  if (unknown) return new UnsupportedParameterError(`Unsupported option: ${unknown}`);
  const orcpt = args.ORCPT;
  if (orcpt !== undefined && (typeof orcpt !== 'string' || orcpt.length > ORCPT_MAX)) return new InvalidParameterError(`Bad ORCPT parameter: at most ${ORCPT_MAX} characters`);
  return undefined;
}

/** RET and ENVID for the envelope; undefined when the client gave neither (the defaults of RFC 3461 apply). */
export function envelopeDsn(envelope: SMTPServerEnvelope): Envelope['dsn'] {
  const ret = envelope.dsn?.ret ?? null;
  const envid = envelope.dsn?.envid ?? null;
  if (ret === null && envid === null) return undefined;
  return { ret: ret === 'FULL' || ret === 'HDRS' ? ret : null, envid };
}

/** NOTIFY and ORCPT of one RCPT as the recipient record keeps them; absent fields mean the client gave none. */
export function recipientDsn(address: SMTPServerAddress): Pick<RecipientRecord, 'notify' | 'orcpt'> {
  const fields: Pick<RecipientRecord, 'notify' | 'orcpt'> = {};
  const notify = address.dsn?.notify;
  if (notify && notify.length > 0) {
    fields.notify = notify.includes('NEVER')
      ? 'NEVER'
      : (['SUCCESS', 'FAILURE', 'DELAY'] as const).filter((value) => notify.includes(value));
  }
  if (address.dsn?.orcpt) fields.orcpt = address.dsn.orcpt;
  return fields;
}
