import { once } from 'node:events';
import { Readable } from 'node:stream';
import type { SpoolLayout } from './layout.js';
import type { SpoolFs } from './spool-fs.js';

/**
 * Where a message's bytes are: a whole `data/<id>.eml`, or a range of a batch file. `bytes` is set when they
 * were already read (a small batch is read in one call), so nothing reads them twice.
 */
export interface MessageSource {
  fs: SpoolFs;
  file: string;
  offset: number;
  length: number;
  bytes?: Buffer | undefined;
}

/** A whole file whose size is not known in advance (read up to its end). */
export function wholeFileSource(fs: SpoolFs, file: string): MessageSource {
  return { fs, file, offset: 0, length: Infinity };
}

export function dataFileSource(layout: SpoolLayout, id: string, length: number): MessageSource {
  return { fs: layout.fs, file: layout.messagePath(id), offset: 0, length };
}

export async function readSource(source: MessageSource): Promise<Buffer> {
  if (source.bytes) return source.bytes;
  const handle = await source.fs.open(source.file, 'r');
  try {
    if (source.offset === 0) return await handle.readFile();
    const buffer = Buffer.alloc(source.length);
    const { bytesRead } = await handle.read(buffer, 0, source.length, source.offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

export function streamSource(source: MessageSource): Readable {
  // A data/ file is read whole (its length is the envelope's claim, the file is the truth); a batch range exactly.
  return source.offset === 0 ? source.fs.createReadStream(source.file) : source.fs.createReadStream(source.file, { start: source.offset, end: source.offset + source.length - 1 });
}

/**
 * A stream of the first of `sources` that exists, opened before it is returned: a missing file is found out here,
 * before anything was sent, so the next place the message can be is tried. null when it is nowhere.
 */
export async function openFirstSource(sources: readonly MessageSource[]): Promise<Readable | null> {
  for (const source of sources) {
    if (source.bytes) return Readable.from([source.bytes]);
    const stream = streamSource(source);
    try {
      await once(stream, 'open');
      return stream;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return null;
}
