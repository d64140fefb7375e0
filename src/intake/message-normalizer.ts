import { isAscii } from 'node:buffer';
import { MessageTooLargeError } from './refusals.js';

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');
/** Headers longer than this are passed on as they are, without looking for Message-ID/Date. */
const MAX_HEADER_SCAN = 256 * 1024;

export interface HeaderAdditions {
  /** Prepended to the message: our Received line, already folded and CRLF-terminated. */
  prepend: string;
  /** Added at the end of the header block only when the submission lacks that field (RFC 6409 §8). */
  ifMissing: { name: string; line: string }[];
}

/**
 * Turns the DATA stream smtp-server hands us (dot-unstuffed, terminator removed) into the bytes we spool:
 * every bare LF and bare CR becomes CRLF (Postfix 3.9 `smtpd_forbid_bare_newline=normalize`), so `\n.\n` or
 * `\r.\r` can never end the message at the next hop and smuggle a second one; our Received line goes first;
 * Message-ID and Date are added when missing. Everything else passes byte for byte. Input beyond `maxSize`
 * bytes throws MessageTooLargeError at once, so an oversize message is never buffered or written whole.
 */
export class MessageNormalizer {
  private pendingCr = false;
  private inputBytes = 0;
  private header: Buffer[] | undefined = [];
  private headerBytes = 0;
  private sawEightBit = false;

  constructor(
    private readonly maxSize: number,
    private readonly additions: HeaderAdditions,
  ) {}

  /** Bytes of the submitted message after line-ending normalisation, without what we add. */
  get size(): number {
    return this.inputBytes;
  }

  /**
   * Some byte of the message is >= 0x80 (RFC 6152 8BITMIME). Clients rarely declare BODY=8BITMIME (PHPMailer never
   * does), and delivery must know, since an 8-bit message may not go to an MX that does not offer it (RFC 6152 §3).
   */
  get eightBit(): boolean {
    return this.sawEightBit;
  }

  push(chunk: Buffer): Buffer[] {
    // isAscii is one native (SIMD) pass; nothing is scanned once the answer is known.
    if (!this.sawEightBit && !isAscii(chunk)) this.sawEightBit = true;
    return this.emit(this.normalizeLineEndings(chunk));
  }

  end(): Buffer[] {
    const out: Buffer[] = [];
    if (this.pendingCr) {
      this.pendingCr = false;
      this.count(CRLF.length);
      out.push(...this.emit(CRLF));
    }
    if (this.header) out.push(...this.finishHeader(Buffer.concat(this.header), true));
    return out;
  }

  private normalizeLineEndings(chunk: Buffer): Buffer {
    const parts: Buffer[] = [];
    let start = 0;
    if (this.pendingCr) {
      this.pendingCr = false;
      parts.push(CRLF);
      if (chunk[0] === LF) start = 1;
    }
    // indexOf keeps the common case (text that already uses CRLF) at two native scans per line.
    let nextCr = chunk.indexOf(CR, start);
    let nextLf = chunk.indexOf(LF, start);
    while (nextCr !== -1 || nextLf !== -1) {
      if (nextCr !== -1 && (nextLf === -1 || nextCr < nextLf)) {
        if (nextCr + 1 === chunk.length) {
          parts.push(chunk.subarray(start, nextCr));
          this.pendingCr = true; // its LF may open the next chunk
          start = chunk.length;
          break;
        }
        if (chunk[nextCr + 1] === LF) {
          nextCr = chunk.indexOf(CR, nextCr + 2);
          nextLf = chunk.indexOf(LF, nextLf + 1);
          continue;
        }
        parts.push(chunk.subarray(start, nextCr), CRLF);
        start = nextCr + 1;
        nextCr = chunk.indexOf(CR, start);
      } else {
        parts.push(chunk.subarray(start, nextLf), CRLF);
        start = nextLf + 1;
        nextLf = chunk.indexOf(LF, start);
      }
    }
    if (parts.length === 0) {
      this.count(chunk.length);
      return chunk;
    }
    parts.push(chunk.subarray(start));
    const normalized = Buffer.concat(parts);
    this.count(normalized.length);
    return normalized;
  }

  private count(bytes: number): void {
    this.inputBytes += bytes;
    if (this.inputBytes > this.maxSize) throw new MessageTooLargeError(`Message exceeds the size limit of ${this.maxSize} bytes`);
  }

  private emit(data: Buffer): Buffer[] {
    if (!this.header) return data.length ? [data] : [];
    this.header.push(data);
    this.headerBytes += data.length;
    const seen = Buffer.concat(this.header);
    const end = headerEnd(seen);
    if (end >= 0) return this.finishHeader(seen.subarray(0, end), false).concat(seen.subarray(end));
    if (this.headerBytes > MAX_HEADER_SCAN) return this.finishHeader(seen, true);
    this.header = [seen];
    return [];
  }

  /** `block` holds complete header lines, each with its CRLF; `unterminated` means no blank line followed yet. */
  private finishHeader(block: Buffer, unterminated: boolean): Buffer[] {
    this.header = undefined;
    const present = presentFieldNames(block);
    const missing = this.additions.ifMissing.filter((field) => !present.has(field.name.toLowerCase()));
    const out: Buffer[] = [Buffer.from(this.additions.prepend)];
    // What we add counts too: a Received line naming a UTF-8 recipient is 8-bit.
    if (!isAscii(out[0]!)) this.sawEightBit = true;
    if (missing.length === 0 || (unterminated && this.headerBytes > MAX_HEADER_SCAN)) return out.concat(block);
    const endsWithNewline = block.length === 0 || block.subarray(-2).equals(CRLF);
    return out.concat(block, endsWithNewline ? [] : [CRLF], Buffer.from(missing.map((field) => field.line).join('')));
  }
}

/** Index just after the last header line's CRLF (the blank line follows), or -1 while still in the header. */
function headerEnd(data: Buffer): number {
  if (data.length >= 2 && data[0] === CR && data[1] === LF) return 0; // no header at all
  const blank = data.indexOf('\r\n\r\n');
  return blank >= 0 ? blank + 2 : -1;
}

function presentFieldNames(block: Buffer): Set<string> {
  const names = new Set<string>();
  for (const line of block.toString('latin1').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && line[0] !== ' ' && line[0] !== '\t') names.add(line.slice(0, colon).trim().toLowerCase());
  }
  return names;
}
