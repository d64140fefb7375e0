import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface Reply {
  code: number;
  text: string;
}

/**
 * The benchmark's own plain-SMTP client: one persistent connection, one command at a time (no PIPELINING,
 * like smtp-source), TCP_NODELAY set so Nagle never holds a command back (shared/design/peers.md). Every
 * wait for a reply is bounded by `replyTimeoutMs`.
 */
export class BenchSmtpClient {
  private buffer = '';
  private waiter: { resolve: (reply: Reply) => void; reject: (error: Error) => void; timer: NodeJS.Timeout } | undefined;
  private queued: Reply[] = [];
  private failure: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly replyTimeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => this.onData(text));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection closed by server')));
  }

  /** Connects, reads the 220 greeting and says EHLO. */
  static async open(host: string, port: number, replyTimeoutMs: number): Promise<BenchSmtpClient> {
    const socket = net.connect({ host, port });
    const client = new BenchSmtpClient(socket, replyTimeoutMs);
    await client.expect(await client.read(), 220, 'greeting');
    await client.expect(await client.command('EHLO client.bench.test'), 250, 'EHLO');
    return client;
  }

  /**
   * One transaction: MAIL, RCPT, DATA, the payload (message + `.\r\n`). Resolves with the time from writing
   * the final chunk of the payload to reading the 250 (the durable-commit latency the server adds).
   */
  async sendMessage(from: string, to: string, payload: Buffer, chunkBytes = 256 * 1024): Promise<number> {
    await this.expect(await this.command(`MAIL FROM:<${from}>`), 250, 'MAIL');
    await this.expect(await this.command(`RCPT TO:<${to}>`), 250, 'RCPT');
    await this.expect(await this.command('DATA'), 354, 'DATA');
    let offset = 0;
    while (payload.length - offset > chunkBytes) {
      const more = this.socket.write(payload.subarray(offset, offset + chunkBytes));
      offset += chunkBytes;
      if (!more) await this.drained();
    }
    const sentAt = performance.now();
    this.socket.write(offset === 0 ? payload : payload.subarray(offset));
    const reply = await this.read();
    const latency = performance.now() - sentAt;
    await this.expect(reply, 250, 'end of DATA');
    return latency;
  }

  async quit(): Promise<void> {
    try {
      if (!this.failure) await this.command('QUIT');
    } catch {
      // the server may close first; either way the connection is done
    } finally {
      this.socket.destroy();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  command(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }

  read(): Promise<Reply> {
    const ready = this.queued.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`no reply within ${this.replyTimeoutMs} ms`)), this.replyTimeoutMs);
      this.waiter = { resolve, reject, timer };
    });
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`write stalled for ${this.replyTimeoutMs} ms`)), this.replyTimeoutMs);
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.socket.removeListener('drain', onDrain);
        this.socket.removeListener('close', onClose);
        if (error) reject(error);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(this.failure ?? new Error('connection closed while writing'));
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
    });
  }

  private async expect(reply: Reply, code: number, step: string): Promise<void> {
    if (reply.code !== code) throw new Error(`${step}: expected ${code}, got ${reply.code} ${reply.text}`);
  }

  private onData(text: string): void {
    this.buffer += text;
    let start = 0;
    let lines: string[] = [];
    for (;;) {
      const end = this.buffer.indexOf('\r\n', start);
      if (end < 0) break;
      const line = this.buffer.slice(start, end);
      start = end + 2;
      lines.push(line);
      if (line[3] === '-') continue;
      this.deliver({ code: Number(line.slice(0, 3)), text: lines.join('\n') });
      this.buffer = this.buffer.slice(start);
      start = 0;
      lines = [];
    }
  }

  private deliver(reply: Reply): void {
    const waiter = this.waiter;
    if (!waiter) {
      this.queued.push(reply);
      return;
    }
    this.waiter = undefined;
    clearTimeout(waiter.timer);
    waiter.resolve(reply);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      clearTimeout(waiter.timer);
      waiter.reject(this.failure);
    }
    this.socket.destroy();
  }
}
