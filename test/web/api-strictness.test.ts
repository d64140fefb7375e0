import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { findQueueItem } from '../../src/spool/queue-listing.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { tempDir } from '../helpers/temp.js';
import { startWebUnderTest, WEB_USER, writeWebUsers, type WebReply, type WebUnderTest } from '../helpers/web-client.js';

/**
 * The API refuses what it does not understand (issue 17): a bulk action says whether it is a dry run, and an
 * unknown body key or query parameter on any /api route is a 400 naming it, with the spool untouched. Real HTTP
 * to startWebServer on loopback, as a script (HTTP Basic) and as a page's session.
 */

describe('API strictness: dry_run required, unknown keys and query parameters refused', () => {
  let f: DeliveryFixture;
  let web: WebUnderTest;
  let temp: { dir: string; cleanup: () => Promise<void> };
  const ids: string[] = [];
  const basic = { basic: WEB_USER };

  /** Every file in the spool, by path: any change an action makes shows here. */
  const spoolFiles = async () => (await readdir(f.layout.root, { recursive: true })).sort();
  const states = () => Promise.all(ids.map(async (id) => (await findQueueItem(f.layout, id))?.state));
  const bulk = (action: string, json: unknown, query = '') => web.client().request(`/api/bulk/${action}${query}`, { method: 'POST', json, ...basic });
  const refused = (reply: WebReply, message: RegExp, what: string) => {
    assert.equal(reply.status, 400, `${what}: ${reply.text}`);
    assert.match(reply.headers.get('content-type') ?? '', /^application\/json/, what);
    assert.match(reply.json().error, message, what);
  };

  before(async () => {
    temp = await tempDir('mta-web-strict-');
    f = await startDeliveryFixture([{}], () => ({}));
    for (let i = 0; i < 4; i++) ids.push(await f.enqueue('app@shop.example', [`r${i}@hold.test`], `Subject: ${i}\n\nbody\n`));
    web = await startWebUnderTest({ layout: f.layout, usersFile: await writeWebUsers(temp.dir) });
  });
  after(async () => {
    await web?.close();
    await f?.close();
    await temp?.cleanup();
  });

  test('the issue\'s typos: dryRun in the body, dry_run in the query, no dry_run at all: 400 naming it, nothing held', async () => {
    const before = await spoolFiles();
    refused(await bulk('hold', { domain: 'hold.test', dryRun: true }), /^unknown key "dryRun" in the body$/, 'dryRun');
    refused(await bulk('hold', { domain: 'hold.test' }, '?dry_run=true'), /"dry_run" is required in the body/, 'dry_run only in the query');
    refused(await bulk('hold', { domain: 'hold.test', dry_run: false }, '?dry_run=true'), /^unknown query parameter "dry_run" in the query string$/, 'dry_run in both');
    refused(await bulk('hold', { domain: 'hold.test' }), /^"dry_run" is required in the body$/, 'no dry_run');
    refused(await bulk('delete', { all: true }), /"dry_run" is required/, 'delete --all without dry_run');
    assert.deepEqual(await states(), ['incoming', 'incoming', 'incoming', 'incoming']);
    assert.deepEqual(await spoolFiles(), before, 'the spool unchanged');
    assert.deepEqual(web.logs.events('held'), []);
  });

  test('values keep the type they were sent with; a body that is not an object, and the unsupported user filter, are 400', async () => {
    const before = await spoolFiles();
    const cases: [unknown, RegExp][] = [
      [{ domain: 'hold.test', dry_run: 'false' }, /^dry_run must be true or false$/],
      [{ domain: 'hold.test', dry_run: 0 }, /^dry_run must be true or false$/],
      [{ all: 'yes', dry_run: true }, /^all must be true or false$/],
      [{ domain: ['hold.test'], dry_run: true }, /^domain must be a string$/],
      [[{ domain: 'hold.test', dry_run: false }], /^the body must be a JSON object$/],
      [{ user: 'alice', dry_run: false }, /^user: filtering by user is not supported yet$/],
      [{ domain: 'hold.test', dry_run: false, ['x'.repeat(5000)]: 1 }, new RegExp(`^unknown key "${'x'.repeat(100)}" in the body$`)],
    ];
    for (const [json, message] of cases) refused(await bulk('hold', json), message, JSON.stringify(json).slice(0, 80));
    refused(await web.client().request('/api/bulk/hold', { method: 'POST', ...basic }), /^the body must be a JSON object$/, 'no body');
    assert.deepEqual(await spoolFiles(), before, 'the spool unchanged');
  });

  test('an unknown query parameter is 400 on every /api route, reads included', async () => {
    const id = ids[0]!;
    const reads = ['/api/stats?total=1', '/api/history?minutes=5', '/api/sites?limit=5', '/api/messages?stat=held', '/api/messages?state=held&dry_run=true', `/api/messages/${id}?verbose=1`, `/api/messages/${id}/raw?download=0`];
    for (const url of reads) refused(await web.client().get(url, basic), /^unknown query parameter "[a-z_]+" in the query string$/, url);
    const before = await spoolFiles();
    refused(await web.client().request(`/api/messages/${id}/hold?dry_run=true`, { method: 'POST', ...basic }), /unknown query parameter "dry_run"/, 'single hold, query');
    refused(await web.client().request(`/api/messages/${id}/hold`, { method: 'POST', json: { force: true }, ...basic }), /^unknown key "force" in the body$/, 'single hold, body');
    assert.deepEqual(await spoolFiles(), before, 'the spool unchanged');
    // The documented parameters still pass.
    const listed = await web.client().get('/api/messages?state=incoming&domain=hold.test&sender=&older_than=&reply=&q=&cursor=&limit=2', basic);
    assert.equal(listed.status, 200, listed.text);
    assert.equal(listed.json().messages.length, 2);
  });

  test('without credentials the answer is 401 whatever the request holds', async () => {
    const client = web.client();
    for (const reply of [await client.request('/api/bulk/hold?x=1', { method: 'POST', json: { dryRun: true } }), await client.get('/api/stats?x=1')]) {
      assert.equal(reply.status, 401, reply.text);
    }
  });

  test('the right request acts: dry_run true counts and changes nothing, false holds; a session may send _csrf in the body', async () => {
    const dry = await bulk('hold', { domain: 'hold.test', dry_run: true });
    assert.equal(dry.status, 200, dry.text);
    assert.deepEqual([dry.json().dry_run, dry.json().would_change], [true, 4]);
    assert.deepEqual(await states(), ['incoming', 'incoming', 'incoming', 'incoming']);
    const session = web.client();
    assert.equal((await session.login(WEB_USER.user, WEB_USER.password)).status, 303);
    const held = await session.postJson('/api/bulk/hold', { domain: 'hold.test', dry_run: false, _csrf: session.csrf }, null);
    assert.equal(held.status, 200, held.text);
    assert.deepEqual([held.json().dry_run, held.json().changed], [false, 4]);
    assert.deepEqual(await states(), ['held', 'held', 'held', 'held']);
  });
});
