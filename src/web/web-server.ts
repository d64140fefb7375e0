import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { UserStore } from '../config/user-store.js';
import { AuthThrottle, DEFAULT_AUTH_THROTTLE } from '../shared/auth-throttle.js';
import type { Clock } from '../shared/clock.js';
import { ConfigError, RelayError } from '../shared/errors.js';
import { NoSuchMessageError } from '../spool/admin-command.js';
import type { Logger } from '../shared/logger.js';
import type { SitesReport } from '../shared/site-status.js';
import type { QueueAdmin } from '../spool/queue-admin.js';
import { QueueIndex } from '../spool/queue-index.js';
import type { SpoolLayout } from '../spool/layout.js';
import { registerApiRoutes } from './api-routes.js';
import { STRICT_VALIDATION } from './api-schemas.js';
import type { InboxView } from '../shared/inbox-view.js';
import { registerInboxRoutes } from './inbox-routes.js';
import { OutcomeHistory, type OutcomeTotals } from './outcome-history.js';
import { registerPageRoutes } from './page-routes.js';
import { assetFile, ASSETS_DIR } from './views.js';
import { MAX_PENDING_CHECKS, parseBasicAuth, SESSION_COOKIE, WebAuth, type LoginResult, type WebSession } from './web-auth.js';
import { capConnections, clientAddress, crossSiteReason, hostRefusal, rateLimitedWarning, trustedPeers } from './web-guards.js';

/**
 * The web UI and its JSON API, served by the running mta-queue: every action goes through the process that owns
 * the delivery claims, with the same command function the CLI runs (spool/admin-command.ts). Routes are thin: they
 * parse, call the spool's functions, and render.
 */

export interface DkimDomainStatus {
  domain: string;
  selector: string;
  type: string;
  state: string;
}

export interface WebDeps {
  layout: SpoolLayout;
  users: UserStore;
  logger: Logger;
  clock: Clock;
  /** A QueueAdmin for one request, logging as `operator`. */
  makeAdmin(operator: string): QueueAdmin;
  /** Recipients by outcome since start (the Prometheus counters), for the chart. */
  deliveryTotals(): Promise<OutcomeTotals>;
  /** The DKIM keys, when a key directory exists. */
  dkimStatus(): Promise<DkimDomainStatus[]>;
  /** The sites delivery is busy with or backed off from, bounded (the overview's Sites table, `/api/sites`). */
  sites(): Promise<SitesReport>;
  /** The local test inbox (npm start), when one runs. */
  inbox?: InboxView;
}

export interface WebOptions {
  host: string;
  port: number;
  /** Served over HTTPS with these (PEM); the session cookie is then Secure. */
  tls?: { cert: Buffer; key: Buffer } | null;
  /** The `Host` names answered (lower case, IPv6 unbracketed); any other gets 421. */
  hostnames: string[];
  /** Peers whose X-Forwarded-For names the client; null: the peer is the client. */
  trustedProxies: net.BlockList | null;
  maxConnections: number;
  /** A connection silent this long (ms) is closed. */
  idleTimeout: number;
}

export interface WebServer {
  /** The address actually bound (port 0 → the one chosen). */
  host: string;
  port: number;
  /** The users file was reloaded: see WebAuth.usersReloaded. */
  usersReloaded(): void;
  close(): Promise<void>;
}

/** What every route gets: the dependencies plus the request-independent state of the server. */
export interface WebContext extends WebDeps {
  auth: WebAuth;
  /** Listings and deferred envelopes kept between requests, and the overview's census (spool/queue-index.ts). */
  queue: QueueIndex;
  history: OutcomeHistory;
  secure: boolean;
  /** `web-login-busy`: logins refused unchecked because MAX_PENDING_CHECKS wait already. */
  warnLoginBusy: ReturnType<typeof rateLimitedWarning>;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `authenticate`: who is asking, and the session when it came by cookie (null for HTTP Basic). */
    operator?: { user: string; session: WebSession | null };
  }
}

/** Content-Security-Policy: scripts and styles only from our own /assets, nothing inline, no framing. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const HISTORY_SAMPLE_MS = 10_000;

export async function startWebServer(options: WebOptions, deps: WebDeps): Promise<WebServer> {
  const { app, context } = await buildWebApp(options, deps);
  capConnections(app.server, options.maxConnections, rateLimitedWarning(deps.logger, deps.clock, 'web-connections-full'));
  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return { host: options.host, port, usersReloaded: () => context.auth.usersReloaded(), close: () => app.close() };
}

async function buildWebApp(options: WebOptions, deps: WebDeps): Promise<{ app: FastifyInstance; context: WebContext }> {
  const secure = Boolean(options.tls);
  const app = Fastify({
    ...(options.tls ? { https: { cert: options.tls.cert, key: options.tls.key } } : {}),
    // Our own pino logger gets one line per event; fastify's per-request lines would drown the delivery log.
    logger: false,
    bodyLimit: 64 * 1024,
    connectionTimeout: options.idleTimeout,
    requestTimeout: 30_000,
    keepAliveTimeout: Math.min(10_000, options.idleTimeout),
    routerOptions: { maxParamLength: 200 },
    trustProxy: options.trustedProxies ? trustedPeers(options.trustedProxies) : false,
    ...STRICT_VALIDATION,
  });
  // First of all hooks: a request for another name gets nothing else, not even a session look-up.
  const hostnames = new Set(options.hostnames);
  const warnHost = rateLimitedWarning(deps.logger, deps.clock, 'web-host-refused');
  app.addHook('onRequest', async (request, reply) => {
    const refusal = hostRefusal(request, hostnames);
    if (!refusal) return;
    warnHost({ client: clientAddress(request), host: request.headers.host?.slice(0, 100) }, `web request for a host name not in --web-hostnames: ${refusal.message}`);
    return sendError(request, reply, refusal.status, refusal.message);
  });
  const context: WebContext = {
    ...deps,
    auth: new WebAuth(deps.users, new AuthThrottle(DEFAULT_AUTH_THROTTLE, deps.clock), deps.clock),
    queue: new QueueIndex(deps.layout),
    history: new OutcomeHistory(),
    secure,
    warnLoginBusy: rateLimitedWarning(deps.logger, deps.clock, 'web-login-busy'),
  };
  const sample = () =>
    deps.deliveryTotals().then(
      (totals) => context.history.record(totals, deps.clock.now()),
      (error: unknown) => deps.logger.warn({ event: 'web-history-failed', err: error }, 'reading the delivery counters for the chart failed'),
    );
  await sample();
  const sampler = setInterval(sample, HISTORY_SAMPLE_MS);
  sampler.unref();
  app.addHook('onClose', async () => clearInterval(sampler));

  await app.register(fastifyCookie);
  await app.register(fastifyFormbody, { bodyLimit: 64 * 1024 });
  await app.register(fastifyCsrf, {
    cookieOpts: { path: '/', sameSite: 'strict', httpOnly: true, secure, signed: false },
    // The token is bound to the session: one taken from another session (cookie tossing) does not pass.
    getUserInfo: (request: FastifyRequest) => request.operator?.session?.id ?? '',
    csrfOpts: { hmacKey: randomBytes(32) },
  });
  await app.register(fastifyStatic, { root: ASSETS_DIR, serve: false });

  app.addHook('onSend', async (request, reply, payload) => {
    // A route's own, stricter policy (the raw downloads' sandbox) stays.
    if (!reply.hasHeader('content-security-policy')) reply.header('content-security-policy', CSP);
    reply.header('x-frame-options', 'DENY');
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    if (!request.url.startsWith('/assets/')) reply.header('cache-control', 'no-store');
    return payload;
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    // A usage error (a bad filter, id or cursor) or an unknown id is the client's; anything else is ours.
    const status = error instanceof ConfigError ? 400 : error instanceof NoSuchMessageError ? 404 : error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    if (status >= 500) deps.logger.error({ event: 'web-error', err: error, method: request.method, url: request.url.slice(0, 200) }, 'web request failed');
    const message = status >= 500 ? 'internal error (see the mta-queue log)' : error.code === 'FST_CSRF_INVALID_TOKEN' || error.code === 'FST_CSRF_MISSING_SECRET' ? 'invalid or missing CSRF token' : error.message;
    return sendError(request, reply, status, message);
  });
  app.setNotFoundHandler((request, reply) => sendError(request, reply, 404, 'not found'));

  app.get('/assets/:name', async (request, reply) => {
    const { name } = request.params as { name: string };
    const asset = assetFile(name);
    if (!asset) return sendError(request, reply, 404, 'not found');
    reply.header('cache-control', 'public, max-age=3600');
    return reply.sendFile(asset.file, asset.root);
  });

  registerPageRoutes(app, context);
  registerApiRoutes(app, context);
  if (deps.inbox) registerInboxRoutes(app, context, deps.inbox);
  return { app, context };
}

/** JSON for the API, a short text page for a browser. */
export function sendError(request: FastifyRequest, reply: FastifyReply, status: number, message: string) {
  if (request.url.startsWith('/api/')) return reply.code(status).type('application/json').send({ error: message });
  return reply.code(status).type('text/plain; charset=utf-8').send(`${status}: ${message}\n`);
}

/**
 * Who is asking. The session cookie first, then HTTP Basic (scripts; never for pages' forms, which need the CSRF
 * token only a session has). undefined means not authenticated.
 */
export async function authenticate(request: FastifyRequest, context: WebContext, allowBasic: boolean): Promise<FastifyRequest['operator']> {
  const session = context.auth.session(request.cookies[SESSION_COOKIE]);
  if (session) return (request.operator = { user: session.user, session });
  const basic = allowBasic ? parseBasicAuth(request.headers.authorization) : undefined;
  if (!basic) return undefined;
  const client = clientAddress(request);
  const result = await context.auth.checkBasic(client, basic);
  if (result.kind !== 'ok') {
    logRefusedLogin(context, result, { client, user: basic.user, via: 'basic' });
    return undefined;
  }
  return (request.operator = { user: result.user, session: null });
}

/**
 * One line per password checked and refused, and one more when that failure blocks the account at the address.
 * Requests refused unchecked while the block lasts, as many as the client likes, log nothing; a busy refusal is
 * rate-limited.
 */
export function logRefusedLogin(context: WebContext, result: Exclude<LoginResult, { kind: 'ok' }>, attempt: { client: string; user: string; via: 'form' | 'basic' }): void {
  const fields = { client: attempt.client, user: attempt.user.slice(0, 100) };
  if (result.kind === 'busy') return context.warnLoginBusy(fields, `too many password checks waiting (${MAX_PENDING_CHECKS}): web login refused unchecked`);
  if (result.kind !== 'wrong') return;
  if (attempt.via === 'form') context.logger.warn({ event: 'web-login-failed', ...fields }, 'web UI login failed');
  else context.logger.warn({ event: 'web-auth-failed', ...fields }, 'web API authentication failed');
  if (result.blocked) context.logger.warn({ event: 'web-login-blocked', ...fields, minutes: DEFAULT_AUTH_THROTTLE.blockFor / 60_000 }, 'too many failed web logins: this user is refused from this address for a while');
}

/** A state-changing request from a browser page of another site, made with HTTP Basic credentials. */
export class CrossSiteRequestError extends RelayError {
  readonly code = 'EWEBCROSSSITE';
  readonly statusCode = 403;
}

/**
 * The CSRF check for a state-changing request. With the session cookie: the token the page carries (a preHandler,
 * after `authenticate`: only then has the form body been parsed; as an onRequest hook it rejects a token sent in
 * the form), 403 without it. With HTTP Basic, which has no token: browsers cache Basic credentials after a
 * challenge and send them cross-site too, so a request a browser marks as coming from another site (Sec-Fetch-Site,
 * Origin) is refused; scripts (curl) send neither header.
 */
export function csrfForSessions(app: FastifyInstance) {
  return (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void => {
    if (request.operator?.session) return app.csrfProtection(request, reply, done);
    const crossSite = crossSiteReason(request);
    done(crossSite ? new CrossSiteRequestError(`cross-site request refused (${crossSite})`) : undefined);
  };
}
