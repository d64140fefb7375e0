import assert from 'node:assert/strict';
import { chmod } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DkimKeyring } from '../../src/dkim/keyring.js';
import { newTestKey, writeTestKey, type TestKey } from '../helpers/dkim-keys.js';
import { LogCapture } from '../helpers/log-capture.js';
import { tempDir } from '../helpers/temp.js';

let work: { dir: string; cleanup(): Promise<void> };
let active: TestKey;
let pending: TestKey;
const readable = (logs: LogCapture) => logs.events('file-readable-by-others').map(({ what, file, mode }) => ({ what, file, mode }));

before(async () => {
  work = await tempDir('mta-dkim-modes-');
  active = await newTestKey('modes.example', 'k1', 'ed25519');
  pending = await newTestKey('modes.example', 'k2', 'ed25519');
});
after(() => work.cleanup());

test('DKIM directories and private keys readable by others: file-readable-by-others at each load, once per file, none once fixed', async () => {
  const dir = path.join(work.dir, 'dkim');
  await writeTestKey(dir, active, 'active');
  await writeTestKey(dir, pending, 'pending');
  const domainDir = path.join(dir, 'modes.example');
  const pem = (key: TestKey) => path.join(domainDir, `${key.selector}.pem`);
  const logs = new LogCapture();
  const keyring = new DkimKeyring(dir, logs.logger);

  await keyring.load('start');
  assert.deepEqual(readable(logs), [], 'the 0700 directories and 0600 keys keygen makes are fine');

  await chmod(dir, 0o755);
  await chmod(pem(pending), 0o640);
  await keyring.load('sighup');
  const expected = [
    { what: 'dkim-dir', file: dir, mode: '0755' },
    { what: 'dkim-key', file: pem(pending), mode: '0640' },
  ];
  assert.deepEqual(readable(logs), expected);
  assert.match(String(logs.events('file-readable-by-others')[0]!.msg), /chmod 700 it$/);
  assert.match(String(logs.events('file-readable-by-others')[1]!.msg), /chmod 600 it$/);
  assert.equal(keyring.activeKeys().get('modes.example')?.length, 1, 'the keys still load and sign');

  await keyring.load('changed');
  assert.deepEqual(readable(logs), [...expected, ...expected], 'said again at the next load, not per message');

  await chmod(dir, 0o700);
  await chmod(pem(pending), 0o600);
  await chmod(domainDir, 0o750);
  await keyring.load('sighup');
  assert.deepEqual(readable(logs).slice(4), [{ what: 'dkim-dir', file: domainDir, mode: '0750' }]);
});
