import { performance } from 'node:perf_hooks';
import { BENCH_SENDER } from './message.js';
import { freshSpool, startBenchQueue, type DrainContext } from './mta-drain.js';
import type { MtaQueueProcess } from './mta-queue-process.js';
import { freePort, readCpuMs, waitForPort } from './proc.js';
import { fillDeferred } from './spool-fill.js';
import { formatMs, percentile } from './stats.js';
import { snippet, WebClient, type WebResponse } from './web-client.js';
import type { WebBenchOptions } from './web-options.js';

/**
 * The latency scenario of bench:web: one mta-queue serving its web UI over a spool of `--queued` deferred messages
 * (due in a day: nothing is delivered while measuring), one client, one keep-alive connection, requests one
 * after another. Every row gets `--requests` measured requests, the rows taken in turn (round-robin), after two
 * unmeasured rounds.
 */

/** The queue's recipients: 1 % at RARE_DOMAIN, the rest at the sink's domain; local parts u0..u499. */
export const RARE_DOMAIN = 'rare.test';
export const COMMON_DOMAIN = 'sink.test';
/** `q=to:` this address: every 500th message (0.2 %), none at the rare domain. */
export const SEARCHED_RECIPIENT = `u7@${COMMON_DOMAIN}`;
export const LATENCY_TARGET_MS = 300;
const WARMUP_ROUNDS = 2;
/** Page sizes the cursor walk asks for, the next one whenever the server refuses one (400); null: its default. */
const WALK_PAGE_LIMITS = [1000, 500, 200, 100, null];
/** Limits of the cursor walk that finds late cursors (it also stops at 90 % of the queue or at its end). */
const WALK_MAX_PAGES = 2000;
const WALK_MAX_MS = 120_000;
/** Deep rows rotate over this many of the walk's last cursors. */
const LATE_CURSORS = 5;
const REQUEST_TIMEOUT_MS = 30_000;

export function recipientOf(index: number): string {
  return `u${index % 500}@${index % 100 === 0 ? RARE_DOMAIN : COMMON_DOMAIN}`;
}

export interface WebCredentials {
  file: string;
  user: string;
  password: string;
}

export interface LatencyRow {
  key: string;
  label: string;
  /** Requests asked for, made, and answered 200 with the expected content type (only those are in the figures). */
  asked: number;
  made: number;
  ok: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  /** mta-queue CPU (all threads) per request, from /proc before and after each one (10 ms ticks, averaged). */
  serverCpuMsPerRequest: number;
  /** Median body size, bytes. */
  bytes: number;
  /** JSON rows: median number of messages on the page, and of envelopes the server read for it (its `examined`). */
  messages: number | null;
  examined: number | null;
  targetMet: boolean | null;
  timedOut: boolean;
  errors: string[];
}

export interface LatencyResult {
  queued: number;
  fillMs: number;
  rareMessages: number;
  searchedMessages: number;
  /** Spawn → web port accepting connections. */
  portAfterMs: number | null;
  loginMs: number | null;
  /** The first GET /queue after logging in (cold: nothing compiled, nothing cached). */
  coldQueueMs: number | null;
  walk: { pages: number; pageSize: number | null; depth: number; ms: number; reachedEnd: boolean; lateDepths: number[] } | null;
  rows: LatencyRow[];
  connections: number;
  rssMb: number | null;
  /** Messages that reached the sink meanwhile (must be 0: everything is due in a day). */
  delivered: number;
  notes: string[];
  errors: string[];
}

interface RowSpec {
  key: string;
  label: string;
  kind: 'html' | 'json';
  path: (index: number) => string;
  basic?: boolean;
  /** A problem with a JSON page's content, or null. */
  check?: (page: MessagesPage) => string | null;
}

interface MessagesPage {
  messages: { id?: unknown }[];
  next: string | null;
  /** Envelopes the server read for this page, when it says. */
  examined: number | null;
}

export async function measureLatency(context: DrainContext, options: WebBenchOptions, credentials: WebCredentials, extraArgs: string[]): Promise<LatencyResult> {
  const { workDir, sink, cleanups, progress, checkInterrupted } = context;
  const result: LatencyResult = {
    queued: options.queued,
    fillMs: 0,
    rareMessages: countOf(options.queued, (i) => recipientOf(i).endsWith(`@${RARE_DOMAIN}`)),
    searchedMessages: countOf(options.queued, (i) => recipientOf(i) === SEARCHED_RECIPIENT),
    portAfterMs: null,
    loginMs: null,
    coldQueueMs: null,
    walk: null,
    rows: [],
    connections: 0,
    rssMb: null,
    delivered: 0,
    notes: [],
    errors: [],
  };
  const { layout, remove } = await freshSpool(workDir);
  cleanups.add(remove);
  let proc: MtaQueueProcess | null = null;
  let client: WebClient | null = null;
  const stop = async () => {
    client?.close();
    await proc?.stop();
  };
  cleanups.add(stop);
  try {
    result.fillMs = await fillDeferred(layout, options.queued, Date.now() + 24 * 3_600_000, 3_600_000, BENCH_SENDER, recipientOf);
    progress(`  ${options.queued} deferred messages written in ${(result.fillMs / 1000).toFixed(1)} s (${result.rareMessages} to ${RARE_DOMAIN}, due in 24–25 h)`);
    checkInterrupted();
    const port = await freePort();
    const baseline = sink.count;
    proc = startBenchQueue(context, layout.root, options, { extraArgs: [...extraArgs, '--web', `127.0.0.1:${port}`, '--web-users', credentials.file] });
    const running = proc;
    await waitForPort(port, 120_000, () => running.exitReason);
    result.portAfterMs = performance.now() - running.spawnedAt;
    client = new WebClient('127.0.0.1', port, REQUEST_TIMEOUT_MS);
    const loginStarted = performance.now();
    await client.login(credentials.user, credentials.password);
    result.loginMs = performance.now() - loginStarted;
    const cold = await client.get('/queue', { headers: { accept: 'text/html' } });
    if (cold.status !== 200) throw new Error(`GET /queue after logging in answered ${cold.status}: ${snippet(cold.body)}`);
    result.coldQueueMs = cold.ms;
    progress(`  web port answered ${formatMs(result.portAfterMs)} ms after spawn; logged in in ${formatMs(result.loginMs)} ms; first /queue ${formatMs(cold.ms)} ms`);

    await sanityChecks(client, result);
    checkInterrupted();

    // Late cursors: follow `next` with big pages (if the server takes ?limit) to ~90 % of the queue.
    const walk = await walkCursors(client, options.queued, WALK_MAX_MS, result.errors);
    result.walk = { pages: walk.pages, pageSize: walk.pageSize, depth: walk.depth, ms: walk.ms, reachedEnd: walk.reachedEnd, lateDepths: walk.late.map((c) => c.depth) };
    progress(`  cursor walk: ${walk.pages} pages${walk.pageSize ? ` of ${walk.pageSize}` : ''}, ${walk.depth} messages deep in ${(walk.ms / 1000).toFixed(1)} s${walk.reachedEnd ? ' (reached the end)' : ''}`);
    checkInterrupted();
    const late = walk.late.map((c) => c.cursor);
    const lateLabel = walk.late.length ? `~${walk.late[0]!.depth.toLocaleString('en-US')} deep` : 'none found';
    const deep = (base: string) => (index: number) => `${base}?${new URLSearchParams({ cursor: late[index % late.length]! })}`;
    const notEmpty = (what: string) => (page: MessagesPage) => (page.messages.length === 0 ? `${what}: no messages on the page` : null);
    const specs: RowSpec[] = [
      { key: 'queue', label: '/queue (first page)', kind: 'html', path: () => '/queue' },
      ...(late.length ? [{ key: 'queue-deep', label: `/queue?cursor=… (${lateLabel})`, kind: 'html' as const, path: deep('/queue') }] : []),
      { key: 'queue-state', label: '/queue?state=deferred', kind: 'html', path: () => '/queue?state=deferred' },
      { key: 'queue-domain', label: `/queue?domain=${RARE_DOMAIN} (1 %)`, kind: 'html', path: () => `/queue?domain=${RARE_DOMAIN}` },
      { key: 'api', label: '/api/messages (first page)', kind: 'json', path: () => '/api/messages', check: notEmpty('first page') },
      ...(late.length ? [{ key: 'api-deep', label: `/api/messages?cursor=… (${lateLabel})`, kind: 'json' as const, path: deep('/api/messages'), check: notEmpty('deep cursor') }] : []),
      {
        key: 'api-search',
        label: `/api/messages?q=to:${SEARCHED_RECIPIENT} (0.2 %)`,
        kind: 'json',
        path: () => `/api/messages?${new URLSearchParams({ q: `to:${SEARCHED_RECIPIENT}` })}`,
        check: notEmpty(`q=to:${SEARCHED_RECIPIENT}`),
      },
      { key: 'api-basic', label: '/api/messages, HTTP Basic, no cookie', kind: 'json', path: () => '/api/messages', basic: true, check: notEmpty('Basic') },
      { key: 'overview', label: '/ (overview)', kind: 'html', path: () => '/' },
      { key: 'stats', label: '/api/stats', kind: 'json', path: () => '/api/stats' },
    ];
    if (!late.length) result.errors.push('no cursor found (GET /api/messages gave no `next`): the deep-cursor rows are left out');
    result.rows = await measureRows(client, running.pid, specs, options, credentials, progress, checkInterrupted);
    await deepHtmlCheck(client, late[0], result);
    result.connections = client.connections;
    const memory = await running.memory();
    result.rssMb = memory ? memory.rssKb / 1024 : null;
    result.delivered = sink.count - baseline;
    if (result.delivered !== 0) result.errors.push(`${result.delivered} messages reached the sink while measuring (the queue is due in 24 h)`);
    client.close();
    await running.stop();
    if (running.problemCount > 0) result.errors.push(`mta-queue logged ${running.problemCount} warn/error lines, last: ${running.problems.at(-1)}`);
    if (running.exitReason && !/SIGTERM|status 0/.test(running.exitReason)) result.errors.push(running.exitReason);
  } catch (error) {
    result.errors.push((error as Error).message);
    if (proc?.exitReason) result.errors.push(proc.exitReason);
    if (proc?.problems.length) result.errors.push(`mta-queue's last warn/error line: ${proc.problems.at(-1)}`);
  } finally {
    await stop();
    cleanups.delete(stop);
    progress(`  removing the ${options.queued}-message spool…`);
    await remove();
    cleanups.delete(remove);
  }
  return result;
}

function countOf(count: number, test: (index: number) => boolean): number {
  let n = 0;
  for (let i = 0; i < count; i++) if (test(i)) n += 1;
  return n;
}

function parsePage(answer: WebResponse): MessagesPage {
  const value = JSON.parse(answer.body.toString('utf8')) as Partial<MessagesPage>;
  if (!value || !Array.isArray(value.messages)) throw new Error(`no "messages" array: ${snippet(answer.body, 120)}`);
  if (value.next !== null && value.next !== undefined && typeof value.next !== 'string') throw new Error(`"next" is neither a string nor null: ${JSON.stringify(value.next)}`);
  const examined = (value as { examined?: unknown }).examined;
  return { messages: value.messages, next: value.next ?? null, examined: typeof examined === 'number' ? examined : null };
}

/** What the figures must not hide: pages served without a session, filters that match nothing. Notes only. */
async function sanityChecks(client: WebClient, result: LatencyResult): Promise<void> {
  const anonymousPage = await client.get('/queue', { cookies: false, headers: { accept: 'text/html' } });
  if (anonymousPage.status === 200) result.notes.push('GET /queue without a session answered 200 (a login page? the figures assume the queue page)');
  const anonymousApi = await client.get('/api/messages', { cookies: false, headers: { accept: 'application/json' } });
  if (anonymousApi.status === 200) result.notes.push('GET /api/messages without credentials answered 200');
  const checks: [string, string, number][] = [
    [`/api/messages?domain=${RARE_DOMAIN}`, `domain=${RARE_DOMAIN}`, result.rareMessages],
    ['/api/messages?state=deferred', 'state=deferred', result.queued],
    [`/api/messages?${new URLSearchParams({ q: `to:${SEARCHED_RECIPIENT}` })}`, `q=to:${SEARCHED_RECIPIENT}`, result.searchedMessages],
  ];
  for (const [path, what, expected] of checks) {
    try {
      const answer = await client.get(path, { headers: { accept: 'application/json' } });
      if (answer.status !== 200) {
        result.notes.push(`${what}: GET ${path} answered ${answer.status}: ${snippet(answer.body, 120)}`);
        continue;
      }
      const page = parsePage(answer);
      if (expected > 0 && page.messages.length === 0) result.notes.push(`${what}: the first page is empty (next: ${page.next === null ? 'none' : 'a cursor'}), though ${expected} queued messages match`);
    } catch (error) {
      result.notes.push(`${what}: ${(error as Error).message}`);
    }
  }
}

interface Walk {
  pages: number;
  pageSize: number | null;
  depth: number;
  ms: number;
  reachedEnd: boolean;
  late: { cursor: string; depth: number }[];
}

async function walkCursors(client: WebClient, queued: number, maxMs: number, errors: string[]): Promise<Walk> {
  const started = performance.now();
  const cursors: { cursor: string; depth: number }[] = [];
  const limits = [...WALK_PAGE_LIMITS];
  let limit = limits.shift()!;
  let cursor: string | null = null;
  let depth = 0;
  let pages = 0;
  let pageSize: number | null = null;
  let reachedEnd = false;
  while (pages < WALK_MAX_PAGES && performance.now() - started < maxMs && depth < queued * 0.9) {
    const query = new URLSearchParams();
    if (limit !== null) query.set('limit', String(limit));
    if (cursor !== null) query.set('cursor', cursor);
    const answer = await client.get(`/api/messages${query.size ? `?${query}` : ''}`, { headers: { accept: 'application/json' } });
    if (answer.status === 400 && limit !== null && pages === 0) {
      limit = limits.shift()!; // the server refuses a page that big: try a smaller one, at last its default
      continue;
    }
    if (answer.status !== 200) {
      errors.push(`cursor walk: page ${pages + 1} answered ${answer.status}: ${snippet(answer.body, 120)}`);
      break;
    }
    let page: MessagesPage;
    try {
      page = parsePage(answer);
    } catch (error) {
      errors.push(`cursor walk: page ${pages + 1}: ${(error as Error).message}`);
      break;
    }
    pages += 1;
    pageSize ??= page.messages.length;
    depth += page.messages.length;
    if (page.next === null || page.messages.length === 0) {
      reachedEnd = true;
      break;
    }
    cursor = page.next;
    cursors.push({ cursor, depth });
  }
  return { pages, pageSize, depth, ms: performance.now() - started, reachedEnd, late: cursors.slice(-LATE_CURSORS) };
}

async function measureRows(
  client: WebClient,
  pid: number,
  specs: RowSpec[],
  options: WebBenchOptions,
  credentials: WebCredentials,
  progress: (text: string) => void,
  checkInterrupted: () => void,
): Promise<LatencyRow[]> {
  const state = specs.map((spec) => ({ spec, latencies: [] as number[], bytes: [] as number[], messages: [] as number[], examined: [] as number[], cpuMs: 0, made: 0, spentMs: 0, timedOut: false, errors: new Map<string, number>() }));
  const one = async (row: (typeof state)[number], index: number, measured: boolean) => {
    const { spec } = row;
    const path = spec.path(index);
    const cpuBefore = measured ? await readCpuMs(pid) : null;
    const started = performance.now();
    let answer: WebResponse;
    try {
      answer = await client.get(path, {
        cookies: !spec.basic,
        basic: spec.basic ? { user: credentials.user, password: credentials.password } : undefined,
        headers: { accept: spec.kind === 'json' ? 'application/json' : 'text/html' },
      });
    } catch (error) {
      if (measured) {
        row.made += 1;
        row.spentMs += performance.now() - started;
        count(row.errors, (error as Error).message);
      }
      return;
    }
    if (!measured) return;
    const cpuAfter = await readCpuMs(pid);
    row.made += 1;
    row.spentMs += answer.ms;
    if (cpuBefore !== null && cpuAfter !== null) row.cpuMs += cpuAfter - cpuBefore;
    const problem = validate(spec, answer, row);
    if (problem) count(row.errors, problem);
    else {
      row.latencies.push(answer.ms);
      row.bytes.push(answer.body.length);
    }
  };
  for (let round = 0; round < WARMUP_ROUNDS; round++) for (const row of state) await one(row, round, false);
  const started = performance.now();
  for (let index = 0; index < options.requests; index++) {
    checkInterrupted();
    for (const row of state) {
      if (row.timedOut) continue;
      if (row.spentMs >= options.rowTimeLimitMs) {
        row.timedOut = true;
        continue;
      }
      await one(row, index, true);
    }
    if ((index + 1) % 50 === 0 && index + 1 < options.requests) progress(`  ${index + 1}/${options.requests} requests per row done (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
  return state.map((row): LatencyRow => {
    const p95 = percentile(row.latencies, 95);
    const errors = [...row.errors].map(([text, n]) => (n > 1 ? `${text} (×${n})` : text));
    if (row.timedOut) errors.unshift(`stopped after ${row.made} requests: --row-time-limit ${options.rowTimeLimitMs / 1000} s spent`);
    return {
      key: row.spec.key,
      label: row.spec.label,
      asked: options.requests,
      made: row.made,
      ok: row.latencies.length,
      p50Ms: percentile(row.latencies, 50),
      p95Ms: p95,
      maxMs: row.latencies.length ? Math.max(...row.latencies) : NaN,
      serverCpuMsPerRequest: row.made ? row.cpuMs / row.made : NaN,
      bytes: percentile(row.bytes, 50),
      messages: row.spec.kind === 'json' && row.messages.length ? percentile(row.messages, 50) : null,
      examined: row.examined.length ? percentile(row.examined, 50) : null,
      targetMet: row.latencies.length ? p95 <= LATENCY_TARGET_MS && row.latencies.length === options.requests : null,
      timedOut: row.timedOut,
      errors,
    };
  });
}

function count(map: Map<string, number>, text: string): void {
  map.set(text, (map.get(text) ?? 0) + 1);
}

/** Why an answer does not count (wrong status, content type or JSON), or null; a JSON page's sizes go to `into`. */
function validate(spec: RowSpec, answer: WebResponse, into: { messages: number[]; examined: number[] }): string | null {
  if (answer.status !== 200) return `${answer.status}: ${snippet(answer.body, 120)}`;
  const type = String(answer.headers['content-type'] ?? '');
  if (spec.kind === 'html') return /text\/html/i.test(type) ? null : `content-type ${type || 'missing'}, not text/html`;
  if (!/json/i.test(type)) return `content-type ${type || 'missing'}, not JSON`;
  if (spec.key === 'stats') {
    try {
      JSON.parse(answer.body.toString('utf8'));
      return null;
    } catch {
      return `not JSON: ${snippet(answer.body, 120)}`;
    }
  }
  let page: MessagesPage;
  try {
    page = parsePage(answer);
  } catch (error) {
    return (error as Error).message;
  }
  into.messages.push(page.messages.length);
  if (page.examined !== null) into.examined.push(page.examined);
  return spec.check?.(page) ?? null;
}

/** Whether the HTML page at a deep cursor shows that page's messages (the API's first id there): a note if not. */
async function deepHtmlCheck(client: WebClient, cursor: string | undefined, result: LatencyResult): Promise<void> {
  if (cursor === undefined) return;
  try {
    const query = new URLSearchParams({ cursor });
    const api = parsePage(await client.get(`/api/messages?${query}`, { headers: { accept: 'application/json' } }));
    const first = await client.get('/queue', { headers: { accept: 'text/html' } });
    const html = (await client.get(`/queue?${query}`, { headers: { accept: 'text/html' } })).body.toString('utf8');
    const id = api.messages[0]?.id;
    if (typeof id !== 'string') return;
    if (!html.includes(id)) result.notes.push(`the /queue page at a deep cursor does not show ${id}, the first message /api/messages has there: does /queue take the API's cursor?`);
    else if (first.body.toString('utf8').includes(id)) result.notes.push(`the first /queue page already shows ${id}, the first message at the deep cursor`);
  } catch (error) {
    result.notes.push(`deep /queue check: ${(error as Error).message}`);
  }
}
