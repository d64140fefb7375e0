import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { MailParser } from 'mailparser';
import { removeIfPresent } from '../shared/files.js';
import type { InboxMessage, InboxSummary, InboxView } from '../shared/inbox-view.js';

/**
 * The local test inbox on disk: what the catch-all server (catch-all-server.ts) writes and the web UI reads.
 *
 * One message is two files in one flat directory, named by its id `<receivedAt ms, base36, 9 digits>-<8 hex>`:
 * - `<id>.eml`: the message exactly as the client sent it at DATA (dot-unstuffed, nothing added), so it opens in
 *   any mail client and its DKIM signature still verifies;
 * - `<id>.json`: the envelope, `{"from":"","to":[…],"client":"127.0.0.1","receivedAt":1700000000000}` (InboxEnvelope).
 * The JSON is renamed into place before the .eml, so a listed .eml has its envelope; a .json alone is a write in
 * progress (or a crash's leftover, removed when the server starts). Names starting with `.tmp-` are writes in
 * progress. Ids sort as text in arrival order, so "newest first" needs no file read. One server per directory.
 */

/** What `<id>.json` holds. */
export interface InboxEnvelope {
  from: string;
  to: string[];
  /** The client's IP address. */
  client: string;
  receivedAt: number;
}

/** Ids as the server names them: anything else (`../x`, `a/b`, `.tmp-…`) never becomes a path. */
const INBOX_ID = /^[0-9a-z]{9}-[0-9a-f]{8}$/;
const MESSAGE_FILE = /^([0-9a-z]{9}-[0-9a-f]{8})\.eml$/;
const ENVELOPE_FILE = /^([0-9a-z]{9}-[0-9a-f]{8})\.json$/;
const TEMP_PREFIX = '.tmp-';

/** Bytes read from the start of a message for the list and the header view: a 50 MB body is never read. */
const HEAD_LIMIT = 64 * 1024;
/** Files open at once while listing, far below a default 1024-descriptor limit. */
const READ_CONCURRENCY = 16;

/** Nine base36 digits last until the year 5188, so ids of different lengths never need comparing. */
export function inboxId(receivedAt: number): string {
  return `${receivedAt.toString(36).padStart(9, '0')}-${randomBytes(4).toString('hex')}`;
}

export function isInboxId(id: unknown): id is string {
  return typeof id === 'string' && INBOX_ID.test(id);
}

export function inboxFiles(dir: string, id: string): { eml: string; json: string } {
  return { eml: path.join(dir, `${id}.eml`), json: path.join(dir, `${id}.json`) };
}

/** A name in the same directory (so the rename is atomic) that list() never shows. */
export function inboxTempFile(dir: string, extension: 'eml' | 'json'): string {
  return path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}.${extension}`);
}

export class InboxStore implements InboxView {
  constructor(private readonly dir: string) {}

  /** The newest `limit` messages, and how many there are in all. */
  async list(limit: number): Promise<{ messages: InboxSummary[]; total: number }> {
    const ids = (await this.ids()).reverse();
    const wanted = ids.slice(0, Math.max(0, Math.floor(limit) || 0));
    const read: (InboxMessage | null)[] = [];
    for (let start = 0; start < wanted.length; start += READ_CONCURRENCY) {
      read.push(...(await Promise.all(wanted.slice(start, start + READ_CONCURRENCY).map((id) => this.read(id)))));
    }
    const messages = read.flatMap((message): InboxSummary[] => (message ? [summaryOf(message)] : []));
    // A message trimmed or cleared between the directory read and its own is gone: not counted either.
    return { messages, total: ids.length - (wanted.length - messages.length) };
  }

  async get(id: string): Promise<InboxMessage | null> {
    return isInboxId(id) ? this.read(id) : null;
  }

  async raw(id: string): Promise<Buffer | null> {
    if (!isInboxId(id)) return null;
    return ifPresent(() => readFile(inboxFiles(this.dir, id).eml));
  }

  /** Deletes every message; returns how many there were. */
  async clear(): Promise<number> {
    return this.removeAll(await this.ids());
  }

  /** Deletes the oldest messages beyond `keep`; returns how many. */
  async trim(keep: number): Promise<number> {
    const ids = await this.ids();
    return this.removeAll(ids.slice(0, Math.max(0, ids.length - keep)));
  }

  /**
   * Removes what an interrupted write left: temp files, and envelopes whose message never arrived. Only safe
   * while no server writes to the directory (the server calls it before it listens). Returns how many.
   */
  async sweep(): Promise<number> {
    const names = (await ifPresent(() => readdir(this.dir))) ?? [];
    const messages = new Set(names.flatMap((name) => MESSAGE_FILE.exec(name)?.[1] ?? []));
    const leftovers = names.filter((name) => name.startsWith(TEMP_PREFIX) || (ENVELOPE_FILE.test(name) && !messages.has(name.slice(0, -'.json'.length))));
    for (const name of leftovers) await removeIfPresent(path.join(this.dir, name));
    return leftovers.length;
  }

  /** Ids of the messages, oldest first. */
  private async ids(): Promise<string[]> {
    const names = (await ifPresent(() => readdir(this.dir))) ?? [];
    return names.flatMap((name) => MESSAGE_FILE.exec(name)?.[1] ?? []).sort();
  }

  private async removeAll(ids: string[]): Promise<number> {
    let removed = 0;
    for (const id of ids) {
      const files = inboxFiles(this.dir, id);
      // The .eml first: a .json left alone by a failure here is never listed.
      if ((await ifPresent(() => unlink(files.eml).then(() => true))) === true) removed++;
      await removeIfPresent(files.json);
    }
    return removed;
  }

  private async read(id: string): Promise<InboxMessage | null> {
    const files = inboxFiles(this.dir, id);
    const head = await ifPresent(() => readHead(files.eml));
    if (!head) return null;
    const envelope = await readEnvelope(files.json);
    const headers = headerBlock(head.bytes, head.size <= head.bytes.length);
    return {
      id,
      receivedAt: envelope.receivedAt ?? parseInt(id.slice(0, 9), 36),
      from: envelope.from ?? '',
      to: envelope.to ?? [],
      subject: await decodeSubject(headers),
      size: head.size,
      headers,
    };
  }
}

function summaryOf({ headers: _headers, ...summary }: InboxMessage): InboxSummary {
  return summary;
}

async function readHead(file: string): Promise<{ bytes: Buffer; size: number }> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(Math.min(size, HEAD_LIMIT));
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return { bytes: buffer.subarray(0, filled), size };
  } finally {
    await handle.close();
  }
}

/** A missing or damaged envelope (edited by hand, or a clear() racing the server) leaves the message readable. */
async function readEnvelope(file: string): Promise<Partial<InboxEnvelope>> {
  let value: Partial<Record<keyof InboxEnvelope, unknown>>;
  try {
    value = JSON.parse(await readFile(file, 'utf8')) ?? {};
  } catch {
    return {};
  }
  const to = Array.isArray(value.to) && value.to.every((address) => typeof address === 'string') ? (value.to as string[]) : undefined;
  return {
    ...(typeof value.from === 'string' && { from: value.from }),
    ...(to && { to }),
    ...(typeof value.receivedAt === 'number' && { receivedAt: value.receivedAt }),
  };
}

/**
 * The header block of a message's first bytes: up to the first empty line (RFC 5322 §2.1), or the whole of a
 * message that has no body. Cut at a line end when it does not fit in HEAD_LIMIT; bare LFs become CRLF.
 */
function headerBlock(head: Buffer, whole: boolean): string {
  if (head[0] === 0x0a || (head[0] === 0x0d && head[1] === 0x0a)) return '';
  const ends = [head.indexOf('\n\n'), head.indexOf('\n\r\n')].filter((index) => index >= 0);
  const end = ends.length > 0 ? Math.min(...ends) + 1 : whole ? head.length : head.lastIndexOf('\n') + 1;
  const text = head.subarray(0, end).toString('utf8').replace(/\r?\n/g, '\r\n');
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= HEAD_LIMIT) return text;
  // Only bare LFs grow the text past the limit; the cut falls on a CRLF, never inside a UTF-8 sequence.
  return bytes.subarray(0, bytes.lastIndexOf('\r\n', HEAD_LIMIT - 2) + 2).toString('utf8');
}

/**
 * mailparser's header parsing (unfolding, RFC 2047 words in any charset, raw UTF-8) on the header block alone.
 * Its 'headers' event, not simpleParser: that builds text and HTML bodies too, about three times the cost per message.
 */
function decodeSubject(headers: string): Promise<string> {
  if (!/^subject:/im.test(headers)) return Promise.resolve('');
  return new Promise((resolve) => {
    const parser = new MailParser();
    parser.on('headers', (parsed) => {
      const subject = parsed.get('subject');
      resolve(typeof subject === 'string' ? subject : '');
    });
    parser.on('data', (part: { type: string; release?: () => void }) => part.release?.());
    parser.on('error', () => resolve(''));
    parser.on('end', () => resolve(''));
    parser.end(Buffer.from(`${headers}\r\n`, 'utf8'));
  });
}

/** Runs a file operation; a file or directory that is not there (any more) gives null. */
async function ifPresent<T>(operation: () => Promise<T>): Promise<T | null> {
  try {
    return await operation();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw error;
  }
}
