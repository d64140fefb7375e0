import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { makeCertificate, type TestCertificate } from '../helpers/certs.js';
import { DaemonProcess, REPO_ROOT } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { readSpooled } from '../helpers/spool-reader.js';
import { tempDir } from '../helpers/temp.js';

/**
 * Both daemons as the systemd units run them: a dedicated system user, never root, owning the spool. What
 * root would get away with (reading a 0600 key it does not own, writing a spool it does not own) fails here.
 * Needs root to create the user and to switch to it (CI runs as root).
 */

const isRoot = process.getuid?.() === 0;
const TEST_USER = 'mta-relay-test';

function command(file: string, args: string[]): { code: number | null; out: string } {
  const result = spawnSync(file, args, { encoding: 'utf8' });
  return { code: result.status, out: `${result.stdout}${result.stderr}${result.error?.message ?? ''}`.trim() };
}

/** Real, effective, saved and file-system ids of a running process, from /proc/PID/status. */
async function processIds(pid: number): Promise<{ uid: number[]; gid: number[]; groups: string }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
  return { uid: field('Uid').split(/\s+/).map(Number), gid: field('Gid').split(/\s+/).map(Number), groups: field('Groups') };
}

/** Every entry below `dir` (not `dir` itself), with owner and permission bits. */
async function walk(dir: string): Promise<{ path: string; uid: number; gid: number; mode: number; isDir: boolean }[]> {
  const found = [];
  for (const name of await readdir(dir)) {
    const full = path.join(dir, name);
    const stat = await lstat(full);
    found.push({ path: full, uid: stat.uid, gid: stat.gid, mode: stat.mode & 0o7777, isDir: stat.isDirectory() });
    if (stat.isDirectory()) found.push(...(await walk(full)));
  }
  return found;
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('both daemons as a dedicated non-root user', { skip: isRoot ? false : 'needs root: creates a system user and runs the daemons as it' }, () => {
  let uid: number;
  let gid: number;
  let createdUser = false;
  let dir: string;
  let cleanup = async () => {};
  let spool: string;
  let usersFile: string;
  let certificate: TestCertificate;
  let f: DeliveryFixture | undefined;
  const daemons: DaemonProcess[] = [];

  before(async () => {
    if (command('id', ['-u', TEST_USER]).code !== 0) {
      // The same kind of account docs/install.md creates for mta-relay: system uid, own group, no login.
      const added = command('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', TEST_USER]);
      // Another test file may have created it in the meantime: only ours to remove if this call did it.
      if (added.code === 0) createdUser = true;
      else assert.equal(command('id', ['-u', TEST_USER]).code, 0, `useradd ${TEST_USER}: ${added.out}`);
    }
    uid = Number(command('id', ['-u', TEST_USER]).out);
    gid = Number(command('id', ['-g', TEST_USER]).out);
    assert.ok(uid > 0 && gid > 0, `${TEST_USER} is not root: ${uid}:${gid}`);

    // The daemons run from this checkout: the user needs to reach node, dist/ and node_modules/.
    const probe = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(path.join(REPO_ROOT, 'dist/cli/mta-server.js'))}, 4)`], { uid, gid, encoding: 'utf8' });
    assert.equal(probe.status, 0, `${TEST_USER} cannot read the built CLI under ${REPO_ROOT} (every parent directory needs o+x): ${probe.stderr}${probe.error?.message ?? ''}`);

    ({ dir, cleanup } = await tempDir('mta-non-root-'));
    await chmod(dir, 0o755); // mkdtemp makes 0700: the user must traverse it to its spool and files
    spool = path.join(dir, 'spool');
    await mkdir(spool, { mode: 0o700 });
    await chown(spool, uid, gid);
    // As docs/install.md lays out /etc/mta-relay: directory and certificate root's and world-readable,
    // the key root:group 0640, users.txt the service user's own, 0600.
    const etc = path.join(dir, 'etc');
    await mkdir(etc, { mode: 0o755 });
    certificate = await makeCertificate(etc, 'localhost');
    await chown(certificate.keyFile, 0, gid);
    await chmod(certificate.keyFile, 0o640);
    usersFile = path.join(etc, 'users.txt');
    await writeFile(usersFile, 'app:app-password\n', { mode: 0o600 });
    await chown(usersFile, uid, gid);

    // DNS server and MX on loopback. The fixture's own spool (made by root) is not used: the daemons get `spool`.
    f = await startDeliveryFixture([{ name: 'mx.ok.test' }], (hosts) => ({
      'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'mx.ok.test': { a: [hosts[0]!] },
    }));
  });

  after(async () => {
    await Promise.all(daemons.map((daemon) => daemon.stop()));
    await f?.close();
    await cleanup();
    if (createdUser) {
      const removed = command('userdel', [TEST_USER]);
      assert.equal(removed.code, 0, `userdel ${TEST_USER}: ${removed.out}`);
    }
  });

  test('submission → spool → delivery end to end, every process and file the user’s own', async () => {
    const server = DaemonProcess.start(
      'mta-server',
      ['--host', '127.0.0.1', '--port', '0', '--spool', spool, '--users', usersFile, '--cert', certificate.certFile, '--key', certificate.keyFile, '--hostname', 'relay.test'],
      { uid, gid },
    );
    daemons.push(server);
    const port = (await server.waitForEvent('listening')).submission as number;

    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, requireTLS: true, auth: { user: 'app', pass: 'app-password' }, tls: { rejectUnauthorized: false } });
    const sent = await transport.sendMail({ from: 'app@shop.example', to: 'someone@ok.test', subject: 'as a service user', text: 'non-root end to end', headers: { 'X-Seq': 'non-root-1' } });
    transport.close();
    const queueId = /queued as (\S+)/.exec(sent.response)?.[1];
    assert.ok(queueId, sent.response);

    // Before mta-queue runs, the message is in the spool: what mta-server wrote is the user's, 0600 in 0700.
    const spooled = await walk(spool);
    assert.ok(spooled.some((entry) => entry.path.endsWith(`incoming/${queueId}.batch`)), JSON.stringify(spooled));
    assert.equal((await readSpooled(spool, queueId)).envelope.user, 'app');

    const queue = DaemonProcess.start('mta-queue', ['--spool', spool, '--dns-servers', f!.dns.address, '--smtp-port', String(f!.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s'], { uid, gid });
    daemons.push(queue);
    await queue.waitForEvent('started');
    const delivered = await queue.waitForLog((line) => line.event === 'delivered' && line.queueId === queueId);
    assert.equal(delivered.mx, 'mx.ok.test');
    const received = await waitFor(() => f!.mx.mxes[0]!.messages.find((message) => message.raw.includes('X-Seq: non-root-1')), 10_000, 'message at the MX');
    assert.deepEqual(received.to, ['someone@ok.test']);
    assert.match(received.raw.toString(), /non-root end to end/);
    await queue.waitForEvent('completed');

    for (const daemon of [server, queue]) {
      const ids = await processIds(daemon.pid);
      assert.deepEqual(ids.uid, [uid, uid, uid, uid], `${daemon.pid}: real, effective, saved and fs uid are ${TEST_USER}'s`);
      assert.deepEqual(ids.gid, [gid, gid, gid, gid], `${daemon.pid}: every gid is ${TEST_USER}'s`);
      assert.ok(!ids.groups.split(/\s+/).includes('0'), `${daemon.pid}: root's group is not kept as a supplementary group (${ids.groups})`);
    }

    // Everything either daemon made (the message files above, the claim directory active/<pid>-<token>/ and its
    // lease) belongs to
    // the user, with modes that keep mail away from every other account.
    const entries = [...spooled, ...(await walk(spool))];
    assert.ok(entries.some((entry) => path.basename(path.dirname(entry.path)) === 'active' && path.basename(entry.path).startsWith(`${queue.pid}-`)), 'mta-queue made its claim directory');
    for (const entry of entries) {
      assert.equal(entry.uid, uid, `${entry.path} owned by ${TEST_USER}`);
      assert.equal(entry.gid, gid, `${entry.path} group ${TEST_USER}`);
      assert.equal(entry.mode, entry.isDir ? 0o700 : 0o600, `${entry.path} mode ${entry.mode.toString(8)}`);
    }
    const root = await lstat(spool);
    assert.deepEqual([root.uid, root.mode & 0o7777], [uid, 0o700], 'the spool itself');

    for (const daemon of [queue, server]) {
      daemon.signal('SIGTERM');
      assert.equal((await daemon.exit()).code, 0, daemon.stderr);
    }
  });
});
