import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { InboxSummary, InboxView } from '../shared/inbox-view.js';
import { renderPage, sessionGuard } from './page-render.js';
import { isoTime } from './views.js';
import { csrfForSessions, sendError, type WebContext } from './web-server.js';

/**
 * `/inbox`: what the local test inbox (npm start) received. Its messages came from anywhere: shown escaped, raw
 * source as a download only.
 */

const LIST_LIMIT = 200;
/** The raw source shown on the page at most; the download has all of it. */
const RAW_SHOWN = 256 * 1024;

export function registerInboxRoutes(app: FastifyInstance, context: WebContext, inbox: InboxView): void {
  const requireSession = sessionGuard(context);
  const render = (request: FastifyRequest, reply: FastifyReply, view: string, data: object) => renderPage(context, request, reply, view, data);
  const row = (message: InboxSummary) => ({ ...message, received: isoTime(message.receivedAt), to: message.to.join(', ') });

  app.get('/inbox', { preHandler: requireSession }, async (request, reply) => {
    const { messages, total } = await inbox.list(LIST_LIMIT);
    return render(request, reply, 'inbox', { messages: messages.map(row), total, cleared: null });
  });

  app.get('/inbox/:id', { preHandler: requireSession }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const [message, raw] = await Promise.all([inbox.get(id), inbox.raw(id)]);
    if (!message || !raw) return sendError(request, reply, 404, 'no such message in the inbox');
    const source = raw.subarray(0, RAW_SHOWN).toString('utf8');
    return render(request, reply, 'inbox-message', { message: row(message), headers: message.headers, source, sourceCut: raw.length > RAW_SHOWN });
  });

  app.get('/inbox/:id/raw', { preHandler: requireSession }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const raw = await inbox.raw(id);
    if (!raw) return sendError(request, reply, 404, 'no such message in the inbox');
    reply.header('content-disposition', `attachment; filename="${id}.eml"`);
    reply.header('content-security-policy', "sandbox; default-src 'none'");
    return reply.type('message/rfc822').send(raw);
  });

  app.post('/inbox/clear', { preHandler: [requireSession, csrfForSessions(app)] }, async (request, reply) => {
    const cleared = await inbox.clear();
    context.logger.info({ event: 'inbox-cleared', user: request.operator?.user, messages: cleared }, 'local inbox cleared');
    return render(request, reply, 'inbox', { messages: [], total: 0, cleared });
  });
}
