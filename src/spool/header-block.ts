import type { MessageSource } from './message-source.js';

const READ_CHUNK = 16 * 1024;

export interface MessageHead {
  /** The header lines, each with its CRLF, without the blank line that ends them (empty when there is no header). */
  bytes: Buffer;
  /** False when `limit` was reached before the blank line: `bytes` is then the first `limit` bytes, cut anywhere. */
  complete: boolean;
}

/**
 * The header block of a spooled message (CRLF line endings only), read in chunks up to the blank line and never
 * past `limit`, so a 25 MB message costs one or two reads. Rejects with ENOENT when the file is missing.
 */
export async function readMessageHead(source: MessageSource, limit: number): Promise<MessageHead> {
  if (source.bytes) {
    const data = source.bytes.subarray(0, limit);
    return completeHead(data) ?? { bytes: data, complete: source.bytes.length <= limit };
  }
  const handle = await source.fs.open(source.file, 'r');
  try {
    let data = Buffer.alloc(0);
    const end = Math.min(limit, source.length);
    while (data.length < end) {
      const chunk = Buffer.alloc(Math.min(READ_CHUNK, end - data.length));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, source.offset + data.length);
      if (bytesRead === 0) return { bytes: data, complete: true };
      // Search from 3 bytes back: the CRLFCRLF may straddle two chunks.
      const searchFrom = Math.max(0, data.length - 3);
      data = Buffer.concat([data, chunk.subarray(0, bytesRead)]);
      const head = completeHead(data, searchFrom);
      if (head) return head;
    }
    return { bytes: data, complete: data.length < limit };
  } finally {
    await handle.close();
  }
}

/** The header block when `data` holds its end (the blank line), looking for it from `from` on. */
function completeHead(data: Buffer, from = 0): MessageHead | undefined {
  if (data[0] === 0x0d && data[1] === 0x0a) return { bytes: Buffer.alloc(0), complete: true };
  const blank = data.indexOf('\r\n\r\n', from);
  return blank >= 0 ? { bytes: data.subarray(0, blank + 2), complete: true } : undefined;
}
