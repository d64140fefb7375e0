import type { Readable } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import type { Clock } from '../shared/clock.js';
import { hasSmtpReply, SpoolWriteError } from '../shared/errors.js';
import { newRecipient, type ClientInfo } from '../spool/envelope.js';
import type { MessageDraft, MessageWriter } from '../spool/message-writer.js';
import { newQueueId } from '../spool/queue-id.js';
import { envelopeDsn, recipientDsn } from './esmtp-parameters.js';
import { MessageNormalizer } from './message-normalizer.js';
import { submissionHeaderAdditions } from './received-header.js';

export interface ReceiveOptions {
  writer: MessageWriter;
  hostname: string;
  maxSize: number;
  clock: Clock;
}

export interface ReceivedMessage {
  queueId: string;
  size: number;
}

/**
 * Streams one DATA into the spool and resolves only once it is durable (the 250 comes after). On any refusal
 * the rest of the client's DATA is still read and thrown away, so smtp-server answers after the final dot and
 * the client's remaining bytes are never taken for commands.
 */
export async function receiveMessage(stream: Readable, session: SMTPServerSession, options: ReceiveOptions): Promise<ReceivedMessage> {
  const arrivedAt = options.clock.now();
  const queueId = newQueueId(arrivedAt);
  const recipients = session.envelope.rcptTo.map((rcpt) => rcpt.address);
  const client = clientInfo(session);
  const normalizer = new MessageNormalizer(
    options.maxSize,
    submissionHeaderAdditions({
      queueId,
      ourHostname: options.hostname,
      clientAddress: client.address,
      clientHostname: client.hostname,
      helo: client.helo,
      protocol: session.transmissionType || 'ESMTP',
      tls: client.tls,
      recipients,
      date: new Date(arrivedAt),
    }),
  );
  let draft: MessageDraft | undefined;
  try {
    draft = options.writer.create(queueId);
    const target = draft;
    await consume(stream, (chunk) => target.append(normalizer.push(chunk)));
    const tail = draft.append(normalizer.end());
    if (tail) await tail;
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    await draft.commit({
      version: 1,
      sender,
      // RFC 3461 NOTIFY and ORCPT ride with each recipient, for the DSNs delivery writes.
      recipients: session.envelope.rcptTo.map((rcpt) => ({ ...newRecipient(rcpt.address), ...recipientDsn(rcpt) })),
      user: typeof session.user === 'string' ? session.user : null,
      client,
      arrivedAt,
      smtpUtf8: Boolean(session.envelope.smtpUtf8),
      // Declared by the client or seen in the bytes (RFC 6152): delivery needs the truth, not the declaration.
      bodyType: session.envelope.bodyType === '8bitmime' || normalizer.eightBit ? '8bitmime' : '7bit',
      nextAttemptAt: arrivedAt,
      bounceOf: null,
      ...dsnField(session),
    });
    return { queueId, size: normalizer.size };
  } catch (error) {
    await draft?.discard();
    throw hasSmtpReply(error) ? error : new SpoolWriteError('spool write failed', { cause: error });
  }
}

/** RET and ENVID as an envelope field, absent when the client gave neither. */
function dsnField(session: SMTPServerSession): { dsn?: ReturnType<typeof envelopeDsn> } {
  const dsn = envelopeDsn(session.envelope);
  return dsn ? { dsn } : {};
}

function clientInfo(session: SMTPServerSession): ClientInfo {
  const tls = session.secure && session.tlsOptions ? { version: session.tlsOptions.version, cipher: session.tlsOptions.name } : null;
  return {
    address: session.remoteAddress,
    // smtp-server puts the bracketed address here when it did no reverse look-up: that is no name.
    hostname: session.clientHostname && !session.clientHostname.startsWith('[') ? session.clientHostname : null,
    helo: session.hostNameAppearsAs || null,
    tls,
  };
}

/**
 * Feeds every chunk to `handle`; a returned promise pauses the client until it settles (disk backpressure).
 * On the first failure the stream keeps flowing into nothing until its end and the promise rejects.
 */
function consume(stream: Readable, handle: (chunk: Buffer) => Promise<void> | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      stream.removeListener('data', onData);
      stream.on('data', discardChunk);
      stream.resume();
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      let pending: Promise<void> | undefined;
      try {
        pending = handle(chunk);
      } catch (error) {
        return fail(error);
      }
      if (!pending) return;
      stream.pause();
      pending.then(() => failed || stream.resume(), fail);
    };
    stream.on('data', onData);
    stream.once('end', () => failed || resolve());
    stream.once('error', fail);
  });
}

function discardChunk(): void {}
