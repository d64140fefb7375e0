import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { makeCertificate } from '../helpers/certs.js';
import { DaemonProcess, runCli, type DaemonLogLine } from '../helpers/daemon-process.js';
import { RawSmtpClient } from '../helpers/raw-smtp.js';
import { healthz, scrape } from '../helpers/scrape.js';
import { tempDir } from '../helpers/temp.js';

/** The JSON lines of one log file; none when it does not exist (yet). */
async function readLog(file: string): Promise<DaemonLogLine[]> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? '' : Promise.reject(error)));
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as DaemonLogLine);
}

/** The lines of `file` once `predicate` matches one of them. */
async function waitForFileLog(file: string, predicate: (line: DaemonLogLine) => boolean): Promise<DaemonLogLine[]> {
  for (let tries = 0; tries < 300; tries++) {
    const lines = await readLog(file);
    if (lines.some(predicate)) return lines;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no such line in ${file}`);
}

describe('--metrics and --log-file on the command line', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let serverArgs: string[];
  const daemons: DaemonProcess[] = [];
  const start = (cli: 'mta-server' | 'mta-queue', args: string[], env: NodeJS.ProcessEnv = {}) => {
    const daemon = DaemonProcess.start(cli, args, { env });
    daemons.push(daemon);
    return daemon;
  };

  before(async () => {
    ({ dir, cleanup } = await tempDir('mta-cli-obs-'));
    const certificate = await makeCertificate(dir, 'localhost');
    const users = path.join(dir, 'users.txt');
    await writeFile(users, 'alice:alice-password\n', { mode: 0o600 });
    serverArgs = ['--host', '127.0.0.1', '--port', '0', '--spool', path.join(dir, 'spool'), '--users', users, '--cert', certificate.certFile, '--key', certificate.keyFile];
  });
  afterEach(() => Promise.all(daemons.splice(0).map((daemon) => daemon.stop())));
  after(() => cleanup());

  test('mta-server --metrics 127.0.0.1:0: the bound address in the listening line, /metrics and /healthz served', async () => {
    const daemon = start('mta-server', [...serverArgs, '--metrics', '127.0.0.1:0']);
    const address = (await daemon.waitForEvent('listening')).metrics as string;
    assert.match(address, /^127\.0\.0\.1:[1-9]\d*$/);
    const sample = await scrape(address);
    assert.equal(sample.value('mta_server_connections_total'), 0);
    assert.ok(sample.value('process_start_time_seconds')! > 0);
    assert.deepEqual(await healthz(address), { status: 200, body: 'ok\n' });
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  });

  test('mta-queue with MTA_METRICS: the started line has the address; without it, no endpoint and metrics: null', async () => {
    const spool = path.join(dir, 'queue-spool');
    const daemon = start('mta-queue', ['--spool', spool], { MTA_METRICS: '127.0.0.1:0' });
    const address = (await daemon.waitForEvent('started')).metrics as string;
    assert.deepEqual((await scrape(address)).series('mta_queue_messages'), new Map([['{state="incoming"}', 0], ['{state="deferred"}', 0], ['{state="active"}', 0]]));
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);

    const plain = start('mta-queue', ['--spool', spool]);
    assert.equal((await plain.waitForEvent('started')).metrics, null);
  });

  test('mta-server --log-file PATH: PATH itself, nothing on stdout, up to the last line at SIGTERM', async () => {
    const logDir = path.join(dir, 'logs');
    await mkdir(logDir);
    const file = path.join(logDir, 'mta-server.log');
    const daemon = start('mta-server', [...serverArgs, '--log-max-size', '10m', '--log-keep', '3'], { MTA_LOG_FILE: file });
    const [listening] = (await waitForFileLog(file, (line) => line.event === 'listening')).filter((line) => line.event === 'listening');
    // A greeting is served from a later turn of the event loop than the listening line: by then SIGTERM is handled.
    const { client, greeting } = await RawSmtpClient.connect(listening!.submission as number);
    assert.equal(greeting.code, 220);
    client.close();
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
    assert.deepEqual(await readdir(logDir), ['mta-server.log'], 'the file named, no other');
    const events = (await readLog(file)).map((line) => line.event);
    assert.ok(events.includes('listening') && events.indexOf('listening') < events.indexOf('connect'), events.join());
    assert.deepEqual(events.slice(-3), ['signal', 'stopping', 'stopped'], 'the last line of the shutdown is in the file');
    assert.deepEqual(daemon.logs, [], 'stdout stays empty');
  });

  test('a running daemon rotates PATH to PATH.1 past --log-max-size; after PATH is moved away, SIGUSR1 opens a new PATH', async () => {
    const logDir = path.join(dir, 'logs-rotated');
    await mkdir(logDir);
    const file = path.join(logDir, 'mta-server.log');
    const daemon = start('mta-server', [...serverArgs, '--log-file', file, '--log-max-size', '2k', '--log-keep', '3']);
    const port = (await waitForFileLog(file, (line) => line.event === 'listening')).find((line) => line.event === 'listening')!.submission as number;
    const session = async () => {
      const { client } = await RawSmtpClient.connect(port);
      client.close();
    };
    for (let sessions = 0; !(await readdir(logDir)).includes('mta-server.log.1'); sessions++) {
      assert.ok(sessions < 100, 'no rotation after 100 sessions of log lines');
      await session();
    }
    await session();
    const lastLine = await waitForFileLog(file, (line) => line.event === 'connect');
    const older = await readLog(`${file}.1`);
    assert.ok(older.some((line) => line.event === 'listening'), 'PATH.1 holds the older lines, the start included');
    assert.ok((older.at(-1)!.time as number) <= (lastLine[0]!.time as number), 'PATH the newer ones');

    // logrotate: move the file, then signal; lines after the signal go to a new PATH.
    await rename(file, `${file}-20250131`);
    daemon.signal('SIGUSR1');
    const reopened = await waitForFileLog(file, (line) => line.event === 'log-reopened');
    assert.equal(reopened[0]!.event, 'log-reopened', 'the first line of the new PATH');
    assert.equal(reopened[0]!.file, file);
    await session();
    await waitForFileLog(file, (line) => line.event === 'connect');
    assert.ok(!(await readLog(`${file}-20250131`)).some((line) => line.event === 'log-reopened'), 'nothing after the signal in the moved file');
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
    assert.equal((await readLog(file)).at(-1)!.event, 'stopped');
    assert.doesNotMatch(daemon.stderr, /Debugger|inspector/i, 'SIGUSR1 is ours, not the inspector\'s');
    assert.deepEqual(daemon.logs, [], 'stdout stays empty');
  });

  test('SIGUSR1 without --log-file: logged, the daemon runs on (no inspector, no exit)', async () => {
    const daemon = start('mta-queue', ['--spool', path.join(dir, 'usr1-spool')]);
    await daemon.waitForEvent('started');
    daemon.signal('SIGUSR1');
    await daemon.waitForLog((line) => line.event === 'signal' && line.signal === 'SIGUSR1');
    assert.equal(daemon.child.exitCode, null);
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
    assert.doesNotMatch(daemon.stderr, /Debugger|inspector/i);
  });

  test('bad values: one line on stderr, exit 2', async () => {
    for (const [cli, args, env, pattern] of [
      ['mta-server', [...serverArgs, '--metrics', 'localhost:9587'], {}, /--metrics: "localhost:9587" is not PORT, ADDR:PORT/],
      ['mta-queue', ['--metrics', '127.0.0.1:99999'], {}, /--metrics: "99999" is not a port/],
      ['mta-server', [...serverArgs, '--log-file', path.join(dir, 'x.log'), '--log-format', 'pretty'], {}, /--log-format pretty is for a terminal/],
      ['mta-queue', ['--log-rotate', 'weekly'], {}, /--log-rotate: "weekly" is not one of size, daily, both/],
      ['mta-queue', ['--log-max-size', 'big'], {}, /--log-max-size: "big" is not a size/],
      ['mta-server', serverArgs, { MTA_LOG_KEEP: '0' }, /--log-keep: "0" is not a whole number/],
      ['mta-queue', ['--log-file', path.join(dir, 'no', 'such', 'dir', 'q.log')], {}, /--log-file .*q\.log: ENOENT/],
    ] as const) {
      const result = await runCli(cli, [...args], { env });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, pattern);
    }
  });
});
