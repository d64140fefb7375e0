import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  createDkimKey,
  DkimKeyError,
  loadDkimKeys,
  nodeDkimFs,
  removeDkimKeyFiles,
  writeDkimKeyRecords,
  type DkimFs,
  type DkimKeyRecord,
  type SkippedDkimKey,
} from '../../src/dkim/key-store.js';
import { tempDir } from '../helpers/temp.js';

const rsaPem = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
const edPem = () => generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
const record = (selector: string, overrides: Partial<DkimKeyRecord> = {}): DkimKeyRecord => ({
  domain: 'shop.example',
  selector,
  type: 'rsa',
  bits: 2048,
  state: 'pending',
  created: 1_767_225_600_000,
  activated: null,
  retired: null,
  ...overrides,
});
const mode = async (file: string) => (await stat(file)).mode & 0o777;

/** The node file system, recording each call that changes something (and the syncs), in order. */
function recordingFs(calls: string[], base: string): DkimFs {
  const rel = (file: string) => path.relative(base, file).replace(/\.[0-9a-f]{16}\.tmp$/, '.TMP') || '.';
  return {
    ...nodeDkimFs,
    mkdir: async (dir) => (calls.push(`mkdir ${rel(dir)}`), nodeDkimFs.mkdir(dir)),
    create: async (file) => {
      const handle = await nodeDkimFs.create(file);
      return {
        writeFile: async (data: Parameters<typeof handle.writeFile>[0]) => (calls.push(`write ${rel(file)}`), handle.writeFile(data)),
        sync: async () => (calls.push(`fsync ${rel(file)}`), handle.sync()),
        close: () => handle.close(),
      };
    },
    link: async (from, to) => (calls.push(`link ${rel(from)} ${rel(to)}`), nodeDkimFs.link(from, to)),
    rename: async (from, to) => (calls.push(`rename ${rel(from)} ${rel(to)}`), nodeDkimFs.rename(from, to)),
    unlink: async (file) => (calls.push(`unlink ${rel(file)}`), nodeDkimFs.unlink(file)),
    syncDirectory: async (dir) => (calls.push(`fsync-dir ${rel(dir)}`), nodeDkimFs.syncDirectory(dir)),
  };
}

describe('the DKIM key store', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let dir: string;
  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir('mta-dkim-'));
    dir = path.join(root, 'dkim');
  });
  afterEach(() => cleanup());

  test('a missing directory holds no keys', async () => {
    assert.deepEqual(await loadDkimKeys(path.join(root, 'nope')), []);
  });

  test('a new key: directories 0700, files 0600, the private key parsed once on load', async () => {
    await createDkimKey(dir, record('s1'), rsaPem());
    await createDkimKey(dir, record('ed1', { type: 'ed25519', bits: null }), edPem());
    assert.equal(await mode(dir), 0o700);
    assert.equal(await mode(path.join(dir, 'shop.example')), 0o700);
    for (const file of ['s1.pem', 's1.json', 'ed1.pem', 'ed1.json']) assert.equal(await mode(path.join(dir, 'shop.example', file)), 0o600, file);
    assert.deepEqual((await readdir(path.join(dir, 'shop.example'))).sort(), ['ed1.json', 'ed1.pem', 's1.json', 's1.pem'], 'no temp file left');
    const keys = await loadDkimKeys(dir);
    assert.deepEqual(
      keys.map((key) => [key.selector, key.type, key.privateKey.asymmetricKeyType]),
      [
        ['ed1', 'ed25519', 'ed25519'],
        ['s1', 'rsa', 'rsa'],
      ],
    );
    assert.deepEqual(JSON.parse(await readFile(path.join(dir, 'shop.example', 's1.json'), 'utf8')), record('s1'));
  });

  test('an existing selector is never replaced, whichever of its files exists', async () => {
    const pem = rsaPem();
    await createDkimKey(dir, record('s1'), pem);
    await assert.rejects(createDkimKey(dir, record('s1', { state: 'active' }), rsaPem()), (error: DkimKeyError) => error.code === 'EDKIMEXISTS');
    assert.equal(await readFile(path.join(dir, 'shop.example', 's1.pem'), 'utf8'), pem);
    assert.equal(JSON.parse(await readFile(path.join(dir, 'shop.example', 's1.json'), 'utf8')).state, 'pending');
    // A record without its PEM (say, copied by hand): the new PEM is not left behind either.
    await writeFile(path.join(dir, 'shop.example', 's2.json'), JSON.stringify(record('s2')), { mode: 0o600 });
    await assert.rejects(createDkimKey(dir, record('s2'), rsaPem()), (error: DkimKeyError) => error.code === 'EDKIMEXISTS');
    assert.deepEqual((await readdir(path.join(dir, 'shop.example'))).sort(), ['s1.json', 's1.pem', 's2.json']);
  });

  test('keys that do not load are skipped and reported; the others load', async () => {
    await createDkimKey(dir, record('good'), rsaPem());
    const domainDir = path.join(dir, 'shop.example');
    const put = (name: string, data: string) => writeFile(path.join(domainDir, name), data, { mode: 0o600 });
    await put('badjson.json', '{"domain":');
    await put('badjson.pem', rsaPem());
    await put('nopem.json', JSON.stringify(record('nopem')));
    await put('badpem.json', JSON.stringify(record('badpem')));
    await put('badpem.pem', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    await put('wrongtype.json', JSON.stringify(record('wrongtype')));
    await put('wrongtype.pem', edPem());
    await put('wrongname.json', JSON.stringify(record('elsewhere')));
    await put('wrongname.pem', rsaPem());
    await put('badstate.json', JSON.stringify(record('badstate', { state: 'enabled' as 'active' })));
    await put('badstate.pem', rsaPem());
    // Not keys at all: a temp file of ours, a note, a directory that is no domain.
    await put('.s9.json.123.abcd.tmp', '{');
    await put('README', 'notes');
    await mkdir(path.join(dir, '..hidden'));
    const skipped: SkippedDkimKey[] = [];
    const keys = await loadDkimKeys(dir, (entry) => skipped.push(entry));
    assert.deepEqual(
      keys.map((key) => key.selector),
      ['good'],
    );
    const reasons = Object.fromEntries(skipped.map((entry) => [path.basename(entry.file), entry.reason]));
    assert.deepEqual(Object.keys(reasons).sort(), ['badjson.json', 'badpem.pem', 'badstate.json', 'nopem.pem', 'wrongname.json', 'wrongtype.pem']);
    assert.match(reasons['badjson.json']!, /not JSON/);
    assert.match(reasons['nopem.pem']!, /missing/);
    assert.match(reasons['badpem.pem']!, /does not parse/);
    assert.match(reasons['wrongtype.pem']!, /ed25519, the record says rsa/);
    assert.match(reasons['wrongname.json']!, /file name says wrongname/);
    assert.match(reasons['badstate.json']!, /"state"/);
  });

  test('writes are atomic: temp file, fsync, link or rename, fsync of the directory', async () => {
    const calls: string[] = [];
    const fs = recordingFs(calls, dir);
    await createDkimKey(dir, record('s1'), rsaPem(), fs);
    const TMP = (name: string) => `shop.example/.${name}.TMP`;
    assert.deepEqual(calls, [
      'mkdir .',
      'mkdir shop.example',
      `write ${TMP('s1.pem')}`,
      `fsync ${TMP('s1.pem')}`,
      `link ${TMP('s1.pem')} shop.example/s1.pem`,
      `unlink ${TMP('s1.pem')}`,
      `write ${TMP('s1.json')}`,
      `fsync ${TMP('s1.json')}`,
      `link ${TMP('s1.json')} shop.example/s1.json`,
      `unlink ${TMP('s1.json')}`,
      'fsync-dir shop.example',
      'fsync-dir .',
    ]);
    calls.length = 0;
    await writeDkimKeyRecords(dir, [record('s1', { state: 'active', activated: 2 })], fs);
    assert.deepEqual(calls, [`write ${TMP('s1.json')}`, `fsync ${TMP('s1.json')}`, `rename ${TMP('s1.json')} shop.example/s1.json`, 'fsync-dir shop.example']);
    assert.equal((await loadDkimKeys(dir))[0]!.state, 'active');
    calls.length = 0;
    await removeDkimKeyFiles(dir, 'shop.example', 's1', fs);
    assert.deepEqual(calls, ['unlink shop.example/s1.json', 'unlink shop.example/s1.pem', 'fsync-dir shop.example']);
    assert.deepEqual(await loadDkimKeys(dir), []);
  });

  test('a record write that fails leaves the old record whole and no temp file', async () => {
    await createDkimKey(dir, record('s1'), rsaPem());
    const failing: DkimFs = { ...nodeDkimFs, rename: async () => Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' })) };
    await assert.rejects(writeDkimKeyRecords(dir, [record('s1', { state: 'active', activated: 2 })], failing), /no space/);
    assert.equal((await loadDkimKeys(dir))[0]!.state, 'pending');
    assert.deepEqual((await readdir(path.join(dir, 'shop.example'))).sort(), ['s1.json', 's1.pem']);
  });

  test('a name that is not DNS syntax never becomes a path', async () => {
    await assert.rejects(createDkimKey(dir, record('../../evil'), rsaPem()), /not a DKIM domain and selector/);
    await assert.rejects(createDkimKey(dir, record('s1', { domain: '../x' }), rsaPem()), /not a DKIM domain and selector/);
    await assert.rejects(removeDkimKeyFiles(dir, 'shop.example', '../s1'), /not a DKIM domain and selector/);
  });
});
