import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { UserStore } from '../../src/config/user-store.js';
import { AuthThrottle, DEFAULT_AUTH_THROTTLE } from '../../src/shared/auth-throttle.js';
import { BASIC_CACHE_MS, parseBasicAuth, SESSION_IDLE_MS, WebAuth } from '../../src/web/web-auth.js';
import { tempDir } from '../helpers/temp.js';

/** WebAuth's own rules, with a clock the test moves and a users file on disk. */

let temp: { dir: string; cleanup: () => Promise<void> };
before(async () => {
  temp = await tempDir('mta-web-auth-');
});
after(() => temp.cleanup());

async function setUp(lines: string) {
  const file = path.join(temp.dir, `users-${Math.random().toString(36).slice(2)}.txt`);
  await writeFile(file, lines, { mode: 0o600 });
  const users = await UserStore.load(file);
  // Counts the scrypt checks: the cost the Basic cache exists to save.
  let checks = 0;
  const verify = users.verify.bind(users);
  users.verify = (user, password) => {
    checks++;
    return verify(user, password);
  };
  const clock = { time: 1_800_000_000_000, now: () => clock.time };
  const auth = new WebAuth(users, new AuthThrottle(DEFAULT_AUTH_THROTTLE, clock), clock);
  return { file, users, clock, auth, checks: () => checks };
}

test('HTTP Basic: credentials that passed are known for a minute (no scrypt), wrong ones never; a reload forgets them', async () => {
  const { file, users, clock, auth, checks } = await setUp('ops:secret\nviewer:other\n');
  assert.deepEqual(await auth.checkBasic('192.0.2.1', { user: 'ops', password: 'secret' }), { kind: 'ok', user: 'ops' });
  assert.deepEqual(await auth.checkBasic('192.0.2.1', { user: 'ops', password: 'secret' }), { kind: 'ok', user: 'ops' });
  assert.equal(checks(), 1, 'the second request is answered from memory');
  assert.equal((await auth.checkBasic('192.0.2.1', { user: 'ops', password: 'secreT' })).kind, 'wrong');
  assert.equal((await auth.checkBasic('192.0.2.1', { user: 'ops', password: 'secreT' })).kind, 'wrong');
  assert.equal(checks(), 3, 'a wrong password is checked every time');
  clock.time += BASIC_CACHE_MS + 1;
  await auth.checkBasic('192.0.2.1', { user: 'ops', password: 'secret' });
  assert.equal(checks(), 4, 'after a minute: checked again');
  // The password changes in the file: after the reload the old one no longer passes.
  await writeFile(file, 'ops:changed\nviewer:other\n');
  await users.reload();
  auth.usersReloaded();
  assert.equal((await auth.checkBasic('192.0.2.1', { user: 'ops', password: 'secret' })).kind, 'wrong');
  assert.equal((await auth.checkBasic('192.0.2.1', { user: 'ops', password: 'changed' })).kind, 'ok');
});

test('HTTP Basic: a blocked address is refused even with credentials that passed before', async () => {
  const { clock, auth } = await setUp('ops:secret\n');
  assert.equal((await auth.checkBasic('198.51.100.7', { user: 'ops', password: 'secret' })).kind, 'ok');
  const results: string[] = [];
  for (let i = 0; i < DEFAULT_AUTH_THROTTLE.maxFailures; i++) results.push((await auth.checkBasic('198.51.100.7', { user: 'ops', password: `guess${i}` })).kind);
  assert.equal(results.at(-1), 'blocked');
  assert.equal((await auth.checkBasic('198.51.100.7', { user: 'ops', password: 'secret' })).kind, 'blocked');
  clock.time += DEFAULT_AUTH_THROTTLE.blockFor + 1;
  assert.equal((await auth.checkBasic('198.51.100.7', { user: 'ops', password: 'secret' })).kind, 'ok');
});

test('sessions: idle expiry after 12 h, each use restarts it; a reload ends the sessions of removed users only', async () => {
  const { file, users, clock, auth } = await setUp('ops:secret\nviewer:other\n');
  const ops = auth.startSession('ops');
  const viewer = auth.startSession('viewer');
  assert.notEqual(ops.id, viewer.id);
  assert.match(ops.id, /^[A-Za-z0-9_-]{43}$/, '256 random bits');
  clock.time += SESSION_IDLE_MS - 1000;
  assert.equal(auth.session(ops.id)?.user, 'ops');
  clock.time += SESSION_IDLE_MS - 1000;
  assert.equal(auth.session(ops.id)?.user, 'ops', 'used meanwhile: still valid');
  assert.equal(auth.session(viewer.id), undefined, 'idle for more than 12 h: gone');
  const again = auth.startSession('viewer');
  await writeFile(file, 'ops:secret\n');
  await users.reload();
  auth.usersReloaded();
  assert.equal(auth.session(again.id), undefined, 'viewer was removed from the file');
  assert.equal(auth.session(ops.id)?.user, 'ops');
  auth.endSession(ops.id);
  assert.equal(auth.session(ops.id), undefined);
  assert.equal(auth.session(undefined), undefined);
});

test('the Basic header: RFC 7617, the password may hold colons; anything else is no credentials', () => {
  const encode = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;
  assert.deepEqual(parseBasicAuth(encode('ops:se:cr:et')), { user: 'ops', password: 'se:cr:et' });
  assert.deepEqual(parseBasicAuth(encode('ops:')), { user: 'ops', password: '' });
  assert.deepEqual(parseBasicAuth(`basic ${Buffer.from('a:b').toString('base64')}`), { user: 'a', password: 'b' });
  for (const header of [undefined, '', 'Bearer abc', encode('no-colon'), 'Basic !!!', 'Basic']) assert.equal(parseBasicAuth(header), undefined, String(header));
});
