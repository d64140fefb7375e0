import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ConfigError } from '../shared/errors.js';
import { NoSuchMessageError, runAdminCommand, checkQueueId, type AdminResult, type AdminTarget } from '../spool/admin-command.js';
import { ADMIN_ACTIONS, type AdminAction } from '../spool/queue-admin.js';
import { parseQueueFilter, type FilterFields, type QueueFilter } from '../spool/queue-filter.js';
import { detailsJson, inspectMessage, messageFiles } from '../spool/queue-inspect.js';
import { describeItem } from '../spool/queue-listing.js';
import { backoffSummary, readBackoffsInForce } from '../spool/backoff-store.js';
import { openFirstSource } from '../spool/message-source.js';
import { CURSOR_PATTERN, readQueuePage, type QueuePage } from '../spool/queue-page.js';
import { BULK_SCHEMA, LIST_SCHEMA, MESSAGE_ACTION_SCHEMA, READ_SCHEMA } from './api-schemas.js';
import { authenticate, csrfForSessions, sendError, type WebContext } from './web-server.js';

/**
 * `/api/…`: the JSON face of the queue commands (shared/design/cli.md). Query and body fields are the CLI's
 * filters in snake_case; results and refusals are the CLI's, as data.
 */

export const PAGE_LIMIT_DEFAULT = 50;
const PAGE_LIMIT_MAX = 500;
/** Envelopes read at most for one page of a filter that needs them (domain, sender, reply, search words). */
export const PAGE_SCAN_LIMIT = 5_000;
/** Ids a bulk result lists at most (the count is always exact). */
export const BULK_IDS_SHOWN = 100;

const FIELD_NAMES: Record<keyof FilterFields, string> = { state: 'state', domain: 'domain', sender: 'sender', olderThan: 'older_than', reply: 'reply', q: 'q' };

type Fields = Record<string, unknown>;

/** The filter in a query string or JSON body; empty fields (an unfilled form input) are absent. */
export function filterFrom(fields: Fields, now: number): QueueFilter {
  const text = (name: string): string | undefined => {
    const value = fields[name];
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string') throw new ConfigError(`${name} must be a string`);
    return value;
  };
  return parseQueueFilter({ state: text('state'), domain: text('domain'), sender: text('sender'), olderThan: text('older_than'), reply: text('reply'), q: text('q') }, (field) => FIELD_NAMES[field], now);
}

export async function queuePage(context: WebContext, fields: Fields): Promise<QueuePage & { filter: QueueFilter }> {
  const filter = filterFrom(fields, context.clock.now());
  const cursor = typeof fields.cursor === 'string' && fields.cursor !== '' ? fields.cursor : undefined;
  if (cursor !== undefined && !CURSOR_PATTERN.test(cursor)) throw new ConfigError('cursor: not a cursor this server gave out');
  const limitText = typeof fields.limit === 'string' && fields.limit !== '' ? fields.limit : String(PAGE_LIMIT_DEFAULT);
  const limit = Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_LIMIT_MAX) throw new ConfigError(`limit: "${limitText.slice(0, 20)}" is not a whole number from 1 to ${PAGE_LIMIT_MAX}`);
  const page = await readQueuePage(context.queue, { filter, cursor, limit, scanLimit: PAGE_SCAN_LIMIT }, context.clock.now());
  return { ...page, filter };
}

export function isAdminAction(name: string): name is AdminAction {
  return Object.hasOwn(ADMIN_ACTIONS, name);
}

/** The command as the web asks for it, with its operator in the audit log line. */
export function adminCommand(context: WebContext, request: FastifyRequest, action: AdminAction, target: AdminTarget, dryRun: boolean): Promise<AdminResult> {
  const operator = request.operator!.user;
  return runAdminCommand(context.layout, { action, target, dryRun }, () => context.makeAdmin(operator), context.clock.now());
}

/** A bulk result as JSON: exact counts, the first ids, every skip with its reason (as `would skip`/`skipped`). */
export function bulkJson(action: AdminAction, result: Extract<AdminResult, { kind: 'applied' }>) {
  return {
    action,
    dry_run: result.dryRun,
    [result.dryRun ? 'would_change' : 'changed']: result.changed.length,
    ids: result.changed.slice(0, BULK_IDS_SHOWN).map((item) => item.id),
    skipped: result.skipped.map(({ item, reason }) => ({ id: item.id, state: describeItem(item).state, reason })),
  };
}

export function registerApiRoutes(app: FastifyInstance, context: WebContext): void {
  const requireAuth = async (request: FastifyRequest, reply: FastifyReply) => {
    if (await authenticate(request, context, true)) return;
    reply.header('www-authenticate', 'Basic realm="mta-relay", charset="UTF-8"');
    return sendError(request, reply, 401, 'authentication required: log in, or send HTTP Basic credentials');
  };
  // Credentials before the schemas (which run between onRequest and preHandler): a stranger gets 401 whatever
  // the request holds. The CSRF check stays a preHandler: the token may come in the parsed body.
  const read = { onRequest: requireAuth, schema: READ_SCHEMA };
  const change = { onRequest: requireAuth, preHandler: csrfForSessions(app) };

  app.get('/api/stats', read, async () => {
    const now = context.clock.now();
    return { ...(await context.queue.census(now)), backoffs: backoffSummary(await readBackoffsInForce(context.layout, now, context.logger)) };
  });

  app.get('/api/history', read, async () => context.history.series(context.clock.now()));

  app.get('/api/sites', read, async () => context.sites());

  app.get('/api/messages', { ...read, schema: LIST_SCHEMA }, async (request) => {
    const page = await queuePage(context, request.query as Fields);
    return { messages: page.items.map(describeItem), next: page.next, entries: page.entries, examined: page.examined };
  });

  app.get('/api/messages/:id', read, async (request) => {
    const { id } = request.params as { id: string };
    checkQueueId(id);
    const details = await inspectMessage(context.layout, id);
    if (!details) throw new NoSuchMessageError(id);
    return detailsJson(details);
  });

  app.get('/api/messages/:id/raw', read, async (request, reply) => {
    const { id } = request.params as { id: string };
    checkQueueId(id);
    const details = await inspectMessage(context.layout, id);
    const stream = details && (await openFirstSource(messageFiles(context.layout, details.item)));
    if (!stream) throw new NoSuchMessageError(id);
    // The message as it will be sent, as a download: never rendered by the browser, whatever it contains.
    reply.header('content-disposition', `attachment; filename="${id}.eml"`);
    reply.header('content-security-policy', "sandbox; default-src 'none'");
    return reply.type('message/rfc822').send(stream);
  });

  // One route per action, so an unknown action is the 404 of an unknown route, before any body is checked.
  for (const action of Object.keys(ADMIN_ACTIONS) as AdminAction[]) {
    app.post(`/api/messages/:id/${action}`, { ...change, schema: MESSAGE_ACTION_SCHEMA }, async (request, reply) => {
      const { id } = request.params as { id: string };
      checkQueueId(id);
      const result = await adminCommand(context, request, action, { id }, false);
      if (result.kind === 'refused') return reply.code(409).send({ id, action, result: 'refused', reason: result.reason });
      if (result.kind === 'unchanged') return { id, action, result: 'unchanged', reason: result.reason };
      return { id, action, result: ADMIN_ACTIONS[action].event, was: describeItem(result.changed[0]!).state };
    });

    app.post(`/api/bulk/${action}`, { ...change, schema: BULK_SCHEMA }, async (request) => {
      // BULK_SCHEMA has checked the keys and their types.
      const body = request.body as Fields & { all?: boolean; dry_run: boolean };
      // The schema takes `user` already, so the tenants' per-user filter arrives without changing the contract.
      if (body.user !== undefined) throw new ConfigError('user: filtering by user is not supported yet');
      const result = await adminCommand(context, request, action, { filter: filterFrom(body, context.clock.now()), all: body.all === true }, body.dry_run);
      return bulkJson(action, result as Extract<AdminResult, { kind: 'applied' }>);
    });
  }
}
