import type { FastifyReply, FastifyRequest } from 'fastify';
import { renderView } from './views.js';
import { authenticate, sendError, type WebContext } from './web-server.js';

/** The pages whose template has a `<view>-live` part that refreshes itself (web/views/*-live.eta). */
const LIVE_VIEWS = new Set(['overview', 'queue', 'message', 'inbox']);

/** A page needs a session (never HTTP Basic: its forms need the session's CSRF token); GETs go to the login form. */
export function sessionGuard(context: WebContext) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (await authenticate(request, context, false)) return;
    if (request.method === 'GET') return reply.redirect(`/login?next=${encodeURIComponent(request.url.slice(0, 500))}`, 303);
    return sendError(request, reply, 401, 'log in first');
  };
}

/** Renders `view` in the layout (nav, logout form with its CSRF token), or its live part alone for htmx's refresh. */
export function renderPage(context: WebContext, request: FastifyRequest, reply: FastifyReply, view: string, data: object, status = 200) {
  const session = request.operator?.session;
  const csrf = session ? reply.generateCsrf({ userInfo: session.id }) : '';
  // Only the self-refreshing pages have a live part; any other page answers an htmx request whole.
  const live = request.headers['hx-request'] === 'true' && LIVE_VIEWS.has(view);
  const body = renderView(live ? `${view}-live` : view, { ...data, csrf, user: request.operator?.user ?? '', inbox: Boolean(context.inbox), page: view });
  return reply.code(status).type('text/html; charset=utf-8').send(body);
}
