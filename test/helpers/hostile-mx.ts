import net from 'node:net';

/**
 * Raw MXes on node:net, for the peers smtp-server cannot play: replies trickled one continuation line at a time,
 * replies of a megabyte, banners of 421 on every address. Each connection is handed to a script that reads the
 * client's lines and writes whatever bytes it likes. Loopback (127.0.0.x) only; `startRawMx` with host 0.0.0.0 is
 * for proving nothing ever connects there.
 */

export interface RawMxConnection {
  socket: net.Socket;
  /** The next line the client sent (without CRLF), or null once it has closed. */
  nextLine(): Promise<string | null>;
  write(text: string): void;
  /** Lines received so far, in order. */
  lines: string[];
}

export type RawMxScript = (connection: RawMxConnection) => Promise<void> | void;

export interface RawMx {
  host: string;
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

function wrap(socket: net.Socket): RawMxConnection {
  socket.setEncoding('latin1');
  let buffer = '';
  let closed = false;
  const lines: string[] = [];
  const queue: string[] = [];
  const waiters: ((line: string | null) => void)[] = [];
  const flush = () => {
    while (waiters.length && (queue.length || closed)) waiters.shift()!(queue.length ? queue.shift()! : null);
  };
  socket.on('data', (text: string) => {
    buffer += text;
    let index;
    while ((index = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, index).replace(/\r$/, '');
      buffer = buffer.slice(index + 1);
      lines.push(line);
      queue.push(line);
    }
    flush();
  });
  socket.on('close', () => ((closed = true), flush()));
  socket.on('error', () => socket.destroy());
  return {
    socket,
    lines,
    nextLine: () => new Promise((resolve) => (waiters.push(resolve), flush())),
    write: (text) => void (socket.writable && socket.write(text)),
  };
}

export async function startRawMx(options: { host: string; port?: number; script: RawMxScript }): Promise<RawMx> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    Promise.resolve(options.script(wrap(socket))).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(options.port ?? 0, options.host, () => (server.off('error', reject), resolve())));
  return {
    host: options.host,
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return connections;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One raw MX per script, on one port, at consecutive addresses from 127.0.0.2 (as an MTA sees a domain's MXes). */
export async function startRawMxGroup(scripts: RawMxScript[], firstHost = '127.0.0.2'): Promise<{ port: number; mxes: RawMx[]; close(): Promise<void> }> {
  const [a, b, c, d] = firstHost.split('.').map(Number) as [number, number, number, number];
  for (let attempt = 1; ; attempt++) {
    const mxes: RawMx[] = [];
    try {
      for (const [index, script] of scripts.entries()) mxes.push(await startRawMx({ host: `${a}.${b}.${c}.${d + index}`, port: mxes[0]?.port ?? 0, script }));
      return { port: mxes[0]!.port, mxes, close: async () => void (await Promise.all(mxes.map((mx) => mx.close()))) };
    } catch (error) {
      await Promise.all(mxes.map((mx) => mx.close()));
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw error;
    }
  }
}

/** A minimal well-behaved MX conversation from EHLO on; `rcpt` answers every RCPT TO (default 250). */
export async function converse(connection: RawMxConnection, replies: { rcpt?: () => string } = {}): Promise<void> {
  connection.write('220 raw.test ESMTP\r\n');
  for (let line = await connection.nextLine(); line !== null; line = await connection.nextLine()) {
    const verb = line.slice(0, 4).toUpperCase();
    if (verb === 'EHLO' || verb === 'HELO') connection.write('250-raw.test\r\n250 8BITMIME\r\n');
    else if (verb === 'MAIL') connection.write('250 2.1.0 Ok\r\n');
    else if (verb === 'RCPT') connection.write(replies.rcpt?.() ?? '250 2.1.5 Ok\r\n');
    else if (verb === 'DATA') {
      connection.write('354 go ahead\r\n');
      for (let body = await connection.nextLine(); body !== null && body !== '.'; body = await connection.nextLine());
      connection.write('250 2.0.0 queued\r\n');
    } else if (verb === 'RSET') connection.write('250 2.0.0 Ok\r\n');
    else if (verb === 'QUIT') return void (connection.write('221 2.0.0 Bye\r\n'), connection.socket.end());
    else connection.write('502 5.5.2 unknown\r\n');
  }
}
