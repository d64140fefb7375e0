import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { BackoffStore } from '../../src/spool/backoff-store.js';
import { deferredName } from '../../src/spool/entry-names.js';
import { ensureSpool, spoolLayout } from '../../src/spool/layout.js';
import { findQueueItem } from '../../src/spool/queue-listing.js';
import { newTestKey, writeTestKey } from '../helpers/dkim-keys.js';
import { envelope, recipient } from '../helpers/spool-items.js';
import { DaemonProcess, runCli, runMtaQueue } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { ReceivedMail } from '../helpers/mx-server.js';
import { eventually } from '../helpers/queue-harness.js';
import { tempDir } from '../helpers/temp.js';
import { OTHER_USER, startWebUnderTest, WEB_USER, WebClient, writeWebUsers, type WebUnderTest } from '../helpers/web-client.js';

/**
 * mta-queue's JSON API over real HTTP on loopback: authentication (session cookie or HTTP Basic), CSRF for
 * cookie-authenticated changes, reads that equal the CLI's `--json` output for the same spool, and the actions
 * against a running mta-queue process delivering to a loopback MX.
 */

const H = 3_600_000;

async function cliJson<T = any>(args: string[]): Promise<T> {
  const result = await runMtaQueue(args);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as T;
}

const seqOf = (message: ReceivedMail) => /^X-Seq: (\S+)/m.exec(message.raw.toString())?.[1];
const body = (seq: string, to: string) => `From: app@shop.example\nTo: ${to}\nSubject: ${seq}\nX-Seq: ${seq}\n\nbody of ${seq}\n`;

describe('web API reads, authentication and CSRF (startWebServer on a spool)', () => {
  let f: DeliveryFixture;
  let web: WebUnderTest;
  let temp: { dir: string; cleanup: () => Promise<void> };
  const ids = { deferred: '', news: '', app: '', old: '', held: '' };
  const spool = () => ['--spool', f.layout.root];
  const basic = { basic: WEB_USER };
  const listIds = async (query: string) => {
    const reply = await web.client().get(`/api/messages?${query}`, basic);
    assert.equal(reply.status, 200, `${query}: ${reply.text}`);
    return (reply.json().messages as { id: string }[]).map((message) => message.id).sort();
  };

  before(async () => {
    temp = await tempDir('mta-web-api-');
    f = await startDeliveryFixture([{ name: 'mx.ok.test' }, { rcpt: [{ code: 451, message: 'Try later' }] }], (hosts) => ({
      'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'mx.ok.test': { a: [hosts[0]!] },
      'later.test': { a: [hosts[1]!] },
    }));
    ids.deferred = await f.enqueue('app@shop.example', ['x@later.test'], body('deferred', 'x@later.test'));
    await f.runOnce(); // the later.test MX answers 451: deferred with that reply
    f.clock.time = Date.now() - 3 * H;
    ids.old = await f.enqueue('app@shop.example', ['c@ok.test'], body('old', 'c@ok.test'));
    f.clock.time = Date.now();
    ids.news = await f.enqueue('news@shop.example', ['a@ok.test'], body('news', 'a@ok.test'));
    ids.app = await f.enqueue('app@shop.example', ['b@ok.test'], body('app', 'b@ok.test'));
    ids.held = await f.enqueue('app@shop.example', ['h@ok.test'], body('held', 'h@ok.test'));
    const hold = await runMtaQueue(['hold', ids.held, ...spool()]);
    assert.equal(hold.code, 0, hold.stderr);
    web = await startWebUnderTest({ layout: f.layout, usersFile: await writeWebUsers(temp.dir) });
  });
  after(async () => {
    await web?.close();
    await f?.close();
    await temp?.cleanup();
  });

  test('every /api route answers 401 with a Basic challenge without credentials, and with wrong ones', async () => {
    const id = ids.app;
    const routes: [('GET' | 'POST'), string][] = [
      ['GET', '/api/stats'],
      ['GET', '/api/history'],
      ['GET', '/api/messages'],
      ['GET', '/api/messages?state=held'],
      ['GET', `/api/messages/${id}`],
      ['GET', `/api/messages/${id}/raw`],
      ...(['flush', 'hold', 'release', 'delete'] as const).map((action): ['POST', string] => ['POST', `/api/messages/${id}/${action}`]),
      ...(['flush', 'hold', 'release', 'delete'] as const).map((action): ['POST', string] => ['POST', `/api/bulk/${action}`]),
    ];
    const client = web.client();
    for (const [method, route] of routes) {
      const reply = await client.request(route, { method, ...(method === 'POST' ? { json: { all: true } } : {}) });
      assert.equal(reply.status, 401, `${method} ${route}`);
      assert.match(reply.headers.get('www-authenticate') ?? '', /^Basic realm=/, `${method} ${route}`);
      assert.match(reply.json().error, /authentication required/);
    }
    const wrong = [
      await client.get('/api/stats', { basic: { user: WEB_USER.user, password: 'nope' } }),
      await client.request(`/api/messages/${id}/hold`, { method: 'POST', json: {}, basic: { user: 'nobody', password: WEB_USER.password } }),
      await client.get('/api/stats', { headers: { authorization: 'Bearer abc' } }),
      await client.get('/api/stats', { headers: { cookie: 'mta_session=forged' } }),
    ];
    for (const reply of wrong) assert.equal(reply.status, 401);
    assert.equal((await findQueueItem(f.layout, id))?.state, 'incoming', 'nothing changed');
    // Those failures count against 127.0.0.1; let them leave the throttle's window before the next tests.
    web.clock.advance(11 * 60_000);
  });

  test('HTTP Basic with the right credentials works for GET and for POST, without a CSRF token', async () => {
    const client = web.client();
    const stats = await client.get('/api/stats', basic);
    assert.equal(stats.status, 200);
    assert.equal(stats.json().total, 5);
    const held = await client.request(`/api/messages/${ids.app}/hold`, { method: 'POST', ...basic });
    assert.equal(held.status, 200, held.text);
    assert.deepEqual(held.json(), { id: ids.app, action: 'hold', result: 'held', was: 'incoming' });
    assert.equal((await findQueueItem(f.layout, ids.app))?.state, 'held');
    const again = await client.request(`/api/messages/${ids.app}/hold`, { method: 'POST', ...basic });
    assert.equal(again.status, 200);
    assert.equal(again.json().result, 'unchanged');
    const released = await client.request(`/api/messages/${ids.app}/release`, { method: 'POST', json: {}, basic: OTHER_USER });
    assert.equal(released.status, 200, released.text);
    assert.equal(released.json().result, 'released');
    assert.equal((await findQueueItem(f.layout, ids.app))?.state, 'incoming');
    assert.deepEqual(web.logs.events('held').map((line) => [line.queueId, line.operator, line.via]), [[ids.app, WEB_USER.user, 'web']], 'the audit line names the operator');
    assert.equal(client.jar.size, 0, 'Basic sets no cookie');
  });

  test('HTTP Basic from a page of another site is refused (a browser may have cached the credentials): 403, nothing changed', async () => {
    const client = web.client();
    const forged = [
      await client.request(`/api/messages/${ids.app}/hold`, { method: 'POST', ...basic, headers: { origin: 'http://evil.example' } }),
      await client.request(`/api/messages/${ids.app}/hold`, { method: 'POST', ...basic, headers: { 'sec-fetch-site': 'cross-site' } }),
      await client.request('/api/bulk/hold', { method: 'POST', json: { all: true, dry_run: false }, ...basic, headers: { 'sec-fetch-site': 'same-site', origin: 'http://other.localhost' } }),
    ];
    for (const reply of forged) {
      assert.equal(reply.status, 403, reply.text);
      assert.match(reply.json().error, /cross-site request refused/);
    }
    assert.equal((await findQueueItem(f.layout, ids.app))?.state, 'incoming', 'nothing held');
    // The UI's own origin, or a request the user typed (Sec-Fetch-Site: none), passes.
    const own = await client.request(`/api/messages/${ids.app}/hold`, { method: 'POST', ...basic, headers: { origin: web.origin, 'sec-fetch-site': 'same-origin' } });
    assert.equal(own.status, 200, own.text);
    const back = await client.request(`/api/messages/${ids.app}/release`, { method: 'POST', ...basic, headers: { 'sec-fetch-site': 'none' } });
    assert.equal(back.status, 200, back.text);
  });

  test('403 for cookie-authenticated API changes without, with a wrong, or with another session\'s CSRF token', async () => {
    const victim = new WebClient(web.origin);
    assert.equal((await victim.login(WEB_USER.user, WEB_USER.password)).status, 303);
    const other = new WebClient(web.origin);
    assert.equal((await other.login(OTHER_USER.user, OTHER_USER.password)).status, 303);
    // Reads need no token.
    assert.equal((await victim.get('/api/stats')).status, 200);
    for (const token of [null, 'wrong-token', other.csrf!]) {
      for (const [route, json] of [[`/api/messages/${ids.news}/hold`, {}], ['/api/bulk/hold', { all: true, dry_run: false }]] as const) {
        const reply = await victim.postJson(route, json, token);
        assert.equal(reply.status, 403, `${route} with ${token}`);
        assert.match(reply.json().error, /CSRF/);
      }
    }
    // The token in a form field works as well as the header; a wrong one there does not.
    assert.equal((await victim.request(`/api/messages/${ids.news}/hold`, { method: 'POST', form: { _csrf: other.csrf! } })).status, 403);
    assert.equal((await findQueueItem(f.layout, ids.news))?.state, 'incoming', 'nothing held');
    assert.equal((await findQueueItem(f.layout, ids.app))?.state, 'incoming', 'nothing held in bulk');
    const held = await victim.postJson(`/api/messages/${ids.news}/hold`, {});
    assert.equal(held.status, 200, held.text);
    assert.equal((await findQueueItem(f.layout, ids.news))?.state, 'held');
    const released = await victim.postJson(`/api/messages/${ids.news}/release`, {});
    assert.equal(released.status, 200, released.text);
    assert.equal((await findQueueItem(f.layout, ids.news))?.state, 'incoming');
  });

  test('GET /api/stats equals `mta-queue stats --json` for the same spool', async () => {
    const backoffs = new BackoffStore(f.layout);
    const now = Date.now();
    await backoffs.put({ site: 'mx.later.test', source: 'default', rule: 'built-in rule 1', action: 'suspend', since: now, until: now + H, reply: '421 4.7.0 [TSS04] later', shaping: {} }, now);
    const api = (await web.client().get('/api/stats', basic)).json();
    assert.deepEqual(api.backoffs, { count: 1, sites: [{ site: 'mx.later.test', source: 'default', action: 'suspend', until: now + H }] });
    const cli = await cliJson(['stats', '--json', ...spool()]);
    const withoutAge = (stats: any) => ({ ...stats, oldest: stats.oldest && { ...stats.oldest, ageMs: undefined } });
    assert.deepEqual(withoutAge(api), withoutAge(cli));
    assert.deepEqual(api.counts, { incoming: 3, deferred: 1, held: 1, active: 0, failed: 0 });
    assert.equal(api.oldest.id, ids.old);
    assert.ok(Math.abs(api.oldest.ageMs - web.clock.offset - cli.oldest.ageMs) < 5_000, `${api.oldest.ageMs} vs ${cli.oldest.ageMs}`);
    assert.deepEqual(api.deferredDomains, [{ domain: 'later.test', recipients: 1, messages: 1, lastReply: '451 4.3.0 Try later' }]);
    await backoffs.remove('mx.later.test', undefined, now);
    const history = (await web.client().get('/api/history', basic)).json();
    assert.equal(history.minutes.length, 60);
    assert.deepEqual(Object.keys(history).sort(), ['bounced', 'deferred', 'delivered', 'minutes']);
  });

  test('GET /api/messages filters: state, domain, sender, older_than, reply and the q search terms', async () => {
    assert.deepEqual(await listIds(''), Object.values(ids).sort());
    assert.deepEqual(await listIds('state=deferred'), [ids.deferred]);
    assert.deepEqual(await listIds('state=held'), [ids.held]);
    assert.deepEqual(await listIds('state=incoming'), [ids.old, ids.news, ids.app].sort());
    assert.deepEqual(await listIds('domain=later.test'), [ids.deferred]);
    assert.deepEqual(await listIds('domain=ok.test&state=incoming'), [ids.old, ids.news, ids.app].sort());
    assert.deepEqual(await listIds('sender=NEWS@shop.example'), [ids.news]);
    assert.deepEqual(await listIds('older_than=2h'), [ids.old]);
    assert.deepEqual(await listIds('reply=TRY%20LATER'), [ids.deferred]);
    assert.deepEqual(await listIds('q=to:b@ok'), [ids.app]);
    assert.deepEqual(await listIds('q=from:news'), [ids.news]);
    assert.deepEqual(await listIds('q=status:held'), [ids.held]);
    assert.deepEqual(await listIds('q=domain:later.test'), [ids.deferred]);
    assert.deepEqual(await listIds('q=before:2h'), [ids.old]);
    assert.deepEqual(await listIds('q=after:2h'), [ids.deferred, ids.news, ids.app, ids.held].sort());
    assert.deepEqual(await listIds(`q=${ids.held.slice(-10)}`), [ids.held], 'a bare word matches the id');
    assert.deepEqual(await listIds('state=incoming&q=from:app%20to:ok.test'), [ids.old, ids.app].sort());
    assert.deepEqual(await listIds('q=to:nobody'), []);
    const entry = (await web.client().get(`/api/messages?state=deferred`, basic)).json().messages[0];
    assert.equal(entry.id, ids.deferred);
    assert.equal(entry.state, 'deferred');
    assert.deepEqual(entry.pending, ['x@later.test']);
  });

  test('a bad filter, limit or cursor is 400 with a message naming it', async () => {
    const cases: [string, RegExp][] = [
      ['state=bogus', /state: "bogus" is not one of/],
      ['older_than=soon', /older_than/],
      ['domain=a@b', /domain/],
      ['reply=%20', /reply must not be empty/],
      ['q=before:yesterday', /before:/],
      ['q=to:a%20to:b', /to: is given twice/],
      ['q=status:nope', /status:/],
      ['limit=0', /limit/],
      ['limit=501', /limit/],
      ['cursor=..%2F..%2Fetc', /cursor/],
      ['state=held&state=deferred', /state must be a string/],
    ];
    for (const [query, message] of cases) {
      const reply = await web.client().get(`/api/messages?${query}`, basic);
      assert.equal(reply.status, 400, query);
      assert.match(reply.json().error, message, query);
    }
    const bulk = await web.client().request('/api/bulk/hold', { method: 'POST', json: { older_than: 'later', dry_run: true }, ...basic });
    assert.equal(bulk.status, 400);
    assert.match(bulk.json().error, /older_than/);
    const noFilter = await web.client().request('/api/bulk/hold', { method: 'POST', json: { dry_run: false }, ...basic });
    assert.equal(noFilter.status, 400, 'no filter and no all: refused, as the CLI refuses');
    assert.match(noFilter.json().error, /all/);
    const dryRun = await web.client().request('/api/bulk/hold', { method: 'POST', json: { all: true, dry_run: 'yes' }, ...basic });
    assert.equal(dryRun.status, 400);
    assert.equal((await findQueueItem(f.layout, ids.news))?.state, 'incoming');
  });

  test('cursor paging: limit=2 over 5 messages, pages without overlap, every id once, next null at the end', async () => {
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = '';
    for (let pages = 0; cursor !== null; pages++) {
      assert.ok(pages < 5, 'paging ends');
      const reply = await web.client().get(`/api/messages?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, basic);
      assert.equal(reply.status, 200, reply.text);
      const page = reply.json() as { messages: { id: string }[]; next: string | null; entries: number };
      assert.equal(page.entries, 5);
      sizes.push(page.messages.length);
      for (const message of page.messages) assert.ok(!seen.includes(message.id), `${message.id} on two pages`);
      seen.push(...page.messages.map((message) => message.id));
      cursor = page.next;
    }
    assert.deepEqual(sizes, [2, 2, 1]);
    assert.deepEqual(seen, [...seen].sort(), 'in id (arrival) order');
    assert.deepEqual([...seen].sort(), Object.values(ids).sort());
  });

  test('GET /api/messages/ID equals `show --json`; /raw equals `cat` byte for byte, as an attachment', async () => {
    for (const id of [ids.deferred, ids.held, ids.news]) {
      const reply = await web.client().get(`/api/messages/${id}`, basic);
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.json(), await cliJson(['show', id, '--json', ...spool()]), id);
      const raw = await web.client().get(`/api/messages/${id}/raw`, basic);
      assert.equal(raw.status, 200);
      const cat = await runMtaQueue(['cat', id, ...spool()]);
      assert.equal(cat.code, 0, cat.stderr);
      assert.ok(cat.bytes.length > 0);
      assert.ok(raw.body.equals(cat.bytes), `${id}: the same bytes`);
      assert.equal(raw.headers.get('content-disposition'), `attachment; filename="${id}.eml"`);
      assert.equal(raw.headers.get('content-type'), 'message/rfc822');
    }
    const deferred = (await web.client().get(`/api/messages/${ids.deferred}`, basic)).json();
    assert.equal(deferred.state, 'deferred');
    assert.deepEqual(deferred.envelope.recipients.map((r: any) => [r.address, r.state, r.lastReply?.code]), [['x@later.test', 'deferred', 451]]);
  });

  test('an unknown id is 404, a malformed one 400, an unknown action 404', async () => {
    const unknown = '0000000000000000zzzz';
    const client = web.client();
    for (const route of [`/api/messages/${unknown}`, `/api/messages/${unknown}/raw`]) {
      const reply = await client.get(route, basic);
      assert.equal(reply.status, 404, route);
      assert.match(reply.json().error, /no such message/);
    }
    const post = await client.request(`/api/messages/${unknown}/hold`, { method: 'POST', ...basic });
    assert.equal(post.status, 404);
    for (const route of ['/api/messages/not-an-id', '/api/messages/NOT-AN-ID-0123456789/raw']) {
      const reply = await client.get(route, basic);
      assert.equal(reply.status, 400, route);
      assert.match(reply.json().error, /not a queue id/);
    }
    assert.equal((await client.request('/api/messages/bad..id/delete', { method: 'POST', ...basic })).status, 400);
    assert.equal((await client.request(`/api/messages/${ids.news}/explode`, { method: 'POST', ...basic })).status, 404);
    assert.equal((await client.request('/api/bulk/explode', { method: 'POST', json: { all: true, dry_run: false }, ...basic })).status, 404);
    assert.equal((await client.get('/api/nothing-here', basic)).status, 404);
  });
});

describe('web API actions against a running mta-queue and a loopback MX', () => {
  let f: DeliveryFixture;
  let daemon: DaemonProcess;
  let temp: { dir: string; cleanup: () => Promise<void> };
  let client: WebClient;
  let usersFile: string;
  /** A script's requests: HTTP Basic, without the browser session's cookies (with them the session counts, and wants its CSRF token). */
  const basic = { basic: WEB_USER, cookies: false };
  const received = (seq: string) => f.mx.mxes[0]!.messages.filter((message) => seqOf(message) === seq).length;
  const stateOf = async (id: string): Promise<string | null> => {
    const reply = await client.get(`/api/messages/${id}`, basic);
    if (reply.status === 404) return null;
    assert.equal(reply.status, 200, reply.text);
    return reply.json().state;
  };
  const settled = (id: string, state: string | null) => eventually(async () => (await stateOf(id)) === state, `${id} ${state ?? 'gone'}`);
  /** A message the MX greylists at its first attempt: deferred, for an hour (--retry-schedule 1h). */
  const deferredMessage = async (seq: string, to = `${seq}@ok.test`) => {
    const id = await f.enqueue('app@shop.example', [to], body(seq, to));
    await settled(id, 'deferred');
    return id;
  };

  before(async () => {
    temp = await tempDir('mta-web-actions-');
    usersFile = await writeWebUsers(temp.dir);
    f = await startDeliveryFixture([{ name: 'mx.ok.test', rcpt: [{ code: 451, message: 'Greylisted, try again later', times: 1 }] }, { name: 'mx.slow.test', dataDelayMs: 4_000 }], (hosts) => ({
      'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'mx.ok.test': { a: [hosts[0]!] },
      'slow.test': { a: [hosts[1]!] },
    }));
    daemon = DaemonProcess.start('mta-queue', [
      '--spool', f.layout.root, '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s',
      '--retry-schedule', '1h', '--poll-interval', '100ms', '--web', '127.0.0.1:0', '--web-users', usersFile,
    ]);
    const listening = await daemon.waitForEvent('web-listening');
    client = new WebClient(String(listening.url));
    assert.equal((await client.login(WEB_USER.user, WEB_USER.password)).status, 303);
  });
  after(async () => {
    await daemon?.stop();
    await f?.close();
    await temp?.cleanup();
  });

  test('flush of a deferred message: the MX receives it at once', async () => {
    const id = await deferredMessage('flush-me');
    assert.equal(received('flush-me'), 0);
    const reply = await client.request(`/api/messages/${id}/flush`, { method: 'POST', ...basic });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json(), { id, action: 'flush', result: 'flushed', was: 'deferred' });
    await f.mx.mxes[0]!.waitForMessages(1);
    await eventually(() => received('flush-me') === 1, 'flush-me delivered');
    await settled(id, null);
    assert.equal(received('flush-me'), 1, 'once');
  });

  test('hold puts it in held/ (flush refused there), release gets it delivered', async () => {
    const id = await deferredMessage('hold-me');
    const held = await client.postJson(`/api/messages/${id}/hold`, {});
    assert.equal(held.status, 200, held.text);
    assert.deepEqual(held.json(), { id, action: 'hold', result: 'held', was: 'deferred' });
    assert.ok((await readdir(f.layout.dir('held'))).includes(`${id}.json`), 'in held/');
    assert.equal(await stateOf(id), 'held');
    const flush = await client.postJson(`/api/messages/${id}/flush`, {});
    assert.equal(flush.status, 409);
    assert.match(flush.json().reason, /held/);
    const line = await daemon.waitForLog((entry) => entry.event === 'held' && entry.queueId === id);
    assert.equal(line.operator, WEB_USER.user);
    assert.equal(received('hold-me'), 0);
    const released = await client.postJson(`/api/messages/${id}/release`, {});
    assert.equal(released.status, 200, released.text);
    assert.equal(released.json().result, 'released');
    await eventually(() => received('hold-me') === 1, 'hold-me delivered after release');
    await settled(id, null);
  });

  test('delete removes it: 404 afterwards, message file gone', async () => {
    const id = await deferredMessage('delete-me');
    const reply = await client.request(`/api/messages/${id}/delete`, { method: 'POST', ...basic });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json(), { id, action: 'delete', result: 'deleted', was: 'deferred' });
    assert.equal((await client.get(`/api/messages/${id}`, basic)).status, 404);
    assert.equal((await client.get(`/api/messages/${id}/raw`, basic)).status, 404);
    assert.equal((await client.request(`/api/messages/${id}/flush`, { method: 'POST', ...basic })).status, 404);
    assert.ok(!(await readdir(f.layout.dir('data'))).includes(`${id}.eml`), 'data file removed');
    assert.equal(received('delete-me'), 0);
  });

  test('bulk dry_run counts and lists without changing anything; the real bulk then acts', async () => {
    const ids = [await deferredMessage('bulk-1'), await deferredMessage('bulk-2'), await deferredMessage('bulk-3')];
    const dry = await client.postJson('/api/bulk/flush', { q: 'to:bulk-', dry_run: true });
    assert.equal(dry.status, 200, dry.text);
    assert.deepEqual(dry.json(), { action: 'flush', dry_run: true, would_change: 3, ids: [...ids].sort(), skipped: [] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const id of ids) assert.equal(await stateOf(id), 'deferred', 'a dry run changes nothing');
    assert.equal(['bulk-1', 'bulk-2', 'bulk-3'].map(received).join(), '0,0,0');
    const real = await client.request('/api/bulk/flush', { method: 'POST', json: { q: 'to:bulk-', dry_run: false }, ...basic });
    assert.equal(real.status, 200, real.text);
    assert.deepEqual(real.json(), { action: 'flush', dry_run: false, changed: 3, ids: [...ids].sort(), skipped: [] });
    await eventually(() => ['bulk-1', 'bulk-2', 'bulk-3'].every((seq) => received(seq) === 1), 'all three delivered');
    for (const id of ids) await settled(id, null);
  });

  test('a message being delivered right now: hold is refused with 409, bulk hold lists it under skipped', async () => {
    const id = await f.enqueue('app@shop.example', ['x@slow.test'], body('slow-1', 'x@slow.test'));
    await settled(id, 'active'); // the slow MX sits on the end of DATA for 4 s
    const hold = await client.postJson(`/api/messages/${id}/hold`, {});
    assert.equal(hold.status, 409, hold.text);
    assert.equal(hold.json().result, 'refused');
    assert.match(hold.json().reason, /being delivered right now/);
    const bulk = await client.postJson('/api/bulk/hold', { domain: 'slow.test', dry_run: false });
    assert.equal(bulk.status, 200, bulk.text);
    const result = bulk.json();
    assert.equal(result.changed, 0);
    assert.deepEqual(result.ids, []);
    assert.equal(result.skipped.length, 1);
    assert.equal(result.skipped[0].id, id);
    assert.equal(result.skipped[0].state, 'active');
    assert.match(result.skipped[0].reason, /being delivered/);
    const deleted = await client.request(`/api/messages/${id}/delete`, { method: 'POST', ...basic });
    assert.equal(deleted.status, 409, 'nor deleted');
    // The delivery goes on undisturbed.
    await f.mx.mxes[1]!.waitForMessages(1, 10_000);
    await settled(id, null);
    assert.ok(!(await readdir(f.layout.dir('held'))).includes(`${id}.json`));
  });
});

describe('mta-queue --web configuration', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  const daemons: DaemonProcess[] = [];
  before(async () => {
    temp = await tempDir('mta-web-config-');
  });
  afterEach(() => Promise.all(daemons.splice(0).map((daemon) => daemon.stop())));
  after(() => temp.cleanup());

  test('a missing --web-users file is exit 2 with one line on stderr, no stack trace', async () => {
    const missing = path.join(temp.dir, 'no-such-users.txt');
    const result = await runCli('mta-queue', ['--spool', path.join(temp.dir, 'spool'), '--web', '127.0.0.1:0', '--web-users', missing]);
    assert.equal(result.code, 2, result.stderr);
    const lines = result.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, result.stderr);
    assert.ok(lines[0]!.includes(missing), lines[0]);
    assert.doesNotMatch(result.stderr, /\n\s+at |Error:.*\n.*at /);
  });

  test('--web 0.0.0.0:PORT logs web-exposed', async () => {
    const usersFile = await writeWebUsers(temp.dir);
    const daemon = DaemonProcess.start('mta-queue', ['--spool', path.join(temp.dir, 'spool'), '--web', '0.0.0.0:0', '--web-users', usersFile, '--hostname', 'relay.test']);
    daemons.push(daemon);
    const exposed = await daemon.waitForEvent('web-exposed');
    assert.equal(exposed.host, '0.0.0.0');
    assert.ok(Number(exposed.port) > 0);
    const reply = await fetch(`http://127.0.0.1:${exposed.port}/api/stats`, { headers: { authorization: `Basic ${Buffer.from(`${WEB_USER.user}:${WEB_USER.password}`).toString('base64')}` } });
    assert.equal(reply.status, 200, 'the UI answers there');
    // On loopback it says nothing of the kind.
    const quiet = DaemonProcess.start('mta-queue', ['--spool', path.join(temp.dir, 'spool2'), '--web', '127.0.0.1:0', '--web-users', usersFile, '--hostname', 'relay.test']);
    daemons.push(quiet);
    await quiet.waitForEvent('web-listening');
    assert.equal(quiet.logs.filter((line) => line.event === 'web-exposed').length, 0);
    assert.equal(quiet.logs.filter((line) => line.event === 'file-readable-by-others').length, 0, 'a 0600 users file is fine');
  });

  test('the UI on its own thread answers from the daemon: stats as the CLI counts, DKIM keys and counters from the main thread, its log lines in the daemon log, SIGHUP and SIGTERM', async () => {
    const spoolDir = path.join(temp.dir, 'spool-thread');
    const layout = spoolLayout(spoolDir);
    await ensureSpool(layout);
    await mkdir(layout.dir('held'), { recursive: true });
    const held = envelope({ arrivedAt: Date.now() - 2 * H, recipients: [recipient('h@held.test', 'pending')] });
    const waiting = envelope({ arrivedAt: Date.now() - H, recipients: [recipient('w@later.test', 'deferred', '451 4.7.1 later')] });
    await writeFile(layout.messagePath(held.id), 'Subject: held\r\n\r\nx\r\n');
    await writeFile(layout.messagePath(waiting.id), 'Subject: waiting\r\n\r\nx\r\n');
    await writeFile(path.join(layout.dir('held'), `${held.id}.json`), JSON.stringify(held));
    // Due in a day: the daemon leaves it where it is while we count.
    await writeFile(path.join(layout.dir('deferred'), deferredName(waiting.id, Date.now() + 24 * H)), JSON.stringify(waiting));
    const dkimDir = path.join(temp.dir, 'dkim-thread');
    await writeTestKey(dkimDir, await newTestKey('relay.test', 'thread2026', 'ed25519'), 'active');
    const usersFile = await writeWebUsers(temp.dir);
    const daemon = DaemonProcess.start('mta-queue', ['--spool', spoolDir, '--web', '127.0.0.1:0', '--web-users', usersFile, '--hostname', 'relay.test', '--dns-servers', '127.0.0.1:9', '--dkim-dir', dkimDir]);
    daemons.push(daemon);
    const listening = await daemon.waitForEvent('web-listening');
    const client = new WebClient(String(listening.url));
    const stats = (await client.get('/api/stats', { basic: WEB_USER })).json() as { counts: object; total: number; oldest: { id: string }; deferredDomains: object[] };
    const cli = await cliJson<typeof stats>(['stats', '--json', '--spool', spoolDir]);
    assert.deepEqual(stats.counts, { incoming: 0, deferred: 1, held: 1, active: 0, failed: 0 });
    assert.deepEqual([stats.counts, stats.total, stats.oldest.id, stats.deferredDomains], [cli.counts, cli.total, cli.oldest.id, cli.deferredDomains]);

    // Logged on the UI's thread, written to the daemon's log as one line of its own.
    assert.equal((await client.get('/api/stats', { basic: { user: WEB_USER.user, password: 'wrong' } })).status, 401);
    const refused = await daemon.waitForEvent('web-auth-failed');
    assert.deepEqual([refused.pid, refused.user, refused.level], [daemon.pid, WEB_USER.user, 40]);

    // The overview's DKIM table and the chart's counters are the main thread's, asked for over the channel.
    assert.equal((await client.login(WEB_USER.user, WEB_USER.password)).status, 303);
    const overview = await client.get('/');
    assert.equal(overview.status, 200);
    assert.match(overview.text, /<td>relay\.test<\/td><td>thread2026<\/td><td>ed25519<\/td>/);
    const history = (await client.get('/api/history')).json() as { minutes: number[]; delivered: number[] };
    assert.equal(history.minutes.length, 60);
    assert.deepEqual(daemon.logs.filter((line) => line.event === 'web-history-failed' || String(line.event).startsWith('web-thread')), []);

    // SIGHUP re-reads the users: admin removed, its session ends; the other account now logs in.
    await writeFile(usersFile, (await readFile(usersFile, 'utf8')).split('\n').filter((line) => !line.startsWith(`${WEB_USER.user}:`)).join('\n'));
    daemon.signal('SIGHUP');
    assert.equal((await daemon.waitForEvent('web-users-reloaded')).users, 1);
    assert.equal((await client.get('/api/stats')).status, 401, 'the removed user\'s session ended');
    assert.equal((await client.get('/api/stats', { basic: OTHER_USER })).status, 200);

    daemon.signal('SIGTERM');
    assert.deepEqual(await daemon.exit(), { code: 0, signal: null });
    assert.ok(daemon.logs.some((line) => line.event === 'stopped'));
  });

  test('a --web port already taken: exit 1 with one line naming it, nothing left running', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      const usersFile = await writeWebUsers(temp.dir);
      const result = await runCli('mta-queue', ['--spool', path.join(temp.dir, 'spool-taken'), '--web', `127.0.0.1:${port}`, '--web-users', usersFile, '--hostname', 'relay.test']);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, `mta-queue: --web 127.0.0.1:${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`);
      assert.ok(result.logs.some((line) => line.event === 'stopped'), 'the delivery runner was closed');
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  test('a web users file others can read logs file-readable-by-others; an empty one is exit 2', async () => {
    const usersFile = await writeWebUsers(temp.dir);
    await chmod(usersFile, 0o644);
    const daemon = DaemonProcess.start('mta-queue', ['--spool', path.join(temp.dir, 'spool3'), '--web', '127.0.0.1:0', '--web-users', usersFile, '--hostname', 'relay.test']);
    daemons.push(daemon);
    const warning = await daemon.waitForEvent('file-readable-by-others');
    assert.deepEqual([warning.what, warning.file, warning.mode], ['web-users', usersFile, '0644']);
    const empty = path.join(temp.dir, 'empty-users.txt');
    await writeFile(empty, '# nobody yet\n', { mode: 0o600 });
    const result = await runCli('mta-queue', ['--spool', path.join(temp.dir, 'spool4'), '--web', '127.0.0.1:0', '--web-users', empty]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^mta-queue: --web-users .*empty-users\.txt: no user in it \(add one with: mta-server passwd USER --users .*\)\n$/);
  });
});
