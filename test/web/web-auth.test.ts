import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { UserStore } from '../../src/config/user-store.js';
import { AuthThrottle, DEFAULT_AUTH_THROTTLE } from '../../src/shared/auth-throttle.js';
import { BASIC_CACHE_MS, MAX_PENDING_CHECKS, parseBasicAuth, SESSION_IDLE_MS, SESSION_MAX_MS, WebAuth } from '../../src/web/web-auth.js';
import { hashPassword } from '../../src/shared/password-hash.js';
import { tempDir } from '../helpers/temp.js';

const H = 3_600_000;

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
  // Counts the scrypt checks (the cost the Basic cache exists to save); `hold` keeps them waiting until released.
  let checks = 0;
  let held: Promise<void> | null = null;
  const verify = users.verify.bind(users);
  users.verify = async (user, password) => {
    checks++;
    await held;
    return verify(user, password);
  };
  const hold = () => {
    let release!: () => void;
    held = new Promise<void>((resolve) => (release = resolve));
    return () => {
      held = null;
      release();
    };
  };
  const clock = { time: 1_800_000_000_000, now: () => clock.time };
  const auth = new WebAuth(users, new AuthThrottle(DEFAULT_AUTH_THROTTLE, clock), clock);
  return { file, users, clock, auth, checks: () => checks, hold };
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
  assert.deepEqual(results.slice(-2), ['wrong', 'wrong']);
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

test('the throttle counts per user and address: guesses never block the right password from elsewhere, nor another user', async () => {
  const { auth } = await setUp('ops:secret\nviewer:other\n');
  const results = [];
  for (let i = 0; i < DEFAULT_AUTH_THROTTLE.maxFailures; i++) results.push(await auth.checkPassword('203.0.113.9', { user: 'ops', password: `guess${i}` }));
  assert.deepEqual(results.at(-1), { kind: 'wrong', blocked: true }, 'the failure that starts the block says so (logged once)');
  assert.deepEqual(await auth.checkPassword('203.0.113.9', { user: 'ops', password: 'secret' }), { kind: 'blocked' }, 'the guesser\'s address stays blocked for ops');
  assert.deepEqual(await auth.checkPassword('192.0.2.1', { user: 'ops', password: 'secret' }), { kind: 'ok', user: 'ops' }, 'ops from its own address');
  assert.deepEqual(await auth.checkPassword('203.0.113.9', { user: 'viewer', password: 'other' }), { kind: 'ok', user: 'viewer' }, 'another user at that address');
  // Made-up names share one budget per address: they block each other, and no real user.
  for (let i = 0; i < DEFAULT_AUTH_THROTTLE.maxFailures; i++) await auth.checkPassword('198.51.100.1', { user: `nobody${i}`, password: 'x' });
  assert.deepEqual(await auth.checkPassword('198.51.100.1', { user: 'someone-else', password: 'x' }), { kind: 'blocked' });
  assert.deepEqual(await auth.checkPassword('198.51.100.1', { user: 'ops', password: 'secret' }), { kind: 'ok', user: 'ops' });
});

test(`at most ${MAX_PENDING_CHECKS} password checks wait: beyond, busy at once, without a check; the right password then passes`, async () => {
  const { auth, checks, hold } = await setUp('ops:secret\n');
  const release = hold();
  const flood = Array.from({ length: MAX_PENDING_CHECKS + 5 }, (_, i) => auth.checkPassword(`10.0.${i >> 8}.${i & 255}`, { user: 'ops', password: `guess${i}` }));
  const extra = await Promise.all(flood.slice(MAX_PENDING_CHECKS));
  assert.deepEqual(extra.map((result) => result.kind), Array(5).fill('busy'));
  assert.equal(checks(), MAX_PENDING_CHECKS, 'the refused ones cost no scrypt');
  release();
  assert.deepEqual(new Set((await Promise.all(flood.slice(0, MAX_PENDING_CHECKS))).map((result) => result.kind)), new Set(['wrong']));
  assert.deepEqual(await auth.checkPassword('192.0.2.1', { user: 'ops', password: 'secret' }), { kind: 'ok', user: 'ops' });
});

test('a session ends 7 days after the login however busy it was', async () => {
  const { clock, auth } = await setUp('ops:secret\n');
  const login = clock.time;
  const session = auth.startSession('ops');
  while (clock.time + H <= login + SESSION_MAX_MS) {
    clock.time += H;
    assert.equal(auth.session(session.id)?.user, 'ops', `${(clock.time - login) / H} h after the login, used every hour`);
  }
  clock.time = login + SESSION_MAX_MS + 1;
  assert.equal(auth.session(session.id), undefined);
});

test('SIGHUP with a changed password ends that user\'s sessions; an unchanged line (plain or hashed) keeps them', async () => {
  const hashed = await hashPassword('other', 10);
  const { file, users, auth } = await setUp(`ops:secret\nviewer:${hashed}\nguest:guest-pass\n`);
  const [ops, viewer, guest] = ['ops', 'viewer', 'guest'].map((user) => auth.startSession(user));
  await writeFile(file, `ops:changed\nviewer:${hashed}\nguest:guest-pass\n`);
  await users.reload();
  auth.usersReloaded();
  assert.equal(auth.session(ops!.id), undefined, 'ops changed its password');
  assert.equal(auth.session(viewer!.id)?.user, 'viewer');
  assert.equal(auth.session(guest!.id)?.user, 'guest', 'a plain password read again is the same password');
  const opsAgain = auth.startSession('ops');
  await writeFile(file, `ops:changed\nviewer:${await hashPassword('other', 10)}\nguest:guest-pass\n`);
  await users.reload();
  auth.usersReloaded();
  assert.equal(auth.session(viewer!.id), undefined, 'a new hash (a new salt) is a new password');
  assert.equal(auth.session(opsAgain.id)?.user, 'ops');
});
