import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { startCatchAllInbox, type CatchAllInbox } from '../../src/inbox/catch-all-server.js';
import { InboxStore } from '../../src/inbox/inbox-store.js';
import { findQueueItem } from '../../src/spool/queue-listing.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { LogCapture } from '../helpers/log-capture.js';
import { tempDir } from '../helpers/temp.js';
import { cookieOf, csrfOf, OTHER_USER, SESSION_COOKIE, startWebUnderTest, WEB_USER, WebClient, writeWebUsers, type WebUnderTest } from '../helpers/web-client.js';

/**
 * The web UI's pages over real HTTP on loopback (startWebServer with mta-queue's real dependencies, a clock the
 * test moves): login, sessions, CSRF, escaping of what strangers wrote, the local test inbox.
 */

const H = 3_600_000;
const EVIL_SUBJECT = '<script>alert(1)</script>';
const EVIL_REPLY = '<img src=x onerror=alert(1)> try later';

describe('web UI pages', () => {
  let f: DeliveryFixture;
  let web: WebUnderTest;
  let usersFile: string;
  let inbox: CatchAllInbox;
  let inboxDir: string;
  let temp: { dir: string; cleanup: () => Promise<void> };
  /** A deferred message whose Subject and last reply (from the loopback MX) are markup. */
  let evilId: string;
  const cleanups: (() => Promise<void>)[] = [];

  const loggedIn = async (who = WEB_USER) => {
    const client = web.client();
    const reply = await client.login(who.user, who.password);
    assert.equal(reply.status, 303, reply.text);
    return client;
  };
  const queued = (subject: string, to = 'someone@ok.test') => f.enqueue('app@shop.example', [to], `From: app@shop.example\nTo: ${to}\nSubject: ${subject}\n\nbody\n`);
  const stateOf = async (id: string) => (await findQueueItem(f.layout, id))?.state;

  before(async () => {
    temp = await tempDir('mta-web-pages-');
    usersFile = await writeWebUsers(temp.dir);
    f = await startDeliveryFixture([{ name: 'mx.evil.test', rcpt: [{ recipients: ['victim@evil.test'], code: 451, message: EVIL_REPLY }] }], (hosts) => ({
      'evil.test': { a: [hosts[0]!] },
    }));
    evilId = await f.enqueue('app@shop.example', ['victim@evil.test'], `From: app@shop.example\nTo: victim@evil.test\nSubject: ${EVIL_SUBJECT}\n\nbody\n`);
    await f.runOnce(); // the real MX answers 451 with markup: deferred, with that reply recorded
    assert.equal(await stateOf(evilId), 'deferred');
    inboxDir = path.join(temp.dir, 'inbox');
    inbox = await startCatchAllInbox({ host: '127.0.0.1', port: 0, dir: inboxDir, maxMessageSize: 1024 * 1024, maxMessages: 100, hostname: 'inbox.test', logger: new LogCapture().logger });
    web = await startWebUnderTest({ layout: f.layout, usersFile, inbox: new InboxStore(inboxDir) });
  });
  after(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    await web?.close();
    await inbox?.close();
    await f?.close();
    await temp?.cleanup();
  });

  test('GET /login is the form, with the security headers', async () => {
    const reply = await web.client().get('/login');
    assert.equal(reply.status, 200);
    assert.match(reply.headers.get('content-type')!, /^text\/html/);
    assert.match(reply.text, /<form method="post" action="\/login"/);
    assert.match(reply.text, /name="username"/);
    assert.match(reply.text, /name="password" type="password"/);
    assert.equal(reply.setCookies.length, 0, 'no cookie before a login');
  });

  test('POST /login with the right password: 303 and an HttpOnly, SameSite=Strict session cookie (not Secure over HTTP)', async () => {
    const client = web.client();
    const reply = await client.postForm('/login', { username: WEB_USER.user, password: WEB_USER.password, next: '/queue?state=held' }, null);
    assert.equal(reply.status, 303);
    assert.equal(reply.headers.get('location'), '/queue?state=held', 'back where the login was asked for');
    const cookie = cookieOf(reply, SESSION_COOKIE);
    assert.ok(cookie, reply.setCookies.join('\n'));
    assert.ok(cookie.value.length >= 32, 'a long random id');
    assert.ok(cookie.attributes.has('httponly'), 'HttpOnly');
    assert.equal(cookie.attributes.get('samesite')?.toLowerCase(), 'strict');
    assert.ok(!cookie.attributes.has('secure'), 'no Secure over plain HTTP (the browser would never send it back)');
    assert.equal(cookie.attributes.get('path'), '/');
    assert.ok(!cookie.attributes.has('max-age') && !cookie.attributes.has('expires'), 'a browser-session cookie: the server ends it after 12 h idle, never after 12 h of use');
    const overview = await client.get('/');
    assert.equal(overview.status, 200);
    assert.match(overview.text, new RegExp(`<span class="user">${WEB_USER.user}</span>`));
    assert.ok(csrfOf(overview.text), 'the page carries a CSRF token');
    assert.equal(web.logs.events('web-login').at(-1)?.user, WEB_USER.user);
    // GET /login with a live session goes to the overview.
    assert.equal((await client.get('/login')).status, 303);
    // A next that leaves this origin is ignored.
    const other = await web.client().postForm('/login', { username: WEB_USER.user, password: WEB_USER.password, next: '//evil.example/' }, null);
    assert.equal(other.status, 303);
    assert.equal(other.headers.get('location'), '/');
  });

  test('POST /login with a wrong password: 401, the form with an error, no cookie', async () => {
    const client = web.client();
    const reply = await client.postForm('/login', { username: WEB_USER.user, password: 'wrong' }, null);
    assert.equal(reply.status, 401);
    assert.match(reply.text, /Wrong user name or password/);
    assert.equal(cookieOf(reply, SESSION_COOKIE), undefined);
    assert.equal(client.jar.has(SESSION_COOKIE), false);
    const unknown = await client.postForm('/login', { username: 'nobody', password: WEB_USER.password }, null);
    assert.equal(unknown.status, 401);
    assert.equal(cookieOf(unknown, SESSION_COOKIE), undefined);
    assert.ok(web.logs.events('web-login-failed').length >= 2);
  });

  test('five failed logins for one user from one address: 429 there even with the right password, for the form and HTTP Basic', async () => {
    // A server of its own: the throttle counts per user and address, and every test here comes from 127.0.0.1.
    const own = await startWebUnderTest({ layout: f.layout, usersFile });
    cleanups.push(() => own.close());
    const client = own.client();
    for (let i = 1; i <= 4; i++) assert.equal((await client.postForm('/login', { username: WEB_USER.user, password: `guess-${i}` }, null)).status, 401, `failure ${i}`);
    const fifth = await client.postForm('/login', { username: WEB_USER.user, password: 'guess-5' }, null);
    assert.equal(fifth.status, 429);
    const right = await client.postForm('/login', { username: WEB_USER.user, password: WEB_USER.password }, null);
    assert.equal(right.status, 429, 'blocked: the right password does not get in either');
    assert.match(right.text, /Too many failed logins/);
    assert.equal(cookieOf(right, SESSION_COOKIE), undefined);
    const basic = await client.get('/api/stats', { basic: WEB_USER });
    assert.equal(basic.status, 401, 'HTTP Basic goes through the same throttle');
    // The block is for a while, not for ever (the clock seam: 16 minutes later).
    own.clock.advance(16 * 60_000);
    const later = await client.postForm('/login', { username: WEB_USER.user, password: WEB_USER.password }, null);
    assert.equal(later.status, 303);
    assert.ok(cookieOf(later, SESSION_COOKIE));
  });

  test('POST /logout with the CSRF token ends the session: the old cookie no longer works', async () => {
    const client = await loggedIn();
    const oldCookie = client.cookieHeader();
    const reply = await client.postForm('/logout', {});
    assert.equal(reply.status, 303);
    assert.equal(reply.headers.get('location'), '/login');
    assert.equal(client.jar.has(SESSION_COOKIE), false, 'the cookie is cleared');
    // Replayed by hand (a copied cookie, or a browser that ignored the clearing): dead on the server.
    const page = await fetch(new URL('/', web.origin), { headers: { cookie: oldCookie }, redirect: 'manual' });
    assert.equal(page.status, 303);
    assert.match(page.headers.get('location')!, /^\/login/);
    const api = await fetch(new URL('/api/stats', web.origin), { headers: { cookie: oldCookie } });
    assert.equal(api.status, 401);
    assert.equal(web.logs.events('web-logout').at(-1)?.user, WEB_USER.user);
  });

  test('a session ends after 12 hours idle, and each request restarts the idle time', async () => {
    const clock = web.clock;
    const client = await loggedIn();
    try {
      clock.advance(11 * H);
      assert.equal((await client.get('/')).status, 200, '11 h idle: still in');
      clock.advance(11 * H);
      assert.equal((await client.get('/queue')).status, 200, '22 h after login but 11 h idle: still in');
      clock.advance(12 * H + 60_000);
      const page = await client.get('/queue');
      assert.equal(page.status, 303, '12 h 1 min idle: out');
      assert.match(page.headers.get('location')!, /^\/login\?next=%2Fqueue/);
      assert.equal((await client.get('/api/stats')).status, 401);
      // And it does not come back when the clock is turned back: the session is gone.
      clock.advance(-(12 * H + 60_000));
      assert.equal((await client.get('/')).status, 303);
    } finally {
      clock.offset = 0;
    }
  });

  test('pages redirect to /login without a session (HTTP Basic is not one); form posts get 401', async () => {
    const client = web.client();
    for (const page of ['/', '/queue?state=held', `/messages/${evilId}`, `/messages/${evilId}/delete`, '/bulk', '/inbox', '/inbox/0000000aa-00000000']) {
      const reply = await client.get(page);
      assert.equal(reply.status, 303, page);
      assert.equal(reply.headers.get('location'), `/login?next=${encodeURIComponent(page)}`, page);
      const basic = await client.get(page, { basic: WEB_USER });
      assert.equal(basic.status, 303, `${page} with HTTP Basic`);
    }
    for (const post of [`/messages/${evilId}/hold`, '/bulk', '/logout', '/inbox/clear']) {
      const reply = await client.postForm(post, { action: 'hold', all: 'yes', confirm: 'yes' }, null);
      assert.equal(reply.status, 401, post);
    }
    assert.equal(await stateOf(evilId), 'deferred', 'nothing changed');
  });

  test('403 for cookie-authenticated form posts without, with a wrong, or with another session\'s CSRF token', async () => {
    const id = await queued('csrf target');
    const victim = await loggedIn();
    const attacker = await loggedIn(OTHER_USER);
    const attackerToken = attacker.csrf!;
    // Cookie tossing: the victim's session, but the attacker's CSRF secret cookie and its matching token.
    const tossed = new WebClient(web.origin);
    tossed.jar.set(SESSION_COOKIE, victim.jar.get(SESSION_COOKIE)!);
    tossed.jar.set('_csrf', attacker.jar.get('_csrf')!);
    const attempts: [string, () => Promise<{ status: number; text: string }>][] = [
      ['no token', () => victim.postForm(`/messages/${id}/hold`, {}, null)],
      ['a wrong token', () => victim.postForm(`/messages/${id}/hold`, {}, 'not-a-token')],
      ["another session's token", () => victim.postForm(`/messages/${id}/hold`, {}, attackerToken)],
      ["another session's token and secret cookie", () => tossed.postForm(`/messages/${id}/hold`, {}, attackerToken)],
    ];
    for (const [what, attempt] of attempts) {
      const reply = await attempt();
      assert.equal(reply.status, 403, what);
      assert.match(reply.text, /CSRF/, what);
    }
    assert.equal(await stateOf(id), 'incoming', 'not held');
    for (const [what, reply] of [
      ['logout without a token', await victim.postForm('/logout', {}, null)],
      ['logout with the other session\'s token', await victim.postForm('/logout', {}, attackerToken)],
      ['bulk without a token', await victim.postForm('/bulk', { action: 'hold', all: 'yes', confirm: 'yes' }, null)],
      ['inbox clear without a token', await victim.postForm('/inbox/clear', {}, null)],
      ['inbox clear with a wrong token', await victim.postForm('/inbox/clear', {}, 'x'.repeat(40))],
    ] as const) assert.equal(reply.status, 403, what);
    assert.equal((await victim.get('/')).status, 200, 'the refused logout left the session alive');
    assert.equal(await stateOf(id), 'incoming');
    // The same post with the session's own token goes through: the 403s were the token's doing.
    const held = await victim.postForm(`/messages/${id}/hold`, {});
    assert.equal(held.status, 200, held.text);
    assert.match(held.text, /Held \(was incoming\)/);
    assert.equal(await stateOf(id), 'held');
    const released = await victim.postForm(`/messages/${id}/release`, {});
    assert.equal(released.status, 200);
    assert.equal(await stateOf(id), 'incoming');
  });

  test('markup in a Subject and in a remote MX reply is escaped on /queue, /messages/ID and /; CSP forbids inline code and framing', async () => {
    const client = await loggedIn();
    const pages = {
      queue: await client.get('/queue'),
      message: await client.get(`/messages/${evilId}`),
      overview: await client.get('/'),
      live: await client.get(`/messages/${evilId}`, { headers: { 'hx-request': 'true' } }),
    };
    for (const [name, reply] of Object.entries(pages)) {
      assert.equal(reply.status, 200, name);
      assert.ok(!reply.text.includes('<script>alert'), `${name}: no raw <script>`);
      assert.ok(!reply.text.includes('<img'), `${name}: no raw <img`);
      assert.ok(!/<script(?![^>]*\bsrc="\/assets\/)/.test(reply.text), `${name}: the only scripts are our assets`);
      const csp = reply.headers.get('content-security-policy')!;
      assert.ok(csp, `${name}: a CSP`);
      assert.ok(!csp.includes('unsafe-inline'), csp);
      assert.ok(!csp.includes('unsafe-eval'), csp);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.match(csp, /script-src 'self'/);
      assert.equal(reply.headers.get('x-frame-options'), 'DENY');
      assert.equal(reply.headers.get('x-content-type-options'), 'nosniff');
    }
    assert.ok(pages.queue.text.includes(`<a href="/messages/${evilId}">`), 'the message is listed');
    assert.ok(pages.queue.text.includes('&lt;img src=x onerror=alert(1)&gt; try later'), 'the last reply, escaped, in the list');
    assert.ok(pages.message.text.includes('Subject: &lt;script&gt;alert(1)&lt;/script&gt;'), 'the Subject, escaped, in the header block');
    assert.ok(pages.message.text.includes('&lt;img src=x onerror=alert(1)&gt; try later'), "the recipient's last reply, escaped");
    assert.ok(pages.overview.text.includes('evil.test'), 'the deferred destination');
    assert.ok(pages.overview.text.includes('&lt;img src=x onerror=alert(1)&gt; try later'), 'its last reply, escaped');
    assert.ok(pages.live.text.startsWith('<div id="live"'), 'htmx gets the live part only');
    // The login page too, and the raw message is a download never rendered.
    const login = await web.client().get('/login');
    assert.match(login.headers.get('content-security-policy')!, /frame-ancestors 'none'/);
    const raw = await client.get(`/api/messages/${evilId}/raw`);
    assert.match(raw.headers.get('content-disposition')!, /^attachment/);
    assert.match(raw.headers.get('content-security-policy')!, /sandbox/);
  });

  test('an htmx request gets the live part of a self-refreshing page, and any other page whole', async () => {
    const client = await loggedIn();
    const live = await client.get('/', { headers: { 'hx-request': 'true' } });
    assert.equal(live.status, 200);
    assert.match(live.text, /^<div id="live" hx-get="\/"/);
    assert.doesNotMatch(live.text, /<html/);
    for (const page of ['/bulk', `/messages/${await queued('htmx whole')}/delete`]) {
      const whole = await client.get(page, { headers: { 'hx-request': 'true' } });
      assert.equal(whole.status, 200, `${page}: ${whole.text.slice(0, 200)}`);
      assert.match(whole.text, /^<!doctype html>/, page);
    }
  });

  test('/messages/ID actions: confirm page, delete form, 404 for an unknown id, 400 for a malformed one', async () => {
    const client = await loggedIn();
    const id = await queued('to be deleted');
    const confirm = await client.get(`/messages/${id}/delete`);
    assert.equal(confirm.status, 200);
    assert.match(confirm.text, new RegExp(`action="/messages/${id}/delete"`));
    const deleted = await client.postForm(`/messages/${id}/delete`, {}, csrfOf(confirm.text));
    assert.equal(deleted.status, 200, deleted.text);
    assert.equal(await stateOf(id), undefined, 'gone from the spool');
    assert.equal((await client.get(`/messages/${id}`)).status, 404);
    assert.equal((await client.get('/messages/not-an-id')).status, 400);
    assert.equal((await client.postForm(`/messages/${evilId}/explode`, {})).status, 404);
    // A refused action (release of a message that is not held) keeps the page, with the reason.
    const refused = await client.postForm(`/messages/${evilId}/release`, {});
    assert.equal(refused.status, 409);
    assert.match(refused.text, /class="notice refused"/);
    assert.equal(await stateOf(evilId), 'deferred');
  });

  test('/queue filters and a bad filter; /bulk previews, then acts only when confirmed', async () => {
    const client = await loggedIn();
    const ids = [await queued('bulk a', 'a@bulk.test'), await queued('bulk b', 'b@bulk.test')];
    const filtered = await client.get('/queue?domain=bulk.test');
    assert.equal(filtered.status, 200);
    for (const id of ids) assert.ok(filtered.text.includes(`/messages/${id}"`), id);
    assert.ok(!filtered.text.includes(`/messages/${evilId}"`), 'other domains are filtered out');
    const bad = await client.get('/queue?older_than=soon');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /older_than/);
    const form = await client.get('/bulk?domain=bulk.test');
    assert.equal(form.status, 200);
    assert.match(form.text, /value="bulk\.test"/);
    const preview = await client.postForm('/bulk', { action: 'hold', domain: 'bulk.test' }, csrfOf(form.text));
    assert.equal(preview.status, 200, preview.text);
    for (const id of ids) assert.ok(preview.text.includes(id), `preview lists ${id}`);
    for (const id of ids) assert.equal(await stateOf(id), 'incoming', 'a preview changes nothing');
    const done = await client.postForm('/bulk', { action: 'hold', domain: 'bulk.test', confirm: 'yes' }, csrfOf(preview.text));
    assert.equal(done.status, 200, done.text);
    for (const id of ids) assert.equal(await stateOf(id), 'held');
    assert.equal(await stateOf(evilId), 'deferred', 'outside the filter: untouched');
    const noAction = await client.postForm('/bulk', { domain: 'bulk.test' }, csrfOf(done.text));
    assert.equal(noAction.status, 400);
    assert.match(noAction.text, /choose an action/);
  });

  test('assets are served from the allow-list only', async () => {
    const client = web.client();
    const app = await client.get('/assets/htmx.min.js');
    assert.equal(app.status, 200);
    assert.match(app.headers.get('content-type')!, /javascript/);
    assert.equal((await client.get('/assets/app.css')).status, 200);
    assert.equal((await client.get('/assets/..%2F..%2Fpackage.json')).status, 404);
    assert.equal((await client.get('/assets/views.js')).status, 404);
  });

  test('/inbox: list, message view, raw download, clear with CSRF', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: inbox.port, secure: false, ignoreTLS: true });
    cleanups.push(async () => transport.close());
    const raw = Buffer.from(`From: News <news@shop.example>\r\nTo: alice@a.example\r\nSubject: <b>Hello</b> ${EVIL_SUBJECT}\r\n\r\ninbox-body-marker\r\n`);
    await transport.sendMail({ envelope: { from: 'bounce@shop.example', to: ['alice@a.example'] }, raw });
    await transport.sendMail({ envelope: { from: 'second@shop.example', to: ['bob@b.example'] }, raw: Buffer.from('Subject: second\r\n\r\ntwo\r\n') });
    const client = await loggedIn();
    const list = await client.get('/inbox');
    assert.equal(list.status, 200);
    assert.match(list.text, /2 message\(s\)/);
    assert.ok(list.text.includes('&lt;b&gt;Hello&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;'), 'the subject, escaped');
    assert.ok(!list.text.includes('<b>Hello'));
    assert.ok(list.text.includes('bob@b.example'));
    const [id] = (await readdir(inboxDir)).filter((name) => name.endsWith('.eml')).sort().map((name) => name.slice(0, -4));
    assert.ok(list.text.includes(`href="/inbox/${id}"`), 'links to the message');
    const view = await client.get(`/inbox/${id}`);
    assert.equal(view.status, 200);
    assert.ok(view.text.includes('alice@a.example'));
    assert.ok(view.text.includes('Subject: &lt;b&gt;Hello&lt;/b&gt;'), 'the header block, escaped');
    assert.ok(!view.text.includes('<script>alert'));
    const download = await client.get(`/inbox/${id}/raw`);
    assert.equal(download.status, 200);
    assert.deepEqual(download.body, raw, 'byte for byte what was sent');
    assert.equal(download.headers.get('content-disposition'), `attachment; filename="${id}.eml"`);
    assert.match(download.headers.get('content-security-policy')!, /sandbox/);
    assert.equal((await client.get('/inbox/0000000aa-00000000')).status, 404);
    assert.equal((await client.get('/inbox/..%2F..%2Fetc%2Fpasswd/raw')).status, 404);
    const refused = await client.postForm('/inbox/clear', {}, null);
    assert.equal(refused.status, 403);
    assert.equal((await readdir(inboxDir)).filter((name) => name.endsWith('.eml')).length, 2, 'nothing deleted without the token');
    const cleared = await client.postForm('/inbox/clear', {}, csrfOf(list.text));
    assert.equal(cleared.status, 200, cleared.text);
    assert.match(cleared.text, /2 message\(s\) deleted/);
    assert.equal((await readdir(inboxDir)).filter((name) => name.endsWith('.eml')).length, 0);
    assert.match((await client.get('/inbox')).text, /Nothing received yet/);
  });
});
