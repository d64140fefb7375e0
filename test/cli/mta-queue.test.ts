import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, afterEach, before, describe, test } from 'node:test';
import { makeCertificate } from '../helpers/certs.js';
import { DaemonProcess, runCli } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { toolAvailable, TOOLS } from '../helpers/external-clients.js';
import type { ReceivedMail } from '../helpers/mx-server.js';

const run = promisify(execFile);

/** X-Seq of every message the MX received, counted: what "no loss, no duplicate" is checked against. */
function seqCounts(messages: ReceivedMail[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const message of messages) {
    const seq = /^X-Seq: (\S+)/m.exec(message.raw.toString())?.[1] ?? 'none';
    counts.set(seq, (counts.get(seq) ?? 0) + 1);
  }
  return counts;
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not seen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('mta-queue command line', () => {
  let f: DeliveryFixture;
  const daemons: DaemonProcess[] = [];
  const queueArgs = (extra: string[] = []) => ['--spool', f.layout.root, '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s', ...extra];
  const start = (extra: string[] = []) => {
    const daemon = DaemonProcess.start('mta-queue', queueArgs(extra));
    daemons.push(daemon);
    return daemon;
  };
  const enqueueMany = async (count: number, tag: string) => {
    for (let i = 0; i < count; i++) await f.enqueue('app@shop.example', [`user${i}@ok.test`], `Subject: ${tag} ${i}\nX-Seq: ${tag}-${i}\n\nbody ${i}\n`);
  };
  const leftInSpool = async () => (await readdir(f.layout.dir('incoming'))).length + (await readdir(f.layout.dir('deferred'))).length;

  before(async () => {
    f = await startDeliveryFixture([{ name: 'mx.ok.test' }, { rcpt: [{ code: 451, message: 'Try later' }] }, { greeting: 'silent' }], (hosts) => ({
      'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'mx.ok.test': { a: [hosts[0]!] },
      'shop.example': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'later.test': { a: [hosts[1]!] },
      'silent.test': { a: [hosts[2]!] },
    }));
  });
  // A failed test must not leave a daemon delivering the next test's messages.
  afterEach(() => Promise.all(daemons.splice(0).map((daemon) => daemon.stop())));
  after(() => f.close());

  test('bad flags: one line, exit 2', async () => {
    for (const [args, pattern] of [
      [['--retry-schedule', '1m,,5m'], /--retry-schedule/],
      [['--dns-servers', 'not-an-ip'], /--dns-servers: "not-an-ip"/],
      [['--concurrency', '0'], /--concurrency/],
      [['--max-queue-time', 'forever'], /--max-queue-time/],
      [['--frobnicate'], /unknown option/],
      [['--allow-private-destinations=maybe'], /--allow-private-destinations: "maybe" is not yes or no/],
    ] as const) {
      const result = await runCli('mta-queue', [...args]);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, pattern);
    }
    const fromEnv = await runCli('mta-queue', [], { env: { MTA_ALLOW_PRIVATE_DESTINATIONS: 'sure' } });
    assert.equal(fromEnv.code, 2, fromEnv.stderr);
    assert.match(fromEnv.stderr, /^mta-queue: --allow-private-destinations: "sure" is not yes or no\n$/);
  });

  test('--once delivers what is due, leaves deferred mail queued, and exits 0; list shows it', async () => {
    await enqueueMany(3, 'once');
    const deferredId = await f.enqueue('app@shop.example', ['x@later.test'], 'Subject: later\n\nbody\n');
    const result = await runCli('mta-queue', queueArgs(['--once']));
    assert.equal(result.code, 0, result.stderr);
    assert.equal([...seqCounts(f.mx.mxes[0]!.messages).keys()].filter((seq) => seq.startsWith('once-')).length, 3);
    assert.ok(result.logs.some((line) => line.event === 'deferred' && line.queueId === deferredId));
    const { stdout } = await run(process.execPath, ['dist/cli/mta-queue.js', 'list', '--json', '--spool', f.layout.root]);
    const queue = JSON.parse(stdout) as { id: string; state: string; pending: string[]; attempts: number; lastError: string }[];
    const entry = queue.find((item) => item.id === deferredId);
    assert.deepEqual({ state: entry?.state, pending: entry?.pending, attempts: entry?.attempts }, { state: 'deferred', pending: ['x@later.test'], attempts: 1 });
    assert.match(entry!.lastError, /^451 4\.3\.0 Try later/);
    const table = await run(process.execPath, ['dist/cli/mta-queue.js', 'list', '--spool', f.layout.root]);
    assert.match(table.stdout, new RegExp(`${deferredId}\\tdeferred\\tapp@shop\\.example\\tx@later\\.test\\t1\\t`));
  });

  test('end to end: swaks → mta-server → spool → mta-queue → MX, picked up within seconds', async (t) => {
    if (!(await toolAvailable(t, TOOLS.swaks))) return;
    const certificate = await makeCertificate(path.dirname(f.layout.root), 'localhost', 'e2e-');
    const usersFile = path.join(path.dirname(f.layout.root), 'users.txt');
    await writeFile(usersFile, 'app:app-password\n', { mode: 0o600 });
    const server = DaemonProcess.start('mta-server', ['--host', '127.0.0.1', '--port', '0', '--spool', f.layout.root, '--users', usersFile, '--cert', certificate.certFile, '--key', certificate.keyFile, '--hostname', 'relay.test']);
    daemons.push(server);
    const port = (await server.waitForEvent('listening')).submission as number;
    const queue = start();
    await queue.waitForEvent('started');
    const sent = Date.now();
    const swaks = await run('swaks', ['--server', '127.0.0.1', '--port', String(port), '--tls', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'app-password', '--from', 'app@shop.example', '--to', 'e2e@ok.test', '--header', 'X-Seq: e2e-1', '--body', 'end to end'], { timeout: 30_000 });
    assert.match(swaks.stdout, /250 2\.0\.0 Ok: queued as/);
    const received = await waitFor(() => f.mx.mxes[0]!.messages.find((m) => m.raw.includes('X-Seq: e2e-1')), 10_000);
    console.log(`# end to end: swaks start to MX receipt in ${Date.now() - sent} ms`);
    assert.match(received.raw.toString(), /^Received: from .*\tby relay\.test \(mta-relay\) with ESMTPSA/s);
    assert.match(received.raw.toString(), /end to end/);
    const delivered = await queue.waitForEvent('delivered');
    assert.equal(delivered.mx, 'mx.ok.test');
    for (const daemon of [queue, server]) {
      daemon.signal('SIGTERM');
      assert.equal((await daemon.exit()).code, 0);
    }
  });

  test('two mta-queue processes on one spool deliver every message exactly once', async () => {
    await enqueueMany(300, 'pair');
    const sessionsBefore = f.mx.mxes[0]!.sessions;
    const [a, b] = [start(['--once', '--concurrency', '10']), start(['--once', '--concurrency', '10'])];
    assert.deepEqual(await Promise.all([a.exit(60_000), b.exit(60_000)]).then((exits) => exits.map((exit) => exit.code)), [0, 0]);
    const counts = [...seqCounts(f.mx.mxes[0]!.messages)].filter(([seq]) => seq.startsWith('pair-'));
    assert.equal(counts.length, 300, 'every message delivered');
    assert.deepEqual(counts.filter(([, count]) => count > 1), [], 'none twice');
    const shares = [a, b].map((daemon) => daemon.logs.filter((line) => line.event === 'delivered').length);
    assert.ok(shares.every((share) => share > 0), `both processes worked: ${shares}`);
    const sessions = f.mx.mxes[0]!.sessions - sessionsBefore;
    assert.ok(sessions <= 2 * 10, `connections reused and capped at 10 per destination per process: ${sessions} for 300 messages`);
  });

  test('kill -9 in the middle of a batch, restart: nothing lost, duplicates only among what was in flight', async () => {
    await enqueueMany(400, 'crash');
    const mx = f.mx.mxes[0]!;
    const before = mx.messages.length;
    const victim = start(['--concurrency', '8']);
    await mx.waitForMessages(before + 60, 30_000);
    victim.child.kill('SIGKILL');
    await victim.exit();
    const survivor = start(['--concurrency', '8']);
    const recovered = await survivor.waitForEvent('started');
    const deadline = Date.now() + 60_000;
    while ((await leftInSpool()) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    survivor.signal('SIGTERM');
    assert.equal((await survivor.exit()).code, 0);
    const counts = [...seqCounts(mx.messages)].filter(([seq]) => seq.startsWith('crash-'));
    assert.equal(counts.length, 400, 'every message delivered at least once');
    const duplicates = counts.filter(([, count]) => count > 1).length;
    console.log(`# kill -9 recovery: ${duplicates} duplicate(s) among 400`);
    assert.ok(duplicates <= 8, `duplicates (${duplicates}) are at most the deliveries that were in flight`);
    assert.ok(survivor.logs.some((line) => line.event === 'recovered') || duplicates === 0, JSON.stringify(recovered));
    const claims = await Promise.all((await readdir(f.layout.dir('active'))).map((owner) => readdir(path.join(f.layout.dir('active'), owner))));
    assert.deepEqual(claims.flat(), [], 'no claim left behind');
  });

  test('SIGTERM with a delivery stuck in flight: exit 0 after --shutdown-timeout, the claim back in incoming/', async () => {
    const id = await f.enqueue('app@shop.example', ['stuck@silent.test'], 'Subject: stuck\n\nbody\n');
    const daemon = start(['--connect-timeout', '30s', '--shutdown-timeout', '1s']);
    await daemon.waitForEvent('started');
    await waitFor(() => (f.mx.mxes[2]!.sessions > 0 ? true : undefined), 10_000);
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
    const stopped = await daemon.waitForEvent('stopped');
    assert.deepEqual(stopped.released, [id]);
    assert.ok((await readdir(f.layout.dir('incoming'))).includes(`${id}.json`), 'back in the queue, not lost');
  });
});
