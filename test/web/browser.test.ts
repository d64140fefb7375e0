import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { startCatchAllInbox, type CatchAllInbox } from '../../src/inbox/catch-all-server.js';
import { DaemonProcess, REPO_ROOT, runCli } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { CHROMIUM, CHROMIUM_ARGS, toolAvailable, TOOLS } from '../helpers/external-clients.js';
import { LogCapture } from '../helpers/log-capture.js';
import { eventually } from '../helpers/queue-harness.js';
import type { MxBehaviour } from '../helpers/mx-server.js';

/**
 * The web UI in a real browser (Debian's Chromium through playwright-core, nothing downloaded) against a real
 * `mta-queue --web` process delivering to loopback DNS and MXes: log in, overview, queue, a message with a hostile
 * Subject, "Retry now" until the MX has it, bulk dry run, the local inbox. Screenshots of each page go to
 * test-output/screenshots/; with MTA_UPDATE_DOCS_SCREENSHOT=1 the spool gets a realistic mix first and the
 * overview is also written to docs/web-overview.png.
 */

const UPDATE_DOCS = process.env.MTA_UPDATE_DOCS_SCREENSHOT === '1';
const SHOTS_DIR = path.join(REPO_ROOT, 'test-output', 'screenshots');
const DOCS_SHOT = path.join(REPO_ROOT, 'docs', 'web-overview.png');
const VIEWPORT = { width: 1280, height: 800 };
const USER = 'ops';
const PASSWORD = 'browser-test-password';
const HOSTILE_SUBJECT = '<script>window.__pwned=1</script>Hello';
const HOSTILE_INBOX_SUBJECT = '<img src=x onerror="window.__pwned=2">Welcome aboard';
/** The catch-all inbox listens here, on the MX group's port (mta-queue reaches every MX on --smtp-port). */
const INBOX_HOST = '127.0.0.50';

// MX behaviours, by index in the fixture's group.
const OK = 0;
const GREYLIST = 1;
const BEHAVIOURS: MxBehaviour[] = [
  { name: 'mx.ok.test' },
  // First RCPT of the hostile message's recipient: 451; later ones (after "Retry now") accepted.
  { name: 'mx.greylist.test', rcpt: [{ recipients: ['alice@greylist.test'], times: 1, code: 451, message: 'Greylisted, please try again later' }] },
  // Only for the docs shot: destinations that keep deferring, and one that refuses for good.
  { name: 'mx1.busy.example', rcpt: [{ code: 452, message: 'Mailbox full, try again later' }] },
  { name: 'mx.ratelimit.example', greeting: { code: 421, message: 'Too many connections from your IP, try again later' } },
  { name: 'mx.strict.example', rcpt: [{ recipients: ['nobody@strict.example'], code: 550, message: 'No such user here' }] },
];

function message(subject: string, to: string, from = 'news@shop.example'): string {
  return `From: Shop <${from}>\nTo: <${to}>\nSubject: ${subject}\nDate: ${new Date().toUTCString()}\nMessage-ID: <${Math.random().toString(36).slice(2)}@shop.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nHello from the browser test.\n`;
}

describe('web UI in Chromium', { timeout: 90_000 }, () => {
  let f: DeliveryFixture | undefined;
  let inbox: CatchAllInbox | undefined;
  let daemon: DaemonProcess | undefined;
  let browser: Browser | undefined;

  before(async () => {
    await mkdir(SHOTS_DIR, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await daemon?.stop();
    await inbox?.close();
    await f?.close();
  });

  test('log in, overview, queue, a hostile message shown as text, Retry now until the MX has it, bulk dry run, inbox', async (t) => {
    if (!(await toolAvailable(t, TOOLS.chromium))) return;

    f = await startDeliveryFixture(BEHAVIOURS, (hosts) => ({
      'shop.example': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'mx.ok.test': { a: [hosts[OK]!] },
      'greylist.test': { mx: [{ preference: 10, exchange: 'mx.greylist.test' }] },
      'mx.greylist.test': { a: [hosts[GREYLIST]!] },
      'busy.example': { mx: [{ preference: 10, exchange: 'mx1.busy.example' }] },
      'mx1.busy.example': { a: [hosts[2]!] },
      'ratelimit.example': { mx: [{ preference: 10, exchange: 'mx.ratelimit.example' }] },
      'mx.ratelimit.example': { a: [hosts[3]!] },
      'strict.example': { mx: [{ preference: 10, exchange: 'mx.strict.example' }] },
      'mx.strict.example': { a: [hosts[4]!] },
      'dev.test': { mx: [{ preference: 10, exchange: 'inbox.dev.test' }] },
      'inbox.dev.test': { a: [INBOX_HOST] },
    }));
    const work = path.dirname(f.layout.root);
    const inboxDir = path.join(work, 'inbox');
    inbox = await startCatchAllInbox({ host: INBOX_HOST, port: f.mx.port, dir: inboxDir, maxMessageSize: 1 << 20, maxMessages: 100, hostname: 'inbox.dev.test', logger: new LogCapture().logger });
    const usersFile = path.join(work, 'web-users.txt');
    await writeFile(usersFile, `${USER}:${PASSWORD}\n`, { mode: 0o600 });

    // The spool: the hostile message (deferred by the 451), two for the inbox, and for the docs shot a mix; they
    // arrived minutes apart (the fixture's clock sets arrivedAt), so ages and "oldest" read like a real queue.
    const arrivedMinutesAgo = (minutes: number) => void (f!.clock.time = Date.now() - minutes * 60_000);
    arrivedMinutesAgo(23);
    const hostileId = await f.enqueue('news@shop.example', ['alice@greylist.test'], message(HOSTILE_SUBJECT, 'alice@greylist.test'));
    const inboxIds = [
      await f.enqueue('app@shop.example', ['dev@dev.test'], message('Your password reset link', 'dev@dev.test', 'app@shop.example')),
      await f.enqueue('app@shop.example', ['dev@dev.test'], message(HOSTILE_INBOX_SUBJECT, 'dev@dev.test', 'app@shop.example')),
    ];
    const expectDelivered = [...inboxIds];
    const expectDeferred = [hostileId];
    let heldId: string | null = null;
    if (UPDATE_DOCS) {
      arrivedMinutesAgo(1);
      for (let i = 0; i < 14; i++) expectDelivered.push(await f.enqueue('news@shop.example', [`customer${i}@ok.test`], message(`Your order #${4200 + i} has shipped`, `customer${i}@ok.test`)));
      arrivedMinutesAgo(41);
      for (const to of ['anna@busy.example', 'bert@busy.example']) expectDeferred.push(await f.enqueue('news@shop.example', [to], message('Weekly newsletter', to)));
      arrivedMinutesAgo(9);
      expectDeferred.push(await f.enqueue('news@shop.example', ['carol@ratelimit.example'], message('Weekly newsletter', 'carol@ratelimit.example')));
      await f.enqueue('news@shop.example', ['nobody@strict.example'], message('Weekly newsletter', 'nobody@strict.example'));
      arrivedMinutesAgo(3);
      heldId = await f.enqueue('news@shop.example', ['dora@ok.test', 'emil@ok.test'], message('Draft: spring sale', 'dora@ok.test'));
      const held = await runCli('mta-queue', ['hold', heldId, '--spool', f.layout.root]);
      assert.equal(held.code, 0, held.stderr);
    }

    daemon = DaemonProcess.start('mta-queue', [
      '--spool', f.layout.root, '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s',
      '--retry-schedule', '1h', '--web', '127.0.0.1:0', '--web-users', usersFile, '--inbox-dir', inboxDir,
    ]);
    const base = new URL(String((await daemon.waitForEvent('web-listening')).url)).origin;
    for (const id of expectDeferred) await daemon.waitForLog((line) => line.event === 'deferred' && line.queueId === id);
    for (const id of expectDelivered) await daemon.waitForLog((line) => line.event === 'delivered' && line.queueId === id);
    assert.equal(f.mx.mxes[GREYLIST]!.messages.length, 0, 'the 451 kept the hostile message from the MX');

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    // launch() gives every browser a fresh temporary profile (user-data-dir) and removes it at close().
    const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    const pageErrors: string[] = [];
    page.on('console', (entry) => {
      if (entry.type() === 'error' || entry.type() === 'warning') consoleErrors.push(`${entry.type()} ${page.url()}: ${entry.text()}`);
    });
    page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
    const shot = (name: string) => page.screenshot({ path: path.join(SHOTS_DIR, `${name}.png`), fullPage: true });
    // Runs in the page (tsconfig.test.json has no DOM types): the global a hostile Subject would have set.
    const pwned = () => page.evaluate(() => (globalThis as { __pwned?: unknown }).__pwned);

    // Login: any page sends us to the form, which brings us back.
    await page.goto(`${base}/`);
    assert.equal(new URL(page.url()).pathname, '/login');
    await page.fill('input[name=username]', USER);
    await page.fill('input[name=password]', PASSWORD);
    await shot('login');
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

    // Overview: the counts, the chart drawn by app.js with uPlot from /api/history.
    assert.equal(await page.textContent('.count[data-state="deferred"]'), String(expectDeferred.length));
    assert.equal(await page.textContent('.count[data-state="held"]'), heldId ? '1' : '0');
    await page.waitForSelector('#chart canvas', { timeout: 10_000 });
    assert.equal(await page.getAttribute('#chart', 'data-error'), null, 'the chart loaded');
    assert.match((await page.textContent('#live')) ?? '', /greylist\.test/, 'the deferred destination with its reply');
    if (UPDATE_DOCS) {
      // The history samples the delivery counters every 10 s: wait for the sample with the deliveries, then let
      // the chart (which refreshes every 10 s) be drawn from it.
      await eventually(async () => {
        const history = (await (await page.request.get(`${base}/api/history`)).json()) as { delivered: number[] };
        return history.delivered.some((count) => count > 0);
      }, 'deliveries in /api/history', 15_000);
      await page.reload();
      await page.waitForSelector('#chart canvas');
      await page.waitForTimeout(300);
      await page.screenshot({ path: DOCS_SHOT });
    }
    await shot('overview');

    // Queue: the deferred message's row, linking to its page.
    await Promise.all([page.waitForURL(`${base}/queue`), page.click('nav a[href="/queue"]')]);
    const row = page.locator('table.queue tbody tr', { has: page.locator(`a[href="/messages/${hostileId}"]`) });
    assert.equal(await row.count(), 1);
    assert.equal(await row.locator('.state').textContent(), 'deferred');
    assert.match((await row.locator('td.reply').textContent()) ?? '', /^451 4\.\d\.\d Greylisted/);
    await shot('queue');

    // The message: the hostile Subject is text in the header block, never markup.
    await Promise.all([page.waitForURL(`${base}/messages/${hostileId}`), row.locator(`a[href="/messages/${hostileId}"]`).click()]);
    assert.equal(await page.textContent('#message-state'), 'deferred');
    assert.ok((await page.textContent('pre.headers'))?.includes(`Subject: ${HOSTILE_SUBJECT}`), 'the Subject as text');
    assert.equal(await page.locator('pre.headers script').count(), 0, 'no element made of it');
    assert.equal(await page.locator('main script').count(), 0);
    assert.equal(await pwned(), undefined, 'the Subject never ran');
    await shot('message');

    // Bulk: a dry run counts the deferred messages and changes nothing.
    await page.goto(`${base}/bulk`);
    await page.selectOption('select[name=action]', 'flush');
    await page.selectOption('select[name=state]', 'deferred');
    await Promise.all([page.waitForURL(`${base}/bulk`), page.click('button[name=confirm][value=no]')]);
    assert.equal(await page.textContent('#bulk-count'), String(expectDeferred.length));
    assert.match((await page.textContent('#bulk-preview')) ?? '', /Nothing changed yet/);
    assert.equal(await page.locator(`#bulk-preview a[href="/messages/${hostileId}"]`).count(), 1);
    await shot('bulk-dry-run');

    // Retry now: the MX (accepting now) gets the message, and the page no longer has it.
    await page.goto(`${base}/messages/${hostileId}`);
    assert.equal(await page.textContent('#message-state'), 'deferred', 'the dry run changed nothing');
    await Promise.all([page.waitForURL(`${base}/messages/${hostileId}/flush`), page.click('button:has-text("Retry now")')]);
    assert.match((await page.textContent('.notice')) ?? '', /^Flushed \(was deferred\)\./);
    const [received] = await f.mx.mxes[GREYLIST]!.waitForMessages(1, 15_000);
    assert.deepEqual(received!.to, ['alice@greylist.test']);
    assert.ok(received!.raw.toString().includes(`Subject: ${HOSTILE_SUBJECT}`));
    await daemon.waitForLog((line) => line.event === 'delivered' && line.queueId === hostileId);
    // The self-refresh (every 3 s) says so without a reload.
    await page.waitForSelector('#message-gone', { timeout: 10_000 });
    assert.equal(await page.locator('#message-state').count(), 0);
    await shot('message-delivered');
    const reloaded = await page.goto(`${base}/messages/${hostileId}`);
    assert.equal(reloaded?.status(), 404);
    await page.goto(`${base}/queue`);
    assert.equal(await page.locator(`a[href="/messages/${hostileId}"]`).count(), 0, 'gone from the queue');

    // The local inbox: what mta-queue delivered to the catch-all, subjects as text.
    await page.goto(`${base}/inbox`);
    const subjects = await page.locator('table.inbox tbody td a').allTextContents();
    assert.deepEqual([...subjects].sort(), [HOSTILE_INBOX_SUBJECT, 'Your password reset link'].sort());
    assert.equal(await page.locator('table.inbox img').count(), 0);
    assert.equal(await pwned(), undefined, 'the inbox Subject never ran');
    await shot('inbox');

    assert.deepEqual(pageErrors, [], 'no script errors');
    const csp = consoleErrors.filter((text) => /Content Security Policy|Refused/i.test(text));
    assert.deepEqual(csp, [], `no CSP violations; console: ${JSON.stringify(consoleErrors, null, 2)}`);
    if (consoleErrors.length) t.diagnostic(`console (not CSP): ${consoleErrors.join(' | ')}`);
  });
});
