import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UserStore } from '../../src/config/user-store.js';
import { newLeaseToken, procProcessTable } from '../../src/cli/process-table.js';
import type { InboxView } from '../../src/shared/inbox-view.js';
import type { SitesReport } from '../../src/shared/site-status.js';
import type { SpoolLayout } from '../../src/spool/layout.js';
import { QueueAdmin } from '../../src/spool/queue-admin.js';
import { startWebServer, type WebOptions, type WebServer } from '../../src/web/web-server.js';
import { LogCapture } from './log-capture.js';

/**
 * A browser (or a script) in front of mta-queue's web UI, over Node's global fetch with redirects not followed:
 * a cookie jar (the session cookie and the CSRF secret cookie `_csrf`) and the CSRF token last scraped from a
 * page's `name="_csrf" value="…"`.
 */

export const SESSION_COOKIE = 'mta_session';

export interface WebReply {
  status: number;
  headers: Headers;
  body: Buffer;
  text: string;
  /** Raw Set-Cookie lines. */
  setCookies: string[];
  json<T = any>(): T;
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  /** An application/x-www-form-urlencoded body. */
  form?: Record<string, string>;
  /** A JSON body. */
  json?: unknown;
  headers?: Record<string, string>;
  /** Send the jar's cookies (default true). */
  cookies?: boolean;
  basic?: { user: string; password: string };
}

export function basicHeader(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** The token a page carries in its hidden `_csrf` input. */
export function csrfOf(html: string): string | null {
  return /name="_csrf" value="([^"]*)"/.exec(html)?.[1] ?? null;
}

/** One Set-Cookie line of a reply for `name`: its value and attributes (names lower-cased). */
export function cookieOf(reply: WebReply, name: string): { value: string; attributes: Map<string, string> } | undefined {
  for (const line of reply.setCookies) {
    const [pair, ...rest] = line.split(';').map((part) => part.trim());
    const eq = pair!.indexOf('=');
    if (pair!.slice(0, eq) !== name) continue;
    const attributes = new Map(rest.map((part) => {
      const i = part.indexOf('=');
      return i < 0 ? [part.toLowerCase(), ''] : [part.slice(0, i).toLowerCase(), part.slice(i + 1)];
    }));
    return { value: decodeURIComponent(pair!.slice(eq + 1)), attributes };
  }
  return undefined;
}

export class WebClient {
  readonly jar = new Map<string, string>();
  csrf: string | null = null;

  constructor(readonly origin: string) {}

  cookieHeader(): string {
    return [...this.jar].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  async request(pathAndQuery: string, options: RequestOptions = {}): Promise<WebReply> {
    const headers: Record<string, string> = { ...options.headers };
    let body: string | undefined;
    if (options.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(options.form).toString();
    } else if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    if (options.cookies !== false && this.jar.size > 0) headers.cookie = this.cookieHeader();
    if (options.basic) headers.authorization = basicHeader(options.basic.user, options.basic.password);
    const response = await fetch(new URL(pathAndQuery, this.origin), { method: options.method ?? (body === undefined ? 'GET' : 'POST'), headers, body, redirect: 'manual' });
    const bytes = Buffer.from(await response.arrayBuffer());
    const setCookies = response.headers.getSetCookie();
    for (const line of setCookies) {
      const [pair, ...attributes] = line.split(';').map((part) => part.trim());
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      const expired = attributes.some((attribute) => /^max-age=0$/i.test(attribute) || (/^expires=/i.test(attribute) && Date.parse(attribute.slice(8)) <= Date.now()));
      if (expired || value === '') this.jar.delete(name);
      else this.jar.set(name, value);
    }
    const text = bytes.toString('utf8');
    return { status: response.status, headers: response.headers, body: bytes, text, setCookies, json: () => JSON.parse(text) };
  }

  get(pathAndQuery: string, options: Omit<RequestOptions, 'method'> = {}): Promise<WebReply> {
    return this.request(pathAndQuery, { ...options, method: 'GET' });
  }

  /** A form post; the scraped CSRF token goes along unless `csrf` says otherwise (null: none). */
  postForm(pathAndQuery: string, fields: Record<string, string> = {}, csrf: string | null | undefined = this.csrf): Promise<WebReply> {
    return this.request(pathAndQuery, { method: 'POST', form: csrf === null || csrf === undefined ? fields : { ...fields, _csrf: csrf } });
  }

  /** A JSON post to the API, with the CSRF token in `x-csrf-token` unless `csrf` says otherwise (null: none). */
  postJson(pathAndQuery: string, json: unknown = {}, csrf: string | null | undefined = this.csrf): Promise<WebReply> {
    return this.request(pathAndQuery, { method: 'POST', json, headers: csrf === null || csrf === undefined ? {} : { 'x-csrf-token': csrf } });
  }

  /** GETs a page and keeps the CSRF token in it. */
  async scrapeCsrf(page = '/'): Promise<string> {
    const reply = await this.get(page);
    const token = csrfOf(reply.text);
    if (reply.status !== 200 || !token) throw new Error(`${page}: no CSRF token (status ${reply.status})`);
    this.csrf = token;
    return token;
  }

  /** POST /login; on success also scrapes a CSRF token from the overview. Returns the login reply. */
  async login(user: string, password: string): Promise<WebReply> {
    const reply = await this.postForm('/login', { username: user, password }, null);
    if (reply.status === 303 && this.jar.has(SESSION_COOKIE)) await this.scrapeCsrf('/');
    return reply;
  }
}

/** A clock the test moves: real time plus an offset. */
export class ShiftedClock {
  offset = 0;
  now = (): number => Date.now() + this.offset;
  advance(ms: number): void {
    this.offset += ms;
  }
}

export const WEB_USER = { user: 'admin', password: 'correct horse battery' };
export const OTHER_USER = { user: 'ops', password: 'another secret' };

export async function writeWebUsers(dir: string): Promise<string> {
  const file = path.join(dir, 'web-users.txt');
  await writeFile(file, `# web accounts\n${WEB_USER.user}:${WEB_USER.password}\n${OTHER_USER.user}:${OTHER_USER.password}\n`, { mode: 0o600 });
  return file;
}

export interface WebUnderTest {
  server: WebServer;
  origin: string;
  clock: ShiftedClock;
  logs: LogCapture;
  client(): WebClient;
  close(): Promise<void>;
}

/** What mta-queue passes by default (`--web 127.0.0.1:…`, src/config/queue-config.ts), for startWebUnderTest's `web` to override. */
export const WEB_DEFAULTS = { hostnames: ['127.0.0.1', 'localhost'], trustedProxies: null, maxConnections: 256, idleTimeout: 60_000 } satisfies Partial<WebOptions>;

/** startWebServer on 127.0.0.1 port 0 with the real dependencies mta-queue gives it (web-ui.ts), and a clock the test moves. */
export async function startWebUnderTest(options: { layout: SpoolLayout; usersFile: string; inbox?: InboxView; clock?: ShiftedClock; web?: Partial<WebOptions>; sites?: () => SitesReport }): Promise<WebUnderTest> {
  const clock = options.clock ?? new ShiftedClock();
  const logs = new LogCapture();
  const users = await UserStore.load(options.usersFile);
  const server = await startWebServer(
    { host: '127.0.0.1', port: 0, ...WEB_DEFAULTS, ...options.web },
    {
      layout: options.layout,
      users,
      logger: logs.logger,
      clock,
      makeAdmin: (operator) => new QueueAdmin(options.layout, logs.logger.child({ operator, via: 'web' }), procProcessTable(), newLeaseToken()),
      deliveryTotals: async () => ({ delivered: 0, deferred: 0, bounced: 0 }),
      dkimStatus: async () => [],
      sites: async () => options.sites?.() ?? { sites: [], total: 0, backoffs: { count: 0, suspend: 0, throttle: 0 } },
      ...(options.inbox ? { inbox: options.inbox } : {}),
    },
  );
  const origin = `http://127.0.0.1:${server.port}`;
  return { server, origin, clock, logs, client: () => new WebClient(origin), close: () => server.close() };
}
