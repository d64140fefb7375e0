import { throttleKey } from '../shared/auth-throttle.js';
import type { Logger } from '../shared/logger.js';

export interface ConnectionLogPolicy {
  /** Connection lines written per client (IPv6: per /64) in one window; the rest are only counted. */
  linesPerClient: number;
  /** Length of a window in milliseconds; when it ends the counts are logged and start again. */
  window: number;
}

export const DEFAULT_CONNECTION_LOG: ConnectionLogPolicy = { linesPerClient: 20, window: 60_000 };

/**
 * Clients tracked in one window. Past it, the lines of new clients share one budget under OTHER_CLIENTS, so a sender
 * spread over many addresses can neither grow this map without bound nor log without bound.
 */
const MAX_CLIENTS = 10_000;
const OTHER_CLIENTS = '*';

type Level = 'debug' | 'info' | 'warn';

interface ClientWindow {
  written: number;
  /** Lines not written, by event name. */
  suppressed: Map<string, number>;
}

/**
 * The log lines every connection causes (connect, disconnect, a refusal at connect, a failed TLS handshake), at most
 * `linesPerClient` per client per window. A client reconnecting without pause wrote about 0.8 MB of log a second;
 * now it writes its share, then one `connection-log-suppressed` line per window with what was left out, by event.
 */
export class ConnectionLog {
  private readonly clients = new Map<string, ClientWindow>();
  private windowEnd: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly policy: ConnectionLogPolicy = DEFAULT_CONNECTION_LOG,
  ) {}

  write(level: Level, fields: { event: string; client: string } & Record<string, unknown>, message: string): void {
    if (!this.logger.isLevelEnabled(level)) return;
    const window = this.windowOf(fields.client);
    if (window.written < this.policy.linesPerClient) {
      window.written++;
      this.logger[level](fields, message);
      return;
    }
    window.suppressed.set(fields.event, (window.suppressed.get(fields.event) ?? 0) + 1);
  }

  /** Ends the window now (also on close, so no count is lost): one summary line per client that went past its share. */
  flush(): void {
    clearTimeout(this.windowEnd);
    this.windowEnd = undefined;
    for (const [client, { suppressed }] of this.clients) {
      if (suppressed.size === 0) continue;
      const events = Object.fromEntries(suppressed);
      const total = [...suppressed.values()].reduce((sum, count) => sum + count, 0);
      this.logger.warn(
        { event: 'connection-log-suppressed', client, suppressed: total, events, window: this.policy.window, linesPerClient: this.policy.linesPerClient },
        `${total} connection log lines from ${client} not written (more than ${this.policy.linesPerClient} in the window)`,
      );
    }
    this.clients.clear();
  }

  private windowOf(address: string): ClientWindow {
    const key = throttleKey(address);
    const known = this.clients.get(key);
    if (known) return known;
    const shared = this.clients.size >= MAX_CLIENTS ? OTHER_CLIENTS : key;
    let window = this.clients.get(shared);
    if (!window) this.clients.set(shared, (window = { written: 0, suppressed: new Map() }));
    if (!this.windowEnd) {
      this.windowEnd = setTimeout(() => this.flush(), this.policy.window);
      this.windowEnd.unref();
    }
    return window;
  }
}
