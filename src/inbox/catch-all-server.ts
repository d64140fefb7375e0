import { mkdir, open, rename, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { RelayError, toSmtpServerError } from '../shared/errors.js';
import { removeIfPresent, syncDirectory } from '../shared/files.js';
import type { Logger } from '../shared/logger.js';
import { isLoopback } from '../shared/metrics.js';
import { inboxFiles, inboxId, inboxTempFile, InboxStore, type InboxEnvelope } from './inbox-store.js';

/**
 * The local test inbox behind `npm start`: an SMTP server that accepts any sender and any recipient, without
 * AUTH or STARTTLS (mta-queue relays to it with `--relay-tls may`), and keeps every message in one directory
 * (file layout in inbox-store.ts) instead of delivering it. Nothing here relays: the worst a stranger can do
 * is fill the bounded inbox, and the server warns when bound beyond loopback.
 */

export interface CatchAllInboxOptions {
  host: string;
  port: number;
  dir: string;
  /** Bytes; a larger message gets 552 5.3.4 and is not kept. */
  maxMessageSize: number;
  /** Beyond this many the oldest are deleted, so a forgotten `npm start` cannot fill the disk. */
  maxMessages: number;
  /** Name in the greeting and EHLO reply. */
  hostname: string;
  logger: Logger;
}

export interface CatchAllInbox {
  /** The bound port (the real one when asked for port 0). */
  port: number;
  /** Stops accepting, waits for open sessions (at most CLOSE_TIMEOUT_MS) and resolves once the port is free. */
  close(): Promise<void>;
}

/** Idle sessions are hung up after this (smtp-server's default), so a stuck client cannot hold a socket forever. */
const SOCKET_TIMEOUT_MS = 60_000;
/** A session still open at close() gets 421 after this, rather than smtp-server's 30 s: npm start stops quickly. */
const CLOSE_TIMEOUT_MS = 5_000;

class MessageTooLargeError extends RelayError {
  readonly code = 'EINBOXSIZE';
  override readonly smtp = { code: 552, enhanced: '5.3.4' };
}

class InboxWriteError extends RelayError {
  readonly code = 'EINBOXWRITE';
  override readonly smtp = { code: 451, enhanced: '4.3.0' };
}

export async function startCatchAllInbox(options: CatchAllInboxOptions): Promise<CatchAllInbox> {
  const { dir, logger, maxMessageSize, maxMessages } = options;
  if (!(Number.isSafeInteger(maxMessageSize) && maxMessageSize > 0)) throw new RangeError(`maxMessageSize must be a positive integer, got ${maxMessageSize}`);
  if (!(Number.isSafeInteger(maxMessages) && maxMessages > 0)) throw new RangeError(`maxMessages must be a positive integer, got ${maxMessages}`);
  // 0700: the inbox holds whole messages, often with real recipients' addresses and content.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const store = new InboxStore(dir);
  await store.sweep();
  await store.trim(maxMessages);

  // Ids of this server only grow, even within one millisecond, so "the oldest" to trim is the one kept first.
  let lastReceivedAt = 0;
  // One trim at a time: concurrent ones would read the same listing and delete past the limit. A failed trim
  // is logged, not answered: the message itself is kept, and the next one trims again.
  let trimming = Promise.resolve();
  const trimToLimit = () => {
    trimming = trimming
      .then(() => store.trim(maxMessages))
      .then(
        (removed) => {
          if (removed > 0) logger.debug({ event: 'inbox-trimmed', removed, maxMessages }, 'oldest inbox messages removed');
        },
        (error: unknown) => logger.warn({ event: 'inbox-trim-failed', dir, err: error }, 'could not remove the oldest inbox messages'),
      );
    return trimming;
  };

  const server = new SMTPServer({
    name: options.hostname,
    size: maxMessageSize,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    // Hidden so the texts below carry their own enhanced codes: smtp-server would send 250 2.6.0 and 552 5.2.2.
    hideENHANCEDSTATUSCODES: true,
    disableReverseLookup: true,
    socketTimeout: SOCKET_TIMEOUT_MS,
    closeTimeout: CLOSE_TIMEOUT_MS,
    logger: false,
    onData(stream, session, callback) {
      keepMessage(stream, session)
        .then((reply) => callback(null, reply))
        .catch((error: unknown) => {
          if (error instanceof MessageTooLargeError) {
            logger.info({ event: 'inbox-rejected', reason: error.code, from: senderOf(session), to: recipientsOf(session), size: stream.byteLength }, error.message);
            return callback(toSmtpServerError(error));
          }
          logger.error({ event: 'inbox-write-failed', dir, err: error }, 'could not keep a message in the inbox');
          callback(toSmtpServerError(new InboxWriteError('Could not keep the message, try again later', { cause: error })));
        });
    },
  });
  // smtp-server emits connection errors (a client resetting mid-session) on the server; unheard, they would crash.
  server.on('error', (error: Error) => logger.warn({ event: 'inbox-smtp-error', err: error }, 'inbox connection error'));

  async function keepMessage(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const emlTemp = inboxTempFile(dir, 'eml');
    const jsonTemp = inboxTempFile(dir, 'json');
    try {
      // Someone emptying the inbox with `rm -r` while npm start runs must not turn every later message into a 451.
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const size = await receiveToFile(stream, emlTemp, maxMessageSize);
      if (stream.sizeExceeded || size > maxMessageSize) throw new MessageTooLargeError(`Message size exceeds fixed maximum message size of ${maxMessageSize} bytes`);
      const receivedAt = Math.max(Date.now(), lastReceivedAt + 1);
      lastReceivedAt = receivedAt;
      const id = inboxId(receivedAt);
      const envelope: InboxEnvelope = { from: senderOf(session), to: recipientsOf(session), client: session.remoteAddress, receivedAt };
      await writeFile(jsonTemp, JSON.stringify(envelope), { mode: 0o600, flag: 'wx', flush: true });
      const files = inboxFiles(dir, id);
      // Envelope first: a listed .eml always has its .json (inbox-store.ts).
      await rename(jsonTemp, files.json);
      try {
        await rename(emlTemp, files.eml);
      } catch (error) {
        await removeIfPresent(files.json);
        throw error;
      }
      await syncDirectory(dir);
      await trimToLimit();
      logger.info({ event: 'inbox-received', id, from: envelope.from, to: envelope.to, size }, 'inbox received');
      return `2.0.0 Ok: kept as ${id}`;
    } finally {
      await Promise.all([removeIfPresent(emlTemp), removeIfPresent(jsonTemp)]).catch(() => undefined);
    }
  }

  const port = await new Promise<number>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.server.removeListener('error', reject);
      resolve((server.server.address() as AddressInfo).port);
    });
  });
  logger.info({ event: 'inbox-listening', host: options.host, port, dir, maxMessages, maxMessageSize }, 'test inbox listening');
  if (!isLoopback(options.host) && options.host !== 'localhost') logger.warn({ event: 'inbox-exposed', host: options.host, port }, 'test inbox accepts mail from anyone who can reach it, without authentication');

  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Streams DATA into `file` and returns its size. Past `maxSize` the rest is read and dropped, not written: the
 * disk holds at most `maxSize` per message in flight. The stream is always read to its end, because smtp-server
 * sends the reply only after that, and a destroyed data stream would leave the session hanging.
 */
async function receiveToFile(stream: SMTPServerDataStream, file: string, maxSize: number): Promise<number> {
  const handle = await open(file, 'wx', 0o600);
  let size = 0;
  let failure: unknown;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (failure !== undefined || size > maxSize) continue;
      try {
        for (let offset = 0; offset < chunk.length; ) offset += (await handle.write(chunk, offset)).bytesWritten;
      } catch (error) {
        failure = error;
      }
    }
    if (failure !== undefined) throw failure;
    if (size <= maxSize) await handle.datasync();
  } finally {
    await handle.close();
  }
  return size;
}

function senderOf(session: SMTPServerSession): string {
  return session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
}

function recipientsOf(session: SMTPServerSession): string[] {
  return session.envelope.rcptTo.map((recipient) => recipient.address);
}
