import type { FastifySchema, FastifySchemaValidationError, FastifyServerOptions } from 'fastify';
import { ConfigError } from '../shared/errors.js';

/**
 * What each `/api` route accepts, as JSON schemas fastify checks before the handler runs, so one place refuses a
 * key or a query parameter the route does not know (shared/design/cli.md). A script that misspells `dry_run` as
 * `dryRun`, or puts it in the query string, gets a 400 naming the key instead of a bulk action that changes mail.
 */

const TEXT = { type: 'string' } as const;
const YES_NO = { type: 'boolean' } as const;
const FILTERS = { state: TEXT, domain: TEXT, sender: TEXT, older_than: TEXT, reply: TEXT, q: TEXT } as const;
/** The CSRF token, which a page's session may send in the body (@fastify/csrf-protection reads `_csrf`). */
const CSRF_FIELD = { _csrf: TEXT } as const;

const NO_QUERY = { type: 'object', properties: {}, additionalProperties: false } as const;

export const READ_SCHEMA: FastifySchema = { querystring: NO_QUERY };

export const LIST_SCHEMA: FastifySchema = {
  querystring: { type: 'object', properties: { ...FILTERS, cursor: TEXT, limit: TEXT }, additionalProperties: false },
};

/** A single message's action: no parameters, and a body (when one is sent) with the CSRF token at most. */
export const MESSAGE_ACTION_SCHEMA: FastifySchema = {
  querystring: NO_QUERY,
  body: { type: ['object', 'null'], properties: CSRF_FIELD, additionalProperties: false },
};

/**
 * `dry_run` has no default: a script says whether it looks or acts. The known keys sit in an allOf because ajv
 * checks a schema's `required` before its `additionalProperties`, and the allOf before both: `{"dryRun": true}`
 * is then refused for the typo it holds, not for the dry_run it lacks.
 */
export const BULK_SCHEMA: FastifySchema = {
  querystring: NO_QUERY,
  body: {
    type: 'object',
    allOf: [{ properties: { ...FILTERS, user: TEXT, all: YES_NO, dry_run: YES_NO, ...CSRF_FIELD }, additionalProperties: false }],
    required: ['dry_run'],
  },
};

/**
 * fastify's ajv by default removes unknown properties (removeAdditional), so `additionalProperties: false` would
 * silently drop `dryRun` and go on; it also coerces types, turning `"dry_run": "false"` or `1` into booleans. Here
 * an unknown key is an error and a value keeps the type it was sent with. allErrors stays off: one error per
 * request, and no quadratic work on a hostile body.
 */
export const STRICT_VALIDATION: Pick<FastifyServerOptions, 'ajv' | 'schemaErrorFormatter'> = {
  ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } },
  // fastify calls this with at least one error.
  schemaErrorFormatter: (errors, dataVar) => new ConfigError(describeSchemaError(errors[0]!, dataVar)),
};

/** Which part of the request: fastify's name for it. */
type SchemaErrorDataVar = 'body' | 'querystring' | 'params' | 'headers';

const PLACE: Record<SchemaErrorDataVar, string> = { body: 'the body', querystring: 'the query string', params: 'the path', headers: 'the headers' };

/** A key as the client sent it, bounded and quoted (JSON escapes any control character in it). */
const quoted = (key: unknown): string => JSON.stringify(String(key).slice(0, 100));

/** The 400's message, naming the key at fault the way the API spells it. */
export function describeSchemaError(error: FastifySchemaValidationError, dataVar: SchemaErrorDataVar): string {
  const place = PLACE[dataVar];
  const key = error.instancePath.slice(1);
  if (error.keyword === 'additionalProperties') return `unknown ${dataVar === 'querystring' ? 'query parameter' : 'key'} ${quoted(error.params.additionalProperty)} in ${place}`;
  if (error.keyword === 'required') return `${quoted(error.params.missingProperty)} is required in ${place}`;
  // Only a body can be something other than an object (an array, a string, nothing at all).
  if (error.keyword === 'type' && key === '') return `${place} must be a JSON object`;
  if (error.keyword === 'type') return `${key} must be ${error.params.type === 'boolean' ? 'true or false' : `a ${String(error.params.type)}`}`;
  return `${key || place} ${error.message ?? 'is not valid'}`;
}
