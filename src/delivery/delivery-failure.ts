import { RelayError } from '../shared/errors.js';
import type { RecordedReply } from '../spool/envelope.js';
import { classifyDeliveryError } from './classify.js';
import type { SmtpStage } from './smtp-deadlines.js';

/** Where a delivery failed: DNS, or the SMTP stage whose reply (or lack of one) decided it. */
export type FailureStage = 'dns' | SmtpStage | 'tls-handshake';

export interface DeliveryFailureFields {
  verdict: 'transient' | 'permanent';
  /** What the recipient's record, the log and the DSN show (already a bounded excerpt). */
  reply: RecordedReply;
  mx: string | null;
  ip: string | null;
  stage: FailureStage;
  /** The MX greeted us (any reply at all, 421 included): counts against the session limit (mx-order.ts). */
  greeted: boolean;
}

/**
 * The one failure type of delivery (maddy's exterrors.SMTPError): built where a raw error appears (the SMTP
 * session, the DNS lookup), classified there by classify.ts's tables, and read afterwards by the transport,
 * logs and DSNs through these fields instead of duck-typing nodemailer's or node's errors.
 */
export class DeliveryFailure extends RelayError {
  readonly code = 'EDELIVERY';
  readonly verdict: 'transient' | 'permanent';
  readonly reply: RecordedReply;
  readonly mx: string | null;
  readonly ip: string | null;
  readonly stage: FailureStage;
  readonly greeted: boolean;

  constructor(fields: DeliveryFailureFields, options?: { cause?: unknown }) {
    super(formatFailure(fields), options);
    ({ verdict: this.verdict, reply: this.reply, mx: this.mx, ip: this.ip, stage: this.stage, greeted: this.greeted } = fields);
  }

  /** Worth another attempt later (maddy's Temporary()). */
  get temporary(): boolean {
    return this.verdict === 'transient';
  }

  /** Structured log fields (maddy's Fields()). */
  fields(): Record<string, unknown> {
    return { verdict: this.verdict, smtpCode: this.reply.code, enhanced: this.reply.enhanced, reply: this.reply.text, mx: this.mx, ip: this.ip, stage: this.stage };
  }

  /** What the transport reports for each recipient this failure concerns. */
  outcome(): { verdict: 'transient' | 'permanent'; reply: RecordedReply } {
    return { verdict: this.verdict, reply: this.reply };
  }
}

export interface FailureContext {
  mx: string | null;
  ip: string | null;
  stage: FailureStage;
  greeted: boolean;
}

/** Classifies a raw error (nodemailer's, node's, ours) once, where it appears; a DeliveryFailure passes through. */
export function deliveryFailureFrom(error: unknown, context: FailureContext): DeliveryFailure {
  if (error instanceof DeliveryFailure) return error;
  const { verdict, reply } = classifyDeliveryError(error, context.stage);
  // A 2yz on an error path is a peer (or us) out of step: never a delivery, and never a reason to bounce.
  return new DeliveryFailure({ ...context, verdict: verdict === 'permanent' ? 'permanent' : 'transient', reply }, { cause: error });
}

function formatFailure({ reply, mx, ip }: DeliveryFailureFields): string {
  const where = mx ? ` (${mx}${ip ? ` [${ip}]` : ''})` : '';
  return `${[reply.code, reply.enhanced, reply.text].filter((part) => part !== null && part !== '').join(' ')}${where}`;
}
