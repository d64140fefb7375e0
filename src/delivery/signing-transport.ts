import { Readable } from 'node:stream';
import type { Logger } from '../shared/logger.js';
import { readWhole, sevenBitForm } from './eight-bit.js';
import { locateDestination } from './router.js';
import type { DeliveryOptions, Destination, DestinationFailure, LocalSource, DomainAttempt, OutgoingMessage, RecipientOutcome, SevenBitForm, Transport, TransportFactory } from './transport.js';

/**
 * What signs a message on its way out (dkim/signer.ts in production). Delivery knows it only through this
 * interface, so dkim/ and delivery/ never import each other; the composition root (cli/) joins them.
 */
export interface MessageSigner {
  /**
   * Header fields to put in front of the message, each ending in CRLF (DKIM-Signature lines), or null to send it
   * as it is. May read `message.body()` (a fresh body each call); never changes a byte of it. `converted`: the
   * 7-bit form of a message signed at this attempt already (counted once).
   */
  signatures(message: OutgoingMessage, form?: 'as-spooled' | 'converted'): Promise<Buffer | null>;
}

/**
 * Postfix's milter_default_action = tempfail: a message we could not sign is not sent unsigned (a receiver that
 * enforces DMARC would refuse or junk it) but waits for its next attempt, and the reason is in `mta-queue show`.
 */
const SIGNING_FAILED = { code: null, enhanced: '4.3.0' } as const;

/**
 * The Transport decorator that signs (the seam of transport.ts: signing wraps the MX transport). The runner
 * hands every domain of one attempt the same OutgoingMessage, so the signature is made once per message and
 * attempt, and made again at the next attempt, with the keys current then.
 */
export class SigningTransport implements Transport {
  private readonly signed = new WeakMap<OutgoingMessage, Promise<OutgoingMessage>>();

  constructor(
    private readonly inner: Transport,
    private readonly signer: MessageSigner,
    private readonly logger: Logger,
  ) {}

  locate(domain: string): Promise<Destination | DestinationFailure> {
    return locateDestination(this.inner, domain);
  }

  hasIdleConnection(destination: Destination, source?: LocalSource | null): boolean {
    return this.inner.hasIdleConnection?.(destination, source) ?? false;
  }

  async deliver(domain: string, recipients: string[], message: OutgoingMessage, options?: DeliveryOptions): Promise<DomainAttempt> {
    let signing = this.signed.get(message);
    if (!signing) {
      signing = this.sign(message);
      this.signed.set(message, signing);
    }
    let outgoing: OutgoingMessage;
    try {
      outgoing = await signing;
    } catch (error) {
      const outcome = this.signingFailed(message, error, domain);
      return { outcomes: new Map(recipients.map((address) => [address, outcome])), mx: null, ip: null, tls: null };
    }
    return this.inner.deliver(domain, recipients, outgoing, options);
  }

  close(): void {
    this.inner.close();
  }

  private async sign(message: OutgoingMessage): Promise<OutgoingMessage> {
    const head = await this.signer.signatures(message);
    if (!head || head.length === 0) return message;
    let sevenBit: Promise<SevenBitForm> | undefined;
    return {
      ...message,
      body: prepended(head, message.body),
      ...(message.size !== undefined && { size: message.size + head.length }),
      ...(message.eightBit && { sevenBitForm: () => (sevenBit ??= this.signSevenBit(message, head)) }),
    };
  }

  /**
   * For an MX that does not offer 8BITMIME: converting the signed message would break our signature, so the
   * original is converted (eight-bit.ts, which still refuses one the client signed itself) and the result signed
   * anew. Once per message and attempt, like the signature itself.
   */
  private async signSevenBit(message: OutgoingMessage, head: Buffer): Promise<SevenBitForm> {
    const original = await readWhole(message.body());
    const form = sevenBitForm(original);
    if ('refusal' in form) return form;
    // Nothing 8-bit in it after all: it goes as it is, under the signature it has.
    if (form.body === original) return { body: Buffer.concat([head, original]) };
    const converted = form.body;
    try {
      // The kept body hash is the 8-bit body's: this one is hashed afresh, and not kept.
      const convertedHead = await this.signer.signatures({ ...message, body: () => converted, size: converted.length, eightBit: false, bodyHash: {} }, 'converted');
      return { body: convertedHead ? Buffer.concat([convertedHead, converted]) : converted };
    } catch (error) {
      return { refusal: this.signingFailed(message, error) };
    }
  }

  private signingFailed(message: OutgoingMessage, error: unknown, domain?: string): RecipientOutcome {
    this.logger.error({ event: 'dkim-sign-failed', queueId: message.queueId, domain, err: error }, 'DKIM signing failed; the message waits for its next attempt');
    return { verdict: 'transient', reply: { ...SIGNING_FAILED, text: `local error: DKIM signing failed: ${(error as Error).message}` } };
  }
}

/** The MX transport factory with signing around it, as mta-queue's composition root builds it. */
export function signingTransport(factory: TransportFactory, signer: MessageSigner, logger: Logger): TransportFactory {
  return (hooks) => new SigningTransport(factory(hooks), signer, logger);
}

/**
 * `head` then the message, each call a fresh body as OutgoingMessage promises: a buffered message is joined once
 * and shared by every domain's transaction; a streamed one stays streamed (never read whole).
 */
function prepended(head: Buffer, body: OutgoingMessage['body']): OutgoingMessage['body'] {
  let joined: Buffer | undefined;
  return () => {
    const original = body();
    if (Buffer.isBuffer(original)) return (joined ??= Buffer.concat([head, original]));
    return Readable.from(headThen(head, original), { objectMode: false });
  };
}

async function* headThen(head: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  yield head;
  // for await destroys `rest` when the consumer stops early, and rethrows its read errors into our stream.
  for await (const chunk of rest) yield chunk as Buffer;
}
