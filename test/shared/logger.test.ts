import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { createLogger, openLogFile, type LogFileOptions } from '../../src/shared/logger.js';
import { ConfigError } from '../../src/shared/errors.js';
import { tempDir } from '../helpers/temp.js';

/** The log's files in rotation order (date, then number), with their lines. */
async function logFiles(dir: string, base: string): Promise<{ name: string; lines: string[] }[]> {
  const pattern = new RegExp(`^${base}\\.(?:(\\d{4}-\\d{2}-\\d{2})\\.)?(\\d+)\\.log$`);
  const names = (await readdir(dir))
    .map((name) => ({ name, match: pattern.exec(name) }))
    .filter((entry) => entry.match)
    .sort((a, b) => (a.match![1] ?? '').localeCompare(b.match![1] ?? '') || Number(a.match![2]) - Number(b.match![2]));
  return Promise.all(names.map(async ({ name }) => ({ name, lines: (await readFile(path.join(dir, name), 'utf8')).split('\n') })));
}

/** Logs `count` numbered lines the way a daemon does: a few per event-loop turn, never all at once. */
async function logSequence(options: LogFileOptions, count: number, from = 0) {
  const errors: Error[] = [];
  const file = await openLogFile(options, (error) => errors.push(error));
  const logger = createLogger({ level: 'info', destination: file.stream });
  for (let seq = from; seq < from + count; seq++) {
    logger.info({ event: 'test', seq, padding: 'x'.repeat(seq % 50) }, 'numbered line');
    if (seq % 7 === 6) await nextTurn();
  }
  const current = file.current();
  await file.close();
  logger.info({ event: 'late' }, 'after close: dropped, not thrown');
  assert.deepEqual(errors, []);
  return current;
}

function sequenceOf(lines: string[]): number[] {
  // Every line must be whole JSON: a line split by a rotation would fail to parse here.
  return lines.filter((line) => line !== '').map((line) => (JSON.parse(line) as { seq: number }).seq);
}

describe('log file with rotation', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ dir, cleanup } = await tempDir('mta-logfile-')));
  after(() => cleanup());

  test('rotates by size; lines go on in the next file, none lost or split', async () => {
    const logDir = path.join(dir, 'size');
    await mkdir(logDir);
    const current = await logSequence({ path: path.join(logDir, 'mta-server.log'), maxSize: 2048, daily: false, keep: 1000 }, 1000);
    const files = await logFiles(logDir, 'mta-server');
    assert.ok(files.length >= 2, `rotated: ${files.map((file) => file.name).join(', ')}`);
    assert.equal(path.basename(current), files.at(-1)!.name, 'the newest file is the one being written');
    for (const file of files.slice(0, -1)) assert.equal(file.lines.at(-1), '', `${file.name} ends with a whole line`);
    const seqs = files.flatMap((file) => sequenceOf(file.lines));
    assert.deepEqual(seqs, Array.from({ length: 1000 }, (_, index) => index), 'every line once, in order, across the files');
    const sizes = files.slice(0, -1).map((file) => file.lines.join('\n').length);
    assert.ok(Math.max(...sizes) < 2048 + 8 * 200, `a rotated file stays near the limit: ${sizes.join(',')}`);
  });

  test('keeps --log-keep rotated files besides the current one, also those of an earlier run', async () => {
    const logDir = path.join(dir, 'keep');
    await mkdir(logDir);
    const options = { path: path.join(logDir, 'mta-queue.log'), maxSize: 1024, daily: false, keep: 2 };
    await writeFile(path.join(logDir, 'mta-server.1.log'), 'the other daemon\n');
    await logSequence(options, 300);
    let files = await logFiles(logDir, 'mta-queue');
    assert.equal(files.length, 3, files.map((file) => file.name).join(', '));
    const firstRun = files.flatMap((file) => sequenceOf(file.lines));
    assert.deepEqual(firstRun, Array.from({ length: firstRun.length }, (_, index) => 300 - firstRun.length + index), 'the newest lines are kept');

    // A restart appends to the newest file, numbering goes on, and the old run's files are pruned too.
    const newest = files.at(-1)!.name;
    const current = await logSequence(options, 300, 300);
    files = await logFiles(logDir, 'mta-queue');
    assert.equal(files.length, 3);
    assert.equal(path.basename(current), files.at(-1)!.name);
    const number = (name: string) => Number(/\.(\d+)\.log$/.exec(name)![1]);
    assert.ok(files.every((file) => number(file.name) >= number(newest)), `numbering went on from ${newest}: ${files.map((file) => file.name).join(', ')}`);
    const seqs = files.flatMap((file) => sequenceOf(file.lines));
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, index) => 600 - seqs.length + index));
    assert.equal(await readFile(path.join(logDir, 'mta-server.1.log'), 'utf8'), 'the other daemon\n', 'not our file: untouched');
  });

  test('daily: the date is in the file name', async () => {
    const current = await logSequence({ path: path.join(dir, 'daily.log'), maxSize: null, daily: true, keep: 7 }, 3);
    assert.match(path.basename(current), /^daily\.\d{4}-\d{2}-\d{2}\.1\.log$/);
    assert.deepEqual(sequenceOf((await readFile(current, 'utf8')).split('\n')), [0, 1, 2]);
  });

  test('a directory that does not exist is a ConfigError naming --log-file', async () => {
    await assert.rejects(openLogFile({ path: path.join(dir, 'missing', 'x.log'), maxSize: null, daily: false, keep: 7 }, () => {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /^--log-file .*missing\/x\.log: ENOENT/);
      return true;
    });
  });
});
