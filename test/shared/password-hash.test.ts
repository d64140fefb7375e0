import assert from 'node:assert/strict';
import { chown, writeFile, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { parseUsers, setUserSecret } from '../../src/config/users-file.js';
import { hashPassword, parseCredential, verifyPassword } from '../../src/shared/password-hash.js';
import { ConfigError } from '../../src/shared/errors.js';
import { tempDir } from '../helpers/temp.js';

test('scrypt hashes verify the right password only; plain credentials still work', async () => {
  const hash = await hashPassword('s3cret:with:colons', 10);
  assert.match(hash, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  const credential = parseCredential(hash)!;
  assert.equal(await verifyPassword(credential, 's3cret:with:colons'), true);
  assert.equal(await verifyPassword(credential, 's3cret'), false);
  assert.notEqual(await hashPassword('same', 10), await hashPassword('same', 10), 'salted');
  assert.equal(await verifyPassword(parseCredential('plain')!, 'plain'), true);
  assert.equal(await verifyPassword(parseCredential('plain')!, 'plai'), false);
});

test('users file: comments, blank lines, colons in passwords; a malformed line names its line number', () => {
  const users = parseUsers('# c\n\nalice:pa:ss\nbob:$scrypt$ln=10,r=8,p=1$c2FsdA==$aGFzaA==\n', 'f');
  assert.deepEqual([...users.keys()], ['alice', 'bob']);
  assert.deepEqual(users.get('alice'), { kind: 'plain', password: 'pa:ss' });
  assert.equal(users.get('bob')!.kind, 'scrypt');
  assert.throws(() => parseUsers('alice:x\nnocolon\n', 'f'), (error: unknown) => error instanceof ConfigError && /line 2/.test(error.message));
  assert.throws(() => parseUsers('carol:$scrypt$garbage\n', 'f'), ConfigError);
});

test('setUserSecret replaces one line, keeps the others and comments, and keeps the file private', async () => {
  const { dir, cleanup } = await tempDir();
  const file = path.join(dir, 'users.txt');
  await writeFile(file, '# operators\nalice:old\n\nbob:keep\n', { mode: 0o600 });
  assert.equal(await setUserSecret(file, 'alice', '$scrypt$new'), 'replaced');
  assert.equal(await setUserSecret(file, 'carol', 'x'), 'added');
  assert.equal(await readFile(file, 'utf8'), '# operators\nalice:$scrypt$new\n\nbob:keep\ncarol:x\n');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  await assert.rejects(setUserSecret(file, 'bad name', 'x'), ConfigError);
  await cleanup();
});

test('setUserSecret run by root keeps the file owned by the service user', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('changing owners needs root');
  const { dir, cleanup } = await tempDir();
  const file = path.join(dir, 'users.txt');
  await writeFile(file, 'alice:old\n', { mode: 0o600 });
  await chown(file, 65534, 65534);
  await setUserSecret(file, 'alice', 'new');
  const info = await stat(file);
  assert.deepEqual([info.uid, info.gid, info.mode & 0o777], [65534, 65534, 0o600]);
  await cleanup();
});
