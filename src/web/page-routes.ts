import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { formatAge } from '../shared/dates.js';
import { ConfigError } from '../shared/errors.js';
import { NoSuchMessageError, checkQueueId, type AdminResult } from '../spool/admin-command.js';
import { FINAL_STATES, formatReply } from '../spool/envelope.js';
import { ADMIN_ACTIONS, judgeAction, type AdminAction } from '../spool/queue-admin.js';
import { inspectMessage } from '../spool/queue-inspect.js';
import { describeItem, FILTER_STATES } from '../spool/queue-listing.js';
import { adminCommand, bulkJson, filterFrom, isAdminAction, queuePage } from './api-routes.js';
import { isoTime, renderView } from './views.js';
import { SESSION_COOKIE } from './web-auth.js';
import { renderPage, sessionGuard } from './page-render.js';
import { sitesView } from './sites-view.js';
import { clientAddress, crossSiteReason, rateLimitedWarning } from './web-guards.js';
import { csrfForSessions, logRefusedLogin, sendError, type WebContext } from './web-server.js';

/**
 * The HTML pages. Each builds a plain view model here (strings and numbers, already worded) and hands it to a
 * template that only prints it, escaped. A request from htmx (the self-refresh) gets the live part only.
 */

type Fields = Record<string, unknown>;

const QUERY_FIELDS = ['state', 'domain', 'sender', 'older_than', 'reply', 'q'] as const;

export function registerPageRoutes(app: FastifyInstance, context: WebContext): void {
  const page = { preHandler: sessionGuard(context) };
  const change = { preHandler: [sessionGuard(context), csrfForSessions(app)] };
  const render = (request: FastifyRequest, reply: FastifyReply, view: string, data: object, status = 200) => renderPage(context, request, reply, view, data, status);

  app.get('/login', async (request, reply) => {
    if (context.auth.session(request.cookies[SESSION_COOKIE])) return reply.redirect('/', 303);
    return reply.type('text/html; charset=utf-8').send(renderView('login', { error: null, next: safeNext((request.query as Fields).next) }));
  });

  const warnCrossSite = rateLimitedWarning(context.logger, context.clock, 'web-login-cross-site');
  app.post('/login', async (request, reply) => {
    const body = (request.body ?? {}) as Fields;
    const user = typeof body.username === 'string' ? body.username : '';
    const password = typeof body.password === 'string' ? body.password : '';
    const next = safeNext(body.next);
    const client = clientAddress(request);
    // Before the password check: a page elsewhere must neither log this browser in as its author's account nor
    // spend the throttle's budget (a form any site can post would lock the operator out).
    const crossSite = crossSiteReason(request);
    if (crossSite) {
      warnCrossSite({ client, reason: crossSite }, 'web login from a page of another site refused');
      return sendError(request, reply, 403, 'cross-site login refused: log in from the login page');
    }
    const result = await context.auth.checkPassword(client, { user, password });
    if (result.kind !== 'ok') {
      logRefusedLogin(context, result, { client, user, via: 'form' });
      const refused = result.kind === 'blocked' || (result.kind === 'wrong' && result.blocked);
      const error = result.kind === 'busy' ? 'Too many logins at once; try again in a few seconds.' : refused ? 'Too many failed logins; try again later.' : 'Wrong user name or password.';
      if (result.kind === 'busy') reply.header('retry-after', '5');
      return reply.code(result.kind === 'wrong' && !result.blocked ? 401 : 429).type('text/html; charset=utf-8').send(renderView('login', { error, next }));
    }
    const session = context.auth.startSession(result.user);
    context.logger.info({ event: 'web-login', client, user: user.slice(0, 100) }, 'web UI login');
    // No Max-Age: the server ends the session, after 12 h idle or 7 days in all, whichever comes first.
    reply.setCookie(SESSION_COOKIE, session.id, { path: '/', httpOnly: true, sameSite: 'strict', secure: context.secure });
    return reply.redirect(next, 303);
  });

  app.post('/logout', change, async (request, reply) => {
    context.auth.endSession(request.operator?.session?.id);
    context.logger.info({ event: 'web-logout', client: clientAddress(request), user: request.operator?.user }, 'web UI logout');
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.redirect('/login', 303);
  });

  app.get('/', page, async (request, reply) => {
    const now = context.clock.now();
    const stats = await context.queue.census(now);
    const [dkim, sites] = await Promise.all([context.dkimStatus(), context.sites()]);
    return render(request, reply, 'overview', {
      counts: FILTER_STATES.map((state) => ({ state, count: stats.counts[state] })),
      total: stats.total,
      oldest: stats.oldest ? { id: stats.oldest.id, state: stats.oldest.state, arrived: isoTime(stats.oldest.arrivedAt), age: formatAge(stats.oldest.ageMs) } : null,
      domains: stats.deferredDomains,
      dkim,
      sites: sitesView(sites, now),
    });
  });

  app.get('/queue', page, async (request, reply) => {
    const query = request.query as Fields;
    const form = Object.fromEntries(QUERY_FIELDS.map((name) => [name, typeof query[name] === 'string' ? query[name] : '']));
    try {
      const result = await queuePage(context, query);
      const now = context.clock.now();
      return render(request, reply, 'queue', {
        form,
        states: FILTER_STATES,
        error: null,
        entries: result.entries,
        examined: result.examined,
        rows: result.items.map((item) => queueRow(describeItem(item), now)),
        nextUrl: result.next ? `/queue?${new URLSearchParams({ ...form, cursor: result.next }).toString()}` : null,
        firstUrl: typeof query.cursor === 'string' && query.cursor ? `/queue?${new URLSearchParams(form).toString()}` : null,
        bulkUrl: `/bulk?${new URLSearchParams(form).toString()}`,
        selfUrl: request.url,
      });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return render(request, reply, 'queue', { form, states: FILTER_STATES, error: error.message, entries: 0, examined: 0, rows: [], nextUrl: null, firstUrl: null, bulkUrl: '/bulk', selfUrl: '/queue' }, 400);
    }
  });

  const messagePage = async (request: FastifyRequest, reply: FastifyReply, id: string, notice: { kind: string; text: string } | null, status = 200) => {
    checkQueueId(id);
    const details = await inspectMessage(context.layout, id);
    if (!details && request.method === 'GET' && request.headers['hx-request'] === 'true') {
      // The self-refresh of a message that left the queue meanwhile (delivered, bounced or deleted): htmx swaps no
      // 404, so the page would keep its last state for ever. This part has no refresh of its own: polling stops.
      return reply.type('text/html; charset=utf-8').send(renderView('message-gone-live', { id }));
    }
    if (!details) throw new NoSuchMessageError(id);
    const { item, headers } = details;
    const envelope = item.envelope;
    const entry = describeItem(item);
    const actions = (['flush', 'hold', 'release', 'delete'] as AdminAction[]).filter((action) => judgeAction(action, item).kind === 'change');
    return render(request, reply, 'message', {
      id,
      notice,
      state: entry.state,
      file: details.file,
      nextAttempt: entry.state === 'incoming' ? 'due now' : entry.nextAttemptAt === null ? null : isoTime(entry.nextAttemptAt),
      envelope: envelope && {
        sender: envelope.sender || '<>',
        arrived: `${isoTime(envelope.arrivedAt)} (${formatAge(context.clock.now() - envelope.arrivedAt)} ago)`,
        size: `${envelope.size} bytes, ${envelope.bodyType}${envelope.smtpUtf8 ? ', SMTPUTF8' : ''}`,
        user: envelope.user ?? '-',
        client: `${envelope.client.address}${envelope.client.hostname ? ` (${envelope.client.hostname})` : ''}, helo ${envelope.client.helo ?? '-'}, ${envelope.client.tls ? `${envelope.client.tls.version} ${envelope.client.tls.cipher}` : 'no TLS'}`,
        bounceOf: envelope.bounceOf ?? null,
        pending: envelope.recipients.filter((recipient) => !FINAL_STATES.has(recipient.state)).length,
        recipients: envelope.recipients.map((recipient) => ({
          address: recipient.address,
          state: recipient.state,
          attempts: recipient.attempts,
          lastAttempt: isoTime(recipient.lastAttemptAt),
          lastReply: recipient.lastReply ? formatReply(recipient.lastReply) : 'no reply yet',
          remoteMta: recipient.remoteMta ?? '',
          heldBack: recipient.heldBack ? `${recipient.heldBack.reason} (until ${isoTime(recipient.heldBack.until)})` : null,
        })),
      },
      headers: headers?.text ?? null,
      headersTruncated: headers?.truncated ?? false,
      actions: actions.map((action) => ({ action, label: ACTION_LABELS[action] })),
      refusal: entry.state === 'active' ? judgeAction('hold', item) : null,
    }, status);
  };

  app.get('/messages/:id', page, async (request, reply) => messagePage(request, reply, (request.params as { id: string }).id, null));

  app.get('/messages/:id/delete', page, async (request, reply) => {
    const { id } = request.params as { id: string };
    checkQueueId(id);
    return render(request, reply, 'confirm-delete', { id });
  });

  app.post('/messages/:id/:action', change, async (request, reply) => {
    const { id, action } = request.params as { id: string; action: string };
    if (!isAdminAction(action)) return reply.code(404).type('text/plain; charset=utf-8').send('404: not found\n');
    const result = await adminCommand(context, request, action, { id }, false);
    if (result.kind === 'applied' && action === 'delete') return render(request, reply, 'deleted', { id });
    return messagePage(request, reply, id, actionNotice(action, result), result.kind === 'refused' ? 409 : 200);
  });

  app.get('/bulk', page, async (request, reply) => {
    const query = request.query as Fields;
    const form = Object.fromEntries(QUERY_FIELDS.map((name) => [name, typeof query[name] === 'string' ? query[name] : '']));
    return render(request, reply, 'bulk', { form, states: FILTER_STATES, actions: BULK_ACTIONS, action: 'hold', all: false, error: null, preview: null, done: null });
  });

  app.post('/bulk', change, async (request, reply) => {
    const body = (request.body ?? {}) as Fields;
    const form = Object.fromEntries(QUERY_FIELDS.map((name) => [name, typeof body[name] === 'string' ? body[name] : '']));
    const action = typeof body.action === 'string' && isAdminAction(body.action) ? body.action : null;
    const all = body.all === 'yes';
    const view = { form, states: FILTER_STATES, actions: BULK_ACTIONS, action: action ?? 'hold', all, error: null as string | null, preview: null as object | null, done: null as object | null };
    try {
      if (!action) throw new ConfigError('choose an action');
      const confirmed = body.confirm === 'yes';
      const result = (await adminCommand(context, request, action, { filter: filterFrom(body, context.clock.now()), all }, !confirmed)) as Extract<AdminResult, { kind: 'applied' }>;
      const json = bulkJson(action, result);
      const summary = { action, event: ADMIN_ACTIONS[action].event, count: result.changed.length, ids: json.ids, skipped: json.skipped };
      if (confirmed) view.done = summary;
      else view.preview = summary;
      return render(request, reply, 'bulk', view);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      view.error = error.message;
      return render(request, reply, 'bulk', view, 400);
    }
  });
}

const ACTION_LABELS: Record<AdminAction, string> = { flush: 'Retry now', hold: 'Hold', release: 'Release', delete: 'Delete…' };
const BULK_ACTIONS: readonly { action: AdminAction; label: string }[] = [
  { action: 'flush', label: 'retry now (flush)' },
  { action: 'hold', label: 'hold' },
  { action: 'release', label: 'release' },
  { action: 'delete', label: 'delete' },
];

function actionNotice(action: AdminAction, result: AdminResult): { kind: string; text: string } {
  if (result.kind === 'refused') return { kind: 'refused', text: `Not ${ADMIN_ACTIONS[action].event}: ${result.reason}.` };
  if (result.kind === 'unchanged') return { kind: 'unchanged', text: `Nothing to do: ${result.reason}.` };
  return { kind: 'done', text: `${ADMIN_ACTIONS[action].event[0]!.toUpperCase()}${ADMIN_ACTIONS[action].event.slice(1)} (was ${describeItem(result.changed[0]!).state}).` };
}

function queueRow(entry: ReturnType<typeof describeItem>, now: number) {
  return {
    id: entry.id,
    state: entry.state,
    sender: entry.sender || '<>',
    pending: entry.pending.length > 3 ? `${entry.pending.slice(0, 3).join(', ')} and ${entry.pending.length - 3} more` : entry.pending.join(', ') || '-',
    attempts: entry.attempts,
    age: formatAge(now - entry.arrivedAt),
    next: entry.state === 'incoming' ? 'due now' : entry.nextAttemptAt === null ? '-' : isoTime(entry.nextAttemptAt),
    lastError: entry.lastError ?? '-',
  };
}

/** Where to go after login: a path on this server only, never another origin (`//evil`, `https://…`). */
function safeNext(value: unknown): string {
  return typeof value === 'string' && /^\/(?![/\\])[\x21-\x7e]*$/.test(value) && value.length <= 500 ? value : '/';
}
