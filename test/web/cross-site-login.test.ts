import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { ensureSpool, spoolLayout } from '../../src/spool/layout.js';
import { CHROMIUM, CHROMIUM_ARGS, toolAvailable, TOOLS } from '../helpers/external-clients.js';
import { tempDir } from '../helpers/temp.js';
import { OTHER_USER, SESSION_COOKIE, startWebUnderTest, WEB_USER, writeWebUsers, type WebUnderTest } from '../helpers/web-client.js';

/**
 * Issue 17: a page of another site the operator opens posts login forms to the UI. In Chromium (Debian's, through
 * playwright-core) the attacker's page, served from 127.0.0.2, auto-submits six wrong guesses at the operator's
 * account (in hidden frames, to lock 127.0.0.1 out) and then its author's own credentials at the top (to log the
 * operator's browser in as the attacker). Every one must be refused, and the operator must still log in.
 */

const ATTACKER_HOST = '127.0.0.2';

function attackerPage(loginUrl: string): string {
  const field = (name: string, value: string) => `<input type="hidden" name="${name}" value="${value}">`;
  const guesses = Array.from({ length: 6 }, (_, i) => `<iframe name="f${i}"></iframe><form target="f${i}" method="post" action="${loginUrl}">${field('username', WEB_USER.user)}${field('password', `guess-${i}`)}</form>`).join('\n');
  const own = `<form id="own" method="post" action="${loginUrl}">${field('username', OTHER_USER.user)}${field('password', OTHER_USER.password)}${field('next', '/')}</form>`;
  // The guesses first; the top-level form once they have gone (a navigation would cancel the frames' posts).
  const script = `<script>
    const frames = [...document.querySelectorAll('iframe')];
    let loaded = 0;
    const ours = (frame) => { try { return Boolean(frame.contentWindow.location.href); } catch { return false; } };
    for (const frame of frames) frame.addEventListener('load', () => { if (!ours(frame) && ++loaded === frames.length) document.getElementById('own').submit(); });
    for (const form of document.querySelectorAll('form[target]')) form.submit();
  </script>`;
  return `<!doctype html><title>Cute cats</title>\n${guesses}\n${own}\n${script}`;
}

describe('cross-site login in Chromium', { timeout: 60_000 }, () => {
  let temp: { dir: string; cleanup: () => Promise<void> } | undefined;
  let web: WebUnderTest | undefined;
  let attacker: Server | undefined;
  let browser: Browser | undefined;

  before(async () => {
    temp = await tempDir('mta-web-cross-site-');
    const layout = spoolLayout(path.join(temp.dir, 'spool'));
    await ensureSpool(layout);
    web = await startWebUnderTest({ layout, usersFile: await writeWebUsers(temp.dir) });
  });
  after(async () => {
    await browser?.close();
    if (attacker) await new Promise((resolve) => attacker!.close(resolve));
    await web?.close();
    await temp?.cleanup();
  });

  test('a page on another origin auto-submitting POST /login is refused (403), logs nobody in, and does not lock the operator out', async (t) => {
    if (!(await toolAvailable(t, TOOLS.chromium))) return;
    const base = web!.origin;
    const page = attackerPage(`${base}/login`);
    attacker = createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page));
    await new Promise<void>((resolve) => attacker!.listen(0, ATTACKER_HOST, resolve));
    const attackerUrl = `http://${ATTACKER_HOST}:${(attacker.address() as { port: number }).port}/`;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext();
    const tab = await context.newPage();
    const loginStatuses: number[] = [];
    context.on('response', (response) => {
      if (response.request().method() === 'POST' && response.url() === `${base}/login`) loginStatuses.push(response.status());
    });
    const topLevel = tab.waitForResponse((response) => response.request().method() === 'POST' && response.request().frame() === tab.mainFrame());
    await tab.goto(attackerUrl);
    assert.equal((await topLevel).status(), 403, 'the attacker\'s own credentials, posted at the top');
    await tab.waitForURL(`${base}/login`);
    assert.match((await tab.textContent('body')) ?? '', /cross-site login refused/);
    assert.deepEqual(loginStatuses, Array(7).fill(403), 'six guesses and the attacker\'s login, all refused');
    assert.equal((await context.cookies(base)).find((cookie) => cookie.name === SESSION_COOKIE), undefined, 'no session in the operator\'s browser');
    assert.equal(web!.logs.events('web-login-failed').length, 0, 'no password was checked, nothing counted');
    assert.equal(web!.logs.events('web-login').length, 0);
    assert.equal(web!.logs.events('web-login-cross-site').length, 1, 'logged once');

    // The operator, same browser, same address, right after: logged in as itself.
    await tab.goto(`${base}/login`);
    await tab.fill('input[name=username]', WEB_USER.user);
    await tab.fill('input[name=password]', WEB_USER.password);
    await Promise.all([tab.waitForURL(`${base}/`), tab.click('button[type=submit]')]);
    assert.equal(await tab.textContent('.user'), WEB_USER.user);
    assert.equal(web!.logs.events('web-login').at(-1)?.user, WEB_USER.user);
  });
});
