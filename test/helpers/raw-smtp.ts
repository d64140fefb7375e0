import net from 'node:net';
import tls from 'node:tls';

export interface Reply {
  code: number;
  /** Text of every line without the code and separator. */
  lines: string[];
  /** The whole reply as received, e.g. `452 4.3.1 spool write failed`. */
  raw: string;
}

/**
 * A byte-level SMTP client for the cases real clients refuse to produce: bare line endings, smuggling
 * payloads, malformed commands, pipelined junk. Replies are read strictly in order.
 */
export class RawSmtpClient {
  private buffer = '';
  private waiters: { resolve: (reply: Reply) => void; reject: (error: Error) => void }[] = [];
  private replies: Reply[] = [];
  private closedError: Error | undefined;
  private socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  static async connect(port: number, options: { host?: string; localAddress?: string; implicitTls?: boolean } = {}): Promise<{ client: RawSmtpClient; greeting: Reply }> {
    const host = options.host ?? '127.0.0.1';
    const socket = options.implicitTls
      ? tls.connect({ socket: net.connect({ host, port, localAddress: options.localAddress }), rejectUnauthorized: false, servername: 'localhost' })
      : net.connect({ host, port, localAddress: options.localAddress });
    socket.setNoDelay(true);
    const client = new RawSmtpClient(socket);
    return { client, greeting: await client.read() };
  }

  private attach(socket: net.Socket): void {
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => {
      this.buffer += text;
      this.parse();
    });
    const closed = (error?: Error) => {
      this.closedError = error ?? new Error('connection closed');
      for (const waiter of this.waiters.splice(0)) waiter.reject(this.closedError);
    };
    socket.on('close', () => closed());
    socket.on('error', (error) => closed(error));
  }

  private parse(): void {
    let lines: string[] = [];
    let raw = '';
    let offset = 0;
    for (;;) {
      const end = this.buffer.indexOf('\r\n', offset);
      if (end < 0) break;
      const line = this.buffer.slice(offset, end);
      offset = end + 2;
      lines.push(line.slice(4));
      raw += (raw ? '\n' : '') + line;
      if (line[3] !== '-') {
        const reply = { code: Number(line.slice(0, 3)), lines, raw };
        this.buffer = this.buffer.slice(offset);
        offset = 0;
        lines = [];
        raw = '';
        const waiter = this.waiters.shift();
        if (waiter) waiter.resolve(reply);
        else this.replies.push(reply);
      }
    }
  }

  read(timeoutMs = 10_000): Promise<Reply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        resolve: (reply) => (clearTimeout(timer), resolve(reply)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  /** STARTTLS and the TLS handshake; the caller sends EHLO again afterwards (RFC 3207). */
  async startTls(): Promise<Reply> {
    const reply = await this.command('STARTTLS');
    if (reply.code !== 220) return reply;
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
    return reply;
  }

  get isTls(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  /** Resolves when the server has closed the connection. */
  closed(timeoutMs = 10_000): Promise<void> {
    if (this.socket.destroyed || this.closedError) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('connection still open')), timeoutMs);
      this.socket.once('close', () => (clearTimeout(timer), resolve()));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** EHLO, STARTTLS, EHLO again and AUTH PLAIN: the usual way into a submission session. */
export async function loginOverStartTls(port: number, user: string, password: string, localAddress?: string): Promise<RawSmtpClient> {
  const { client } = await RawSmtpClient.connect(port, { localAddress });
  await client.command('EHLO test.example');
  await client.startTls();
  await client.command('EHLO test.example');
  const auth = await client.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`);
  if (auth.code !== 235) throw new Error(`AUTH failed: ${auth.raw}`);
  return client;
}
