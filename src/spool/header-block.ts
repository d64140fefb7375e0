import { open } from 'node:fs/promises';

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
export async function readMessageHead(file: string, limit: number): Promise<MessageHead> {
  const handle = await open(file, 'r');
  try {
    let data = Buffer.alloc(0);
    while (data.length < limit) {
      const chunk = Buffer.alloc(Math.min(READ_CHUNK, limit - data.length));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, data.length);
      if (bytesRead === 0) return { bytes: data, complete: true };
      // Search from 3 bytes back: the CRLFCRLF may straddle two chunks.
      const searchFrom = Math.max(0, data.length - 3);
      data = Buffer.concat([data, chunk.subarray(0, bytesRead)]);
      if (data[0] === 0x0d && data[1] === 0x0a) return { bytes: Buffer.alloc(0), complete: true };
      const blank = data.indexOf('\r\n\r\n', searchFrom);
      if (blank >= 0) return { bytes: data.subarray(0, blank + 2), complete: true };
    }
    return { bytes: data, complete: false };
  } finally {
    await handle.close();
  }
}
