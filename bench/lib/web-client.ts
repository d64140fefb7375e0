import http from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * The web benchmark's HTTP client: one keep-alive connection to mta-queue's web UI on a loopback address (an
 * http.Agent with one socket, so requests go one after another as from one browser tab), a cookie jar for the
 * session, and a hard time limit on every request. Times are from the request being issued to the last byte of
 * the body read.
 */

export const SESSION_COOKIE = 'mta_session';

export interface WebResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Request issued → whole body read. */
  ms: number;
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  body?: string;
  headers?: Record<string, string>;
  /** Send the cookie jar (default true). */
  cookies?: boolean;
  /** HTTP Basic credentials instead of (or besides) the cookie. */
  basic?: { user: string; password: string };
}

export class WebClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  private readonly jar = new Map<string, string>();
  private readonly seen = new WeakSet<Socket>();
  /** TCP connections opened so far: 1 after any number of requests means keep-alive held. */
  connections = 0;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly timeoutMs = 30_000,
  ) {
    if (!/^127\.\d+\.\d+\.\d+$/.test(host)) throw new Error(`web client: ${host} is not a loopback address`);
  }

  get origin(): string {
    return `http://${this.host}:${this.port}`;
  }

  get hasSession(): boolean {
    return this.jar.has(SESSION_COOKIE);
  }

  get(pathAndQuery: string, options: Omit<RequestOptions, 'method' | 'body'> = {}): Promise<WebResponse> {
    return this.request(pathAndQuery, options);
  }

  request(pathAndQuery: string, options: RequestOptions = {}): Promise<WebResponse> {
    const headers: Record<string, string> = { accept: '*/*', ...options.headers };
    if (options.cookies !== false && this.jar.size) headers.cookie = [...this.jar].map(([name, value]) => `${name}=${value}`).join('; ');
    if (options.basic) headers.authorization = `Basic ${Buffer.from(`${options.basic.user}:${options.basic.password}`).toString('base64')}`;
    const body = options.body === undefined ? undefined : Buffer.from(options.body);
    if (body) headers['content-length'] = String(body.length);
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const request = http.request({ host: this.host, port: this.port, path: pathAndQuery, method: options.method ?? 'GET', headers, agent: this.agent });
      const timer = setTimeout(() => request.destroy(new Error(`no complete answer to ${options.method ?? 'GET'} ${pathAndQuery} within ${this.timeoutMs} ms`)), this.timeoutMs);
      request.on('socket', (socket: Socket) => {
        if (!this.seen.has(socket)) {
          this.seen.add(socket);
          this.connections += 1;
        }
      });
      request.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.once('response', (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.once('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
        response.once('end', () => {
          clearTimeout(timer);
          const ms = performance.now() - started;
          this.keepCookies(response.headers['set-cookie']);
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks), ms });
        });
      });
      request.end(body);
    });
  }

  /**
   * Logs in as a browser does: GET /login (for cookies and a CSRF token, if the form has one), then POST /login
   * with the form; expects a redirect (303) setting the session cookie. Throws saying what came back otherwise.
   */
  async login(user: string, password: string): Promise<void> {
    const form = new URLSearchParams({ username: user, password });
    const extra: Record<string, string> = {};
    const page = await this.get('/login').catch(() => null);
    const token = page && page.status === 200 ? csrfToken(page.body.toString('utf8')) : null;
    if (token) {
      form.set(token.field, token.value);
      extra['x-csrf-token'] = token.value;
    }
    const answer = await this.request('/login', {
      method: 'POST',
      body: form.toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: this.origin, referer: `${this.origin}/login`, ...extra },
    });
    if (answer.status !== 303 && answer.status !== 302) throw new Error(`POST /login answered ${answer.status}, not 303: ${snippet(answer.body)}`);
    if (!this.hasSession) throw new Error(`POST /login answered ${answer.status} without a ${SESSION_COOKIE} cookie (Set-Cookie: ${JSON.stringify(answer.headers['set-cookie'] ?? [])})`);
  }

  close(): void {
    this.agent.destroy();
  }

  private keepCookies(setCookie: string[] | undefined): void {
    for (const line of setCookie ?? []) {
      const pair = line.split(';')[0]!;
      const equals = pair.indexOf('=');
      if (equals <= 0) continue;
      const name = pair.slice(0, equals).trim();
      const value = pair.slice(equals + 1).trim();
      // An expired or emptied cookie is the server clearing it.
      if (value === '' || /;\s*max-age=0\b/i.test(line) || /;\s*expires=Thu, 01 Jan 1970/i.test(line)) this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }
}

/** A CSRF token the login form carries: a hidden input (`_csrf`, `csrf_token`, …) or a `<meta name="csrf-token">`. */
function csrfToken(html: string): { field: string; value: string } | null {
  for (const input of html.match(/<input\b[^>]*>/gi) ?? []) {
    const name = /\bname\s*=\s*["']([^"']+)["']/i.exec(input)?.[1];
    const value = /\bvalue\s*=\s*["']([^"']*)["']/i.exec(input)?.[1];
    if (name && value && /csrf/i.test(name)) return { field: name, value };
  }
  const meta = /<meta\b[^>]*name\s*=\s*["']csrf[-_]?token["'][^>]*content\s*=\s*["']([^"']+)["']/i.exec(html);
  return meta ? { field: '_csrf', value: meta[1]! } : null;
}

export function snippet(body: Buffer, max = 200): string {
  const text = body.toString('utf8').replace(/\s+/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max)}…` : text || '(empty body)';
}
