import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseNetworks } from '../../src/config/units.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { MAX_PENDING_CHECKS } from '../../src/web/web-auth.js';
import { REFUSAL_LOG_INTERVAL_MS } from '../../src/web/web-guards.js';
import type { WebOptions } from '../../src/web/web-server.js';
import { eventually } from '../helpers/queue-harness.js';
import { tempDir } from '../helpers/temp.js';
import { OTHER_USER, SESSION_COOKIE, startWebUnderTest, WEB_USER, writeWebUsers, type WebUnderTest } from '../helpers/web-client.js';

/**
 * What the web UI checks before any route, over real HTTP on loopback: the Host it answers (DNS rebinding), the
 * client behind a trusted proxy, cross-site logins, the throttle's and the password checks' bounds, and the cap on
 * connections. Each test has a server of its own: the throttle and the rate-limited log lines are per server.
 */

/** A request with the Host and headers we choose (fetch would set Host itself). */
function rawRequest(port: number, options: { path?: string; method?: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: options.path ?? '/login', method: options.method ?? 'GET', headers: options.headers, setHost: false, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const loginForm = (user: string, password: string) => new URLSearchParams({ username: user, password }).toString();

describe('web UI guards', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  let layout: SpoolLayout;
  let usersFile: string;
  const servers: WebUnderTest[] = [];
  const start = async (web: Partial<WebOptions> = {}) => {
    const server = await startWebUnderTest({ layout, usersFile, web });
    servers.push(server);
    return server;
  };
  /** POST /login as a browser or proxy would send it: the headers say where from. */
  const postLogin = (web: WebUnderTest, user: string, password: string, headers: Record<string, string> = {}) =>
    rawRequest(web.server.port, { method: 'POST', headers: { host: `127.0.0.1:${web.server.port}`, 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: loginForm(user, password) });

  before(async () => {
    temp = await tempDir('mta-web-guards-');
    layout = spoolLayout(path.join(temp.dir, 'spool'));
    await ensureSpool(layout);
    usersFile = await writeWebUsers(temp.dir);
  });
  after(async () => {
    for (const server of servers) await server.close();
    await temp.cleanup();
  });

  test('Host: the names of --web-hostnames with any port are answered; another name gets 421, none 400; logged once a minute', async () => {
    const web = await start({ hostnames: ['127.0.0.1', 'localhost', 'relay.example', '::1'] });
    const port = web.server.port;
    for (const host of [`127.0.0.1:${port}`, `LOCALHOST:${port}`, 'relay.example.', `relay.example:8443`, `[::1]:${port}`]) {
      assert.equal((await rawRequest(port, { headers: { host } })).status, 200, host);
    }
    const rebound = await rawRequest(port, { headers: { host: `attacker.example:${port}` } });
    assert.equal(rebound.status, 421);
    assert.match(rebound.text, /^421: this server does not answer for that host name\n$/);
    const api = await rawRequest(port, { path: '/api/stats', headers: { host: 'attacker.example', authorization: `Basic ${Buffer.from(`${WEB_USER.user}:${WEB_USER.password}`).toString('base64')}` } });
    assert.deepEqual([api.status, JSON.parse(api.text)], [421, { error: 'this server does not answer for that host name' }], 'refused before any credentials are looked at');
    for (const host of ['relay.example.attacker.example', '127.0.0.1.attacker.example', `127.0.0.2:${port}`, `x${'a'.repeat(5000)}`]) {
      assert.equal((await rawRequest(port, { headers: { host } })).status, 421, host.slice(0, 40));
    }
    // HTTP/1.0 may leave Host out; Node's parser refuses that in HTTP/1.1 before we see it.
    const socket = net.connect(port, '127.0.0.1');
    socket.end('GET /login HTTP/1.0\r\n\r\n');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('close', () => resolve(text));
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    const refusals = web.logs.events('web-host-refused');
    assert.equal(refusals.length, 1, 'seven refusals, one line');
    assert.deepEqual([refusals[0]!.host, refusals[0]!.client], [`attacker.example:${port}`, '127.0.0.1']);
    web.clock.advance(REFUSAL_LOG_INTERVAL_MS);
    await rawRequest(port, { headers: { host: 'attacker.example' } });
    assert.equal(web.logs.events('web-host-refused').at(-1)!.unlogged, 6, 'the next line counts those not logged');
  });

  test('a login from a page of another site is refused (403) before the password check: no session, no lockout', async () => {
    const web = await start();
    const elsewhere: Record<string, string>[] = [{ origin: 'http://127.0.0.2:8000' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site', origin: `http://127.0.0.1:${web.server.port + 1}` }];
    for (const headers of elsewhere) {
      const reply = await postLogin(web, OTHER_USER.user, OTHER_USER.password, headers);
      assert.equal(reply.status, 403, JSON.stringify(headers));
      assert.equal(reply.headers['set-cookie'], undefined, 'the attacker\'s account is not logged in');
    }
    for (let i = 0; i < 10; i++) assert.equal((await postLogin(web, WEB_USER.user, `guess-${i}`, { origin: 'http://attacker.example' })).status, 403);
    assert.equal(web.logs.events('web-login-failed').length, 0, 'no password was checked');
    assert.equal(web.logs.events('web-login-cross-site').length, 1, 'fourteen refusals, one line');
    // What Chromium sends from our login page: the pages' Referrer-Policy no-referrer makes its Origin null.
    const own = await postLogin(web, WEB_USER.user, WEB_USER.password, { origin: 'null', 'sec-fetch-site': 'same-origin' });
    assert.equal(own.status, 303, 'the operator logs in from the login page');
    const script = await postLogin(web, WEB_USER.user, WEB_USER.password);
    assert.equal(script.status, 303, 'a script sends neither header');
  });

  test('--web-trusted-proxies: behind the proxy, X-Forwarded-For is the client, for the throttle and the logs; from anyone else it is ignored', async () => {
    const web = await start({ trustedProxies: parseNetworks('127.0.0.1/32', '--web-trusted-proxies') });
    const via = (client: string) => ({ 'x-forwarded-for': `198.51.100.77, ${client}` });
    for (let i = 1; i <= 4; i++) assert.equal((await postLogin(web, WEB_USER.user, `guess-${i}`, via('203.0.113.5'))).status, 401);
    assert.equal((await postLogin(web, WEB_USER.user, 'guess-5', via('203.0.113.5'))).status, 429);
    assert.equal((await postLogin(web, WEB_USER.user, WEB_USER.password, via('203.0.113.5'))).status, 429, 'the guesser stays blocked');
    const operator = await postLogin(web, WEB_USER.user, WEB_USER.password, via('203.0.113.6'));
    assert.equal(operator.status, 303, 'the same user through the same proxy from another client');
    assert.deepEqual(new Set(web.logs.events('web-login-failed').map((line) => line.client)), new Set(['203.0.113.5']));
    assert.equal(web.logs.events('web-login').at(-1)!.client, '203.0.113.6');

    const direct = await start();
    await postLogin(direct, WEB_USER.user, 'wrong', via('203.0.113.5'));
    assert.equal(direct.logs.events('web-login-failed').at(-1)!.client, '127.0.0.1', 'no trusted proxy: the peer is the client');
  });

  test('a blocked user and address: one line when the block starts, none for the refusals after it', async () => {
    const web = await start();
    for (let i = 1; i <= 5; i++) await postLogin(web, WEB_USER.user, `guess-${i}`);
    for (let i = 0; i < 20; i++) assert.equal((await postLogin(web, WEB_USER.user, WEB_USER.password)).status, 429);
    for (let i = 0; i < 20; i++) assert.equal((await rawRequest(web.server.port, { path: '/api/stats', headers: { host: `127.0.0.1:${web.server.port}`, authorization: `Basic ${Buffer.from(`${WEB_USER.user}:${WEB_USER.password}`).toString('base64')}` } })).status, 401);
    assert.equal(web.logs.events('web-login-failed').length, 5, 'one per password checked');
    const blocked = web.logs.events('web-login-blocked');
    assert.equal(blocked.length, 1);
    assert.deepEqual([blocked[0]!.client, blocked[0]!.user, blocked[0]!.level], ['127.0.0.1', WEB_USER.user, 40]);
    assert.equal(web.logs.events('web-auth-failed').length, 0, 'Basic refusals while blocked log nothing either');
  });

  test(`a flood of logins from many addresses: beyond ${MAX_PENDING_CHECKS} waiting checks, 429 at once; the right password gets in afterwards`, async () => {
    const web = await start({ trustedProxies: parseNetworks('127.0.0.1', '--web-trusted-proxies') });
    const flood = await Promise.all(Array.from({ length: MAX_PENDING_CHECKS * 3 }, (_, i) => postLogin(web, WEB_USER.user, `guess-${i}`, { 'x-forwarded-for': `10.1.${i >> 8}.${i & 255}` })));
    const busy = flood.filter((reply) => reply.status === 429);
    assert.ok(busy.length > 0, `statuses: ${flood.map((reply) => reply.status).join(' ')}`);
    assert.ok(busy.every((reply) => reply.headers['retry-after'] === '5' && /Too many logins at once/.test(reply.text)));
    assert.ok(flood.filter((reply) => reply.status === 401).length >= MAX_PENDING_CHECKS, 'the first ones were checked');
    assert.equal(web.logs.events('web-login-busy').length, 1, 'logged once a minute');
    const operator = await postLogin(web, WEB_USER.user, WEB_USER.password, { 'x-forwarded-for': '192.0.2.10' });
    assert.equal(operator.status, 303);
    assert.match(String(operator.headers['set-cookie']), new RegExp(`^${SESSION_COOKIE}=`));
  });

  test('connections: beyond --web-max-connections new ones are closed at once; idle ones close after --web-idle-timeout', async () => {
    const web = await start({ maxConnections: 5, idleTimeout: 2000 });
    const sockets = await Promise.all(Array.from({ length: 8 }, () => new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect(web.server.port, '127.0.0.1', () => resolve(socket)).on('error', reject);
    })));
    const closed = new Set<net.Socket>();
    for (const socket of sockets) socket.on('close', () => closed.add(socket)).on('error', () => {});
    await eventually(() => closed.size >= 3, 'three connections closed by the server');
    assert.equal(closed.size, 3, 'the five within the cap stay open');
    assert.deepEqual(sockets.slice(0, 5).map((socket) => closed.has(socket)), [false, false, false, false, false], 'the first five are the ones kept');
    assert.equal(web.logs.events('web-connections-full').length, 1, 'three closed, one line');
    assert.equal(web.logs.events('web-connections-full')[0]!.max, 5);
    // Idle: nothing sent, so the server closes them too, and the UI answers again.
    await eventually(() => closed.size === 8, 'idle connections closed', 15_000);
    assert.equal((await rawRequest(web.server.port, { headers: { host: `127.0.0.1:${web.server.port}` } })).status, 200);
  });
});
