import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { makeCertificate } from '../helpers/certs.js';
import { DaemonProcess, runCli, type DaemonLogLine } from '../helpers/daemon-process.js';
import { RawSmtpClient } from '../helpers/raw-smtp.js';
import { healthz, scrape } from '../helpers/scrape.js';
import { tempDir } from '../helpers/temp.js';

/** The JSON lines of a log written with --log-file (every file of it), once `predicate` matches one. */
async function waitForFileLog(dir: string, base: string, predicate: (line: DaemonLogLine) => boolean): Promise<DaemonLogLine[]> {
  for (let tries = 0; tries < 300; tries++) {
    const names = (await readdir(dir)).filter((name) => name.startsWith(`${base}.`) && name.endsWith('.log')).sort();
    const lines = (await Promise.all(names.map((name) => readFile(path.join(dir, name), 'utf8'))))
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as DaemonLogLine);
    if (lines.some(predicate)) return lines;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no such line in ${dir}/${base}.*.log`);
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

  test('mta-server --log-file: nothing on stdout, the log in <name>.1.log up to the last line at SIGTERM', async () => {
    const logDir = path.join(dir, 'logs');
    await mkdir(logDir);
    const daemon = start('mta-server', [...serverArgs, '--log-max-size', '10m', '--log-keep', '3'], { MTA_LOG_FILE: path.join(logDir, 'mta-server.log') });
    const [listening] = (await waitForFileLog(logDir, 'mta-server', (line) => line.event === 'listening')).filter((line) => line.event === 'listening');
    // A greeting is served from a later turn of the event loop than the listening line: by then SIGTERM is handled.
    const { client, greeting } = await RawSmtpClient.connect(listening!.submission as number);
    assert.equal(greeting.code, 220);
    client.close();
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
    assert.deepEqual(await readdir(logDir), ['mta-server.1.log']);
    const lines = await waitForFileLog(logDir, 'mta-server', (line) => line.event === 'stopped');
    const events = lines.map((line) => line.event);
    assert.equal(events[0], 'listening');
    assert.ok(events.includes('connect'));
    assert.deepEqual(events.slice(-3), ['signal', 'stopping', 'stopped'], 'the last line of the shutdown is in the file');
    assert.deepEqual(daemon.logs, [], 'stdout stays empty');
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
