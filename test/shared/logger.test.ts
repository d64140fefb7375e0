import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rename, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { createLogger, openLogFile, type LogFile, type LogFileOptions } from '../../src/shared/logger.js';
import { ConfigError } from '../../src/shared/errors.js';
import type { Clock } from '../../src/shared/clock.js';
import { tempDir } from '../helpers/temp.js';

/** Logs numbered lines the way a daemon does: a few per event-loop turn, never all at once. */
async function logLines(file: LogFile, from: number, count: number): Promise<void> {
  const logger = createLogger({ level: 'info', destination: file.stream });
  for (let seq = from; seq < from + count; seq++) {
    logger.info({ event: 'test', seq, padding: 'x'.repeat(seq % 50) }, 'numbered line');
    if (seq % 7 === 6) await nextTurn();
  }
}

/** Opens, logs `count` lines from `from`, closes; a line after close is dropped, not thrown. */
async function logSequence(options: LogFileOptions, count: number, from = 0, clock?: Clock): Promise<void> {
  const errors: Error[] = [];
  const file = await openLogFile(options, (error) => errors.push(error), clock);
  await logLines(file, from, count);
  await file.close();
  createLogger({ level: 'info', destination: file.stream }).info({ event: 'late' }, 'after close');
  assert.deepEqual(errors, []);
}

/** The seq numbers of a file's lines; every line must be whole JSON (a line split by a rotation fails here). */
async function seqsOf(file: string): Promise<number[]> {
  const text = await readFile(file, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), `${path.basename(file)} ends with a whole line`);
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { seq: number }).seq);
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, index) => from + index);
const at = (...parts: [number, number, number, number?, number?]) => new Date(parts[0], parts[1] - 1, parts[2], parts[3] ?? 0, parts[4] ?? 0).getTime();

describe('log file with rotation', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ dir, cleanup } = await tempDir('mta-logfile-')));
  after(() => cleanup());
  const subdir = async (name: string) => {
    const logDir = path.join(dir, name);
    await mkdir(logDir);
    return logDir;
  };

  test('size: PATH is always the file written, the newest lines; PATH.1 the older ones, PATH.2 older still; none lost or split', async () => {
    const logDir = await subdir('size');
    const file = path.join(logDir, 'mta-server.log');
    await logSequence({ path: file, maxSize: 2048, daily: false, keep: 1000 }, 1000);
    const names = await readdir(logDir);
    assert.ok(names.includes('mta-server.log'), `the named file exists: ${names.join(', ')}`);
    const rotated = names.filter((name) => name !== 'mta-server.log').map((name) => Number(/^mta-server\.log\.(\d+)$/.exec(name)?.[1]));
    assert.ok(rotated.length >= 2 && rotated.every(Number.isInteger), `rotated as PATH.N only: ${names.join(', ')}`);
    const oldestFirst = [...rotated.sort((a, b) => b - a).map((n) => `${file}.${n}`), file];
    assert.deepEqual(rotated, range(1, rotated.length + 1).reverse(), 'numbered 1…N without gaps');
    const seqs = (await Promise.all(oldestFirst.map(seqsOf))).flat();
    assert.deepEqual(seqs, range(0, 1000), 'PATH.N … PATH.1, PATH: every line once, in order');
    assert.equal((await seqsOf(file)).at(-1), 999, 'the newest line is in PATH');
    for (const name of oldestFirst.slice(0, -1)) assert.ok((await readFile(name)).length <= 2048, `${path.basename(name)} stays within --log-max-size`);
  });

  test('--log-keep: rotated files beyond it are deleted, also those of an earlier run; a restart appends to PATH', async () => {
    const logDir = await subdir('keep');
    const file = path.join(logDir, 'mta-queue.log');
    const options = { path: file, maxSize: 1024, daily: false, keep: 2 };
    await writeFile(path.join(logDir, 'mta-server.log.1'), 'the other daemon\n');
    await writeFile(path.join(logDir, 'mta-queue.1.log'), 'pino-roll naming of an older release\n');
    await writeFile(`${file}.9`, 'beyond --log-keep from an earlier run\n');
    await logSequence(options, 300);
    assert.deepEqual((await readdir(logDir)).sort(), ['mta-queue.1.log', 'mta-queue.log', 'mta-queue.log.1', 'mta-queue.log.2', 'mta-server.log.1']);
    const kept = [...(await seqsOf(`${file}.2`)), ...(await seqsOf(`${file}.1`)), ...(await seqsOf(file))];
    assert.deepEqual(kept, range(300 - kept.length, 300), 'the newest lines are kept');

    const tail = await seqsOf(file);
    await logSequence({ ...options, maxSize: 1024 * 1024 }, 5, 300);
    assert.deepEqual(await seqsOf(file), [...tail, ...range(300, 305)], 'a restart goes on in PATH');
    assert.equal(await readFile(path.join(logDir, 'mta-server.log.1'), 'utf8'), 'the other daemon\n', 'not our file: untouched');
  });

  test('daily: at the first line after local midnight PATH becomes PATH.<day of its lines>', async () => {
    const logDir = await subdir('daily');
    const file = path.join(logDir, 'daily.log');
    const clock = { time: at(2025, 1, 31, 23, 59), now: () => clock.time };
    const errors: Error[] = [];
    const log = await openLogFile({ path: file, maxSize: null, daily: true, keep: 7 }, (error) => errors.push(error), clock);
    await logLines(log, 0, 3);
    clock.time = at(2025, 2, 1, 0, 0) + 1000;
    await logLines(log, 3, 2);
    clock.time = at(2025, 2, 2, 8, 0);
    await logLines(log, 5, 1);
    await log.close();
    assert.deepEqual(errors, []);
    assert.deepEqual((await readdir(logDir)).sort(), ['daily.log', 'daily.log.2025-01-31', 'daily.log.2025-02-01']);
    assert.deepEqual(await seqsOf(`${file}.2025-01-31`), [0, 1, 2]);
    assert.deepEqual(await seqsOf(`${file}.2025-02-01`), [3, 4]);
    assert.deepEqual(await seqsOf(file), [5]);
  });

  test('daily: a restart on a later day rotates the file left by the earlier run under that run’s day', async () => {
    const logDir = await subdir('restart');
    const file = path.join(logDir, 'mta-queue.log');
    await writeFile(file, '{"seq":-1}\n');
    await utimes(file, new Date(at(2025, 1, 30, 12)), new Date(at(2025, 1, 30, 12)));
    const clock = { now: () => at(2025, 2, 1, 10) };
    await logSequence({ path: file, maxSize: null, daily: true, keep: 7 }, 2, 0, clock);
    assert.deepEqual(await seqsOf(`${file}.2025-01-30`), [-1]);
    assert.deepEqual(await seqsOf(file), [0, 1]);
  });

  test('both: size rotations within a day are PATH.<day>, PATH.<day>.1, …; --log-keep deletes the oldest', async () => {
    const logDir = await subdir('both');
    const file = path.join(logDir, 'mta-server.log');
    const clock = { time: at(2025, 3, 1, 10), now: () => clock.time };
    const log = await openLogFile({ path: file, maxSize: 1024, daily: true, keep: 3 }, (error) => assert.fail(error), clock);
    await logLines(log, 0, 40);
    clock.time = at(2025, 3, 2, 10);
    await logLines(log, 40, 1);
    await log.close();
    const names = await readdir(logDir);
    const numbers = names.map((name) => /^mta-server\.log\.2025-03-01\.(\d+)$/.exec(name)?.[1]).filter((n) => n !== undefined).map(Number).sort((a, b) => a - b);
    assert.equal(names.length, 4, `PATH and --log-keep 3 rotated files: ${names.join(', ')}`);
    assert.ok(names.includes('mta-server.log'));
    assert.ok(numbers.length === 3 && numbers[0]! >= 1 && numbers[2] === numbers[0]! + 2, `the newest three of the day, numbered on: ${names.join(', ')}`);
    assert.ok(!names.includes('mta-server.log.2025-03-01'), 'the first of the day (the oldest) pruned');
    const seqs = (await Promise.all([...numbers.map((n) => `${file}.2025-03-01.${n}`), file].map(seqsOf))).flat();
    assert.deepEqual(seqs, range(40 - (seqs.length - 1), 41), 'in order across the kept files');
    assert.deepEqual(await seqsOf(file), [40]);
  });

  test('reopen (SIGUSR1): after PATH was moved away, lines go to a new PATH; a size rotation meanwhile loses nothing', async () => {
    const logDir = await subdir('reopen');
    const file = path.join(logDir, 'mta-server.log');
    const errors: Error[] = [];
    const log = await openLogFile({ path: file, maxSize: 4096, daily: false, keep: 7 }, (error) => errors.push(error));
    await logLines(log, 0, 3);
    await rename(file, `${file}-moved`); // logrotate's move, then its signal
    await logLines(log, 3, 2);
    log.reopen();
    await logLines(log, 5, 2);
    assert.deepEqual(await seqsOf(`${file}-moved`), [0, 1, 2, 3, 4], 'lines before the signal follow the moved file');
    assert.deepEqual(await seqsOf(file), [5, 6]);
    // Moved without a signal, then a size rotation: the new PATH starts; the old lines stay in the moved file.
    await rename(file, `${file}-moved-2`);
    await logLines(log, 7, 30); // past --log-max-size once
    await log.close();
    const moved = await seqsOf(`${file}-moved-2`);
    assert.ok(moved.length > 2, 'lines went on in the moved file until the rotation');
    assert.deepEqual([...moved, ...(await seqsOf(file))], range(5, 37));
    assert.deepEqual(await readdir(logDir).then((names) => names.filter((name) => /\.log\.\d+$/.test(name))), [], 'nothing to rotate: PATH was gone');
    assert.deepEqual(errors, []);
  });

  test('a directory that does not exist is a ConfigError naming --log-file', async () => {
    await assert.rejects(openLogFile({ path: path.join(dir, 'missing', 'x.log'), maxSize: null, daily: false, keep: 7 }, () => {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /^--log-file .*missing\/x\.log: ENOENT/);
      return true;
    });
  });
});
