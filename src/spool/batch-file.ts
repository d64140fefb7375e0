import { CorruptSpoolEntryError } from '../shared/errors.js';
import { parseEnvelope, serializeEnvelope, type Envelope } from './envelope.js';
import type { MessageSource } from './message-source.js';
import type { SpoolFs } from './spool-fs.js';

/**
 * A batch file (`incoming/<id>.batch`, docs/spool.md) holds one or more whole messages, each followed by its
 * envelope: what mta-server commits in one write and one fdatasync for every session that finished DATA while
 * the previous commit ran (group commit). Postfix pays one fsync per message; this pays one per batch.
 *
 * Record: a 32-byte ASCII header `MTAB1 <body length, 12 digits> <envelope length, 12 digits>\n`, the message
 * bytes, then the envelope JSON. The envelope comes last so a message streamed to disk (too big to hold in
 * memory) needs no size known in advance: its header is rewritten in place once the size is known.
 */
export const RECORD_HEADER_BYTES = 32;
const MAGIC = 'MTAB1';
const DIGITS = 12;
/** Batches up to this size are read in one call; bigger ones (a single large message) are read piecewise. */
const WHOLE_READ_LIMIT = 4 * 1024 * 1024;

export interface BatchRecord {
  envelope: Envelope;
  source: MessageSource;
}

export function recordHeader(bodyLength: number, envelopeLength: number): Buffer {
  const header = `${MAGIC} ${String(bodyLength).padStart(DIGITS, '0')} ${String(envelopeLength).padStart(DIGITS, '0')}\n`;
  return Buffer.from(header, 'latin1');
}

/** The buffers of one record, ready for writev. */
export function encodeRecord(envelope: Envelope, body: readonly Buffer[]): Buffer[] {
  const json = Buffer.from(serializeEnvelope(envelope));
  return [recordHeader(envelope.size, json.length), ...body, json];
}

function parseHeader(bytes: Buffer, file: string, offset: number): { bodyLength: number; envelopeLength: number } {
  const match = /^MTAB1 (\d{12}) (\d{12})\n$/.exec(bytes.toString('latin1'));
  if (!match) throw new CorruptSpoolEntryError(`${file}: no record header at byte ${offset}`);
  return { bodyLength: Number(match[1]), envelopeLength: Number(match[2]) };
}

interface RecordPlace {
  bodyOffset: number;
  bodyLength: number;
  envelopeLength: number;
}

type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/**
 * Walks the records of a batch, reading the file in one call when it is small, else piecewise (headers, and
 * whatever `visit` asks for). Lengths that do not add up make the whole file corrupt: nothing in it is then trusted.
 */
async function eachRecord<T>(fs: SpoolFs, file: string, visit: (place: RecordPlace, read: ReadAt, whole: boolean) => Promise<T>): Promise<T[]> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const whole = size <= WHOLE_READ_LIMIT ? await handle.readFile() : undefined;
    const read: ReadAt = async (offset, length) => {
      if (offset + length > size) throw new CorruptSpoolEntryError(`${file}: record at byte ${offset} runs past the end`);
      if (whole) return whole.subarray(offset, offset + length);
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      if (bytesRead < length) throw new CorruptSpoolEntryError(`${file}: short read at byte ${offset}`);
      return buffer;
    };
    const results: T[] = [];
    for (let offset = 0; offset < size; ) {
      const { bodyLength, envelopeLength } = parseHeader(await read(offset, RECORD_HEADER_BYTES), file, offset);
      const bodyOffset = offset + RECORD_HEADER_BYTES;
      if (bodyOffset + bodyLength + envelopeLength > size) throw new CorruptSpoolEntryError(`${file}: record at byte ${offset} runs past the end`);
      results.push(await visit({ bodyOffset, bodyLength, envelopeLength }, read, whole !== undefined));
      offset = bodyOffset + bodyLength + envelopeLength;
    }
    if (results.length === 0) throw new CorruptSpoolEntryError(`${file}: empty batch`);
    return results;
  } finally {
    await handle.close();
  }
}

/**
 * Every record of a batch. Small batches keep the message bytes in memory (`source.bytes`), so delivery reads
 * the file once; a big one is read header and envelope only.
 */
export function readBatch(fs: SpoolFs, file: string): Promise<BatchRecord[]> {
  return eachRecord(fs, file, async ({ bodyOffset, bodyLength, envelopeLength }, read, whole) => {
    const envelope = parseEnvelope((await read(bodyOffset + bodyLength, envelopeLength)).toString('utf8'), file);
    if (envelope.size !== bodyLength) throw new CorruptSpoolEntryError(`${file}: ${envelope.id} says ${envelope.size} bytes, record has ${bodyLength}`);
    return { envelope, source: { fs, file, offset: bodyOffset, length: bodyLength, bytes: whole ? await read(bodyOffset, bodyLength) : undefined } };
  });
}

/** How many messages a batch holds, from its record headers alone: no envelope is parsed (a count wants none). */
export async function countBatchRecords(fs: SpoolFs, file: string): Promise<number> {
  return (await eachRecord(fs, file, async () => undefined)).length;
}
