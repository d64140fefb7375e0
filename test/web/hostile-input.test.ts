import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InboxStore } from '../../src/inbox/inbox-store.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { findQueueItem } from '../../src/spool/queue-listing.js';
import { tempDir } from '../helpers/temp.js';
import { startWebUnderTest, WEB_USER, writeWebUsers, type WebUnderTest } from '../helpers/web-client.js';

/**
 * What strangers put in front of the web UI, over real HTTP on loopback: URLs built to hit JavaScript's own
 * properties or to break decoding, sent with and without credentials; bidi controls in what a page shows.
 */

/** Path segments that name Object.prototype's properties. */
const PROTOTYPE_NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];
/** Segments that decode badly, climb, hold a NUL or are too long (fastify refuses the last with 414). */
const HOSTILE_SEGMENTS = [...PROTOTYPE_NAMES, 'prototype', '%E0%A4%A', '..%2F..%2Fpackage.json', '%00', 'a'.repeat(300)];

describe('hostile URLs', () => {
  let f: DeliveryFixture;
  let web: WebUnderTest;
  let temp: { dir: string; cleanup: () => Promise<void> };

  before(async () => {
    temp = await tempDir('mta-web-hostile-');
    f = await startDeliveryFixture([{}], () => ({}));
    web = await startWebUnderTest({ layout: f.layout, usersFile: await writeWebUsers(temp.dir), inbox: new InboxStore(path.join(temp.dir, 'inbox')) });
  });
  after(async () => {
    await web?.close();
    await f?.close();
    await temp?.cleanup();
  });

  /** Error-level lines logged since `from` (a count of raw lines). */
  const errorLines = (from = 0) => web.logs.lines().slice(from).filter((line) => line.level >= 50);

  test('an unknown asset, Object.prototype\'s names included, is a 404 without credentials and logs no error', async () => {
    const client = web.client();
    for (const name of PROTOTYPE_NAMES) {
      const reply = await client.get(`/assets/${name}`);
      assert.equal(reply.status, 404, `/assets/${name}: ${reply.text}`);
      assert.equal(reply.text, '404: not found\n');
    }
    for (const name of HOSTILE_SEGMENTS) {
      const reply = await client.get(`/assets/${name}`);
      assert.ok(reply.status >= 400 && reply.status < 500, `/assets/${name}: ${reply.status}`);
    }
    assert.deepEqual(errorLines(), []);
    assert.equal((await client.get('/assets/app.js')).status, 200, 'a listed asset is still served');
  });

  test('no route turns a hostile path or query into a 500, logged in or not', async () => {
    const logged = web.logs.raw.length;
    const loggedIn = web.client();
    assert.equal((await loggedIn.login(WEB_USER.user, WEB_USER.password)).status, 303);
    const urls = [
      ...HOSTILE_SEGMENTS.flatMap((name) => [`/${name}`, `/messages/${name}`, `/messages/${name}/delete`, `/inbox/${name}`, `/inbox/${name}/raw`, `/api/${name}`, `/api/messages/${name}`, `/api/messages/${name}/raw`]),
      ...['__proto__=x', 'constructor=x', 'state[]=x', 'q=%E0%A4%A', '%E0%A4%A=1', 'next[x]=1', 'limit=__proto__', 'cursor=__proto__'].flatMap((query) => [`/queue?${query}`, `/bulk?${query}`, `/login?${query}`, `/api/messages?${query}`]),
    ];
    const anonymous = web.client();
    for (const url of urls) {
      for (const [who, reply] of [['anonymous', await anonymous.get(url)], ['session', await loggedIn.get(url)], ['basic', await anonymous.get(url, { basic: WEB_USER })]] as const) {
        assert.ok(reply.status < 500, `${who} GET ${url}: ${reply.status} ${reply.text.slice(0, 200)}`);
      }
    }
    for (const url of ['/api/bulk/__proto__', '/api/messages/0000000000000000zzzz/constructor', '/messages/0000000000000000zzzz/toString']) {
      const reply = await loggedIn.postJson(url, {});
      assert.equal(reply.status, 404, `POST ${url}: ${reply.text}`);
    }
    assert.deepEqual(errorLines(logged), [], 'no error-level line (a stack trace per request floods the log)');
  });
});

/** Every bidi control, each with the escape the CLI shows for it. */
const BIDI_CONTROLS = ['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069', '\u200e', '\u200f', '\u061c'];
const escaped = (char: string) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;

describe('bidi controls in a subject, a sender and a remote reply', () => {
  let f: DeliveryFixture;
  let web: WebUnderTest;
  let temp: { dir: string; cleanup: () => Promise<void> };
  let id: string;
  // `invoice` + RLO + `fdp.exe` reads as `invoiceexe.pdf`.
  const subject = `invoice\u202efdp.exe ${BIDI_CONTROLS.join('x')}`;
  const sender = 'billing\u202emoc.evil@shop.example';
  const reply = 'mailbox \u202elluf\u202c try later';

  before(async () => {
    temp = await tempDir('mta-web-bidi-');
    f = await startDeliveryFixture([{ name: 'mx.bidi.test', rcpt: [{ code: 451, message: reply }] }], (hosts) => ({ 'bidi.test': { a: [hosts[0]!] } }));
    id = await f.enqueue(sender, ['victim@bidi.test'], `From: ${sender}\nTo: victim@bidi.test\nSubject: ${subject}\n\nbody\n`);
    await f.runOnce(); // the real MX answers 451 with a bidi override in its text: deferred, the reply recorded
    assert.equal((await findQueueItem(f.layout, id))?.state, 'deferred');
    web = await startWebUnderTest({ layout: f.layout, usersFile: await writeWebUsers(temp.dir) });
  });
  after(async () => {
    await web?.close();
    await f?.close();
    await temp?.cleanup();
  });

  test('pages show them as the CLI\'s escapes, never raw', async () => {
    const client = web.client();
    assert.equal((await client.login(WEB_USER.user, WEB_USER.password)).status, 303);
    const pages = { queue: await client.get('/queue'), message: await client.get(`/messages/${id}`), overview: await client.get('/'), live: await client.get(`/messages/${id}`, { headers: { 'hx-request': 'true' } }) };
    for (const [name, page] of Object.entries(pages)) {
      assert.equal(page.status, 200, name);
      for (const char of BIDI_CONTROLS) assert.ok(!page.text.includes(char), `${name}: raw ${escaped(char)}`);
    }
    const shownReply = 'mailbox \\u202elluf\\u202c try later';
    assert.ok(pages.queue.text.includes('billing\\u202emoc.evil@shop.example'), 'the sender, on /queue');
    assert.ok(pages.queue.text.includes(shownReply), 'the reply, on /queue');
    assert.ok(pages.overview.text.includes(shownReply), 'the reply, on /');
    assert.ok(pages.message.text.includes(`Subject: invoice\\u202efdp.exe ${BIDI_CONTROLS.map(escaped).join('x')}`), 'every control, in the header block');
    for (const page of [pages.message, pages.live]) {
      assert.ok(page.text.includes('billing\\u202emoc.evil@shop.example'), 'the sender');
      assert.ok(page.text.includes(shownReply), 'the reply');
    }
  });
});
