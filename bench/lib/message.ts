/** Test messages of an exact size, safe to send as DATA without dot-stuffing (no line starts with '.'). */

export const BENCH_SENDER = 'a@bench.test';
export const BENCH_RECIPIENT = 'b@sink.test';

const LINE_BODY = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor';

/** A complete RFC 5322 message of exactly `totalBytes` bytes, CRLF line endings, ending in CRLF. */
export function buildMessage(totalBytes: number, subject = 'mta-relay intake benchmark'): Buffer {
  const header =
    `From: <${BENCH_SENDER}>\r\nTo: <${BENCH_RECIPIENT}>\r\nSubject: ${subject}\r\n` +
    `Date: ${new Date().toUTCString().replace(/GMT$/, '+0000')}\r\nMessage-ID: <bench.${Date.now()}@bench.test>\r\n` +
    'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n';
  if (totalBytes < header.length + 2) throw new Error(`message size ${totalBytes} is smaller than its header (${header.length + 2} bytes)`);
  const out = Buffer.alloc(totalBytes);
  let offset = out.write(header, 'latin1');
  const line = `${LINE_BODY}\r\n`;
  while (totalBytes - offset >= line.length + 2) offset += out.write(line, offset, 'latin1');
  // Pad the last line so the total is exact: `x…x\r\n`, at least the CRLF.
  const left = totalBytes - offset;
  out.fill('x', offset, offset + left - 2);
  out.write('\r\n', totalBytes - 2, 'latin1');
  return out;
}

/** The message followed by the DATA terminator: what a client writes after 354. */
export function dataPayload(message: Buffer): Buffer {
  return Buffer.concat([message, Buffer.from('.\r\n')]);
}
