import assert from 'node:assert/strict';
import { chmod, chown, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { makeCertificate, type TestCertificate } from '../helpers/certs.js';
import { DaemonProcess, runCli } from '../helpers/daemon-process.js';
import { loginOverStartTls, RawSmtpClient } from '../helpers/raw-smtp.js';
import { readSpooled } from '../helpers/spool-reader.js';
import { tempDir } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

interface Setup {
  dir: string;
  spool: string;
  usersFile: string;
  certificate: TestCertificate;
}

async function setup(dir: string, name: string): Promise<Setup> {
  const base = path.join(dir, name);
  await mkdir(base, { recursive: true });
  const certificate = await makeCertificate(base, 'localhost');
  const usersFile = path.join(base, 'users.txt');
  await writeFile(usersFile, '# users\nalice:alice-password\n', { mode: 0o600 });
  return { dir: base, spool: path.join(base, 'spool'), usersFile, certificate };
}

function serverArgs(s: Setup, extra: string[] = []): string[] {
  return ['--host', '127.0.0.1', '--port', '0', '--spool', s.spool, '--users', s.usersFile, '--cert', s.certificate.certFile, '--key', s.certificate.keyFile, '--hostname', 'relay.test', ...extra];
}

async function startDaemon(s: Setup, extra: string[] = [], options: Parameters<typeof DaemonProcess.start>[2] = {}) {
  const daemon = DaemonProcess.start('mta-server', serverArgs(s, extra), options);
  const listening = await daemon.waitForEvent('listening');
  return { daemon, port: listening.submission as number };
}

async function sendWithNodemailer(port: number, user: string, pass: string) {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, requireTLS: true, auth: { user, pass }, tls: { rejectUnauthorized: false } });
  try {
    return await transport.sendMail({ from: 'app@shop.example', to: 'x@a.example', subject: 's', text: 'hi' });
  } finally {
    transport.close();
  }
}

async function spoolEntries(spool: string): Promise<string[]> {
  const all: string[] = [];
  for (const dir of ['tmp', 'data', 'incoming']) all.push(...(await readdir(path.join(spool, dir))).map((name) => `${dir}/${name}`));
  return all;
}

function peerFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    void RawSmtpClient.connect(port).then(async ({ client }) => {
      await client.command('EHLO fp.example');
      client.write('STARTTLS\r\n');
      await client.read();
      const raw = (client as unknown as { socket: import('node:net').Socket }).socket;
      raw.removeAllListeners('data');
      const secure = tls.connect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' }, () => {
        resolve(secure.getPeerCertificate().fingerprint256);
        secure.destroy();
      });
      secure.once('error', reject);
    }, reject);
  });
}

describe('mta-server command line', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  const daemons: DaemonProcess[] = [];
  before(async () => ({ dir, cleanup } = await tempDir('mta-cli-')));
  after(async () => {
    await Promise.all(daemons.map((daemon) => daemon.stop()));
    await cleanup();
  });

  test('bad flags and unusable files: one line on stderr, exit 2, no stack trace', async () => {
    const s = await setup(dir, 'usage');
    for (const [args, env, pattern] of [
      [['--bogus'], {}, /unknown option '--bogus'/],
      [serverArgs(s, ['--port', 'seventy']), {}, /--port: "seventy" is not a port/],
      [serverArgs(s, ['--cert', path.join(dir, 'missing.pem')]), {}, /TLS certificate .*missing\.pem: no such file/],
      [serverArgs(s, ['--users', path.join(dir, 'none.txt')]), {}, /users file .*none\.txt: no such file/],
      [serverArgs(s), { MTA_MAX_SIZE: 'huge' }, /--max-size: "huge" is not a size/],
      [serverArgs(s, ['--key', s.certificate.certFile]), {}, /do not load/],
      [serverArgs(s, ['--trusted-networks', '10.0.0.0/8/9']), {}, /--trusted-networks: "10\.0\.0\.0\/8\/9" is not an address or a CIDR network/],
      [serverArgs(s), { MTA_TRUSTED_NETWORKS: '127.0.0.0/8,,::1' }, /--trusted-networks: an empty item/],
      [serverArgs(s, ['--tls-handshake-timeout', '0s']), {}, /--tls-handshake-timeout: "0s" must be longer than 0/],
      [serverArgs(s), { MTA_MAX_HANDSHAKES_PER_IP: 'none' }, /--max-handshakes-per-ip: "none" is not a whole number/],
    ] as const) {
      const result = await runCli('mta-server', [...args], { env });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, pattern);
      assert.doesNotMatch(result.stderr, /\n\s+at /);
    }
  });

  test('a flag on the command line wins over its MTA_* variable', async () => {
    const s = await setup(dir, 'env');
    const { daemon, port } = await startDaemon(s, ['--max-size', '20k'], { env: { MTA_MAX_SIZE: '1m', MTA_MAX_RECIPIENTS: '2' } });
    daemons.push(daemon);
    const client = await loginOverStartTls(port, 'alice', 'alice-password');
    assert.ok((await client.command('EHLO again.example')).lines.includes('SIZE 20480'));
    await client.command('MAIL FROM:<a@shop.example>');
    await client.command('RCPT TO:<1@a.example>');
    await client.command('RCPT TO:<2@a.example>');
    assert.match((await client.command('RCPT TO:<3@a.example>')).raw, /^452 4\.5\.3 /, 'MTA_MAX_RECIPIENTS applied');
    client.close();
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  });

  test('passwd round trip: the hashed password logs in, other lines stay, a wrong one does not', async () => {
    const s = await setup(dir, 'passwd');
    await writeFile(s.usersFile, '# ops\nalice:alice-password\nbob:old\n');
    const added = await runCli('mta-server', ['passwd', 'carol', '--users', s.usersFile], { input: 'carol-secret\n' });
    assert.equal(added.code, 0, added.stderr);
    const replaced = await runCli('mta-server', ['passwd', 'bob', '--users', s.usersFile], { input: 'bob-new\n' });
    assert.equal(replaced.code, 0, replaced.stderr);
    const lines = (await readFile(s.usersFile, 'utf8')).trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, 2), ['# ops', 'alice:alice-password']);
    assert.match(lines[2]!, /^bob:\$scrypt\$/);
    assert.match(lines[3]!, /^carol:\$scrypt\$/);
    assert.ok(!lines.join('\n').includes('carol-secret'));
    const { daemon, port } = await startDaemon(s);
    daemons.push(daemon);
    assert.match((await sendWithNodemailer(port, 'carol', 'carol-secret')).response, /^250 /);
    assert.match((await sendWithNodemailer(port, 'bob', 'bob-new')).response, /^250 /);
    await assert.rejects(sendWithNodemailer(port, 'bob', 'old'), (error: { responseCode?: number }) => error.responseCode === 535);
    daemon.signal('SIGTERM');
    await daemon.exit();
  });

  test('SIGHUP reloads users and certificate without dropping sessions; a broken file keeps the old one', async () => {
    const s = await setup(dir, 'reload');
    const { daemon, port } = await startDaemon(s);
    daemons.push(daemon);
    const before = await peerFingerprint(port);
    const open = await loginOverStartTls(port, 'alice', 'alice-password');

    await writeFile(s.usersFile, 'alice:alice-password\ndave:dave-password\n');
    await makeCertificate(s.dir, 'localhost');
    daemon.signal('SIGHUP');
    await daemon.waitForLog((line) => line.event === 'reload' && line.what === 'users');
    assert.match((await sendWithNodemailer(port, 'dave', 'dave-password')).response, /^250 /);
    assert.notEqual(await peerFingerprint(port), before, 'new certificate served');
    assert.equal((await open.command('NOOP')).code, 250, 'the session open across the reload still works');

    await writeFile(s.usersFile, 'this line is broken\n');
    daemon.signal('SIGHUP');
    const failed = await daemon.waitForLog((line) => line.event === 'reload-failed' && line.what === 'users');
    assert.match(String(failed.msg), /line 1/);
    assert.match((await sendWithNodemailer(port, 'dave', 'dave-password')).response, /^250 /, 'old users kept');
    open.close();
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  });

  test('SIGTERM during DATA: the message finishes and is spooled, idle sessions get 421, exit 0', async () => {
    const s = await setup(dir, 'sigterm');
    const { daemon, port } = await startDaemon(s, ['--shutdown-timeout', '10s']);
    daemons.push(daemon);
    const idle = await loginOverStartTls(port, 'alice', 'alice-password');
    const busy = await loginOverStartTls(port, 'alice', 'alice-password');
    await busy.command('MAIL FROM:<app@shop.example>');
    await busy.command('RCPT TO:<x@a.example>');
    assert.equal((await busy.command('DATA')).code, 354);
    busy.write('Subject: in flight\r\n\r\nfirst half\r\n');
    await new Promise((resolve) => setTimeout(resolve, 200));
    daemon.signal('SIGTERM');
    await daemon.waitForEvent('stopping');
    assert.match((await idle.read()).raw, /^421 /, 'idle session told to go away');
    await assert.rejects(RawSmtpClient.connect(port), 'no new connections');
    busy.write('second half\r\n.\r\n');
    const reply = await busy.read();
    assert.match(reply.raw, /^250 2\.0\.0 Ok: queued as /);
    assert.match((await busy.read()).raw, /^421 /, 'then the server hangs up');
    assert.equal((await daemon.exit()).code, 0);
    const queueId = /queued as (\S+)/.exec(reply.raw)![1]!;
    assert.match((await readSpooled(s.spool, queueId)).message.toString('utf8'), /first half\r\nsecond half\r\n$/);
  });

  test('an unwritable spool gives 452 4.3.1, leaves nothing behind, and the daemon keeps serving', async () => {
    const s = await setup(dir, 'eacces');
    await mkdir(s.spool, { recursive: true, mode: 0o700 });
    const asNobody = isRoot ? { uid: NOBODY, gid: NOBODY } : {};
    if (isRoot) {
      // root ignores permission bits, so the daemon runs as nobody, as it would under systemd.
      await chmod(dir, 0o755);
      await chmod(s.dir, 0o755);
      for (const file of [s.usersFile, s.certificate.keyFile, s.certificate.certFile]) await chown(file, NOBODY, NOBODY);
      await chown(s.spool, NOBODY, NOBODY);
    }
    const { daemon, port } = await startDaemon(s, [], asNobody);
    daemons.push(daemon);
    // Intake writes tmp/ then incoming/ only (data/ is delivery's, for messages deferred on their own).
    for (const unwritable of ['incoming', 'tmp']) {
      const accepted = await spoolEntries(s.spool);
      await chmod(path.join(s.spool, unwritable), 0o500);
      const client = await loginOverStartTls(port, 'alice', 'alice-password');
      await client.command('MAIL FROM:<app@shop.example>');
      await client.command('RCPT TO:<x@a.example>');
      await client.command('DATA');
      assert.match((await client.command('Subject: s\r\n\r\nbody\r\n.')).raw, /^452 4\.3\.1 /, `${unwritable}/ unwritable`);
      assert.deepEqual(await spoolEntries(s.spool), accepted, `nothing left behind with ${unwritable}/ unwritable`);
      await chmod(path.join(s.spool, unwritable), 0o700);
      await client.command('MAIL FROM:<app@shop.example>');
      await client.command('RCPT TO:<x@a.example>');
      await client.command('DATA');
      assert.equal((await client.command('Subject: s\r\n\r\nbody\r\n.')).code, 250, 'works again once writable');
      client.close();
    }
    assert.ok(daemon.logs.some((line) => line.event === 'rejected' && line.reason === 'ESPOOLWRITE'));
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  });

  test('a full spool (ENOSPC) gives 452 4.3.1 and leaves nothing behind', async (t) => {
    if (!isRoot) return t.skip('mounting a small tmpfs needs root');
    const s = await setup(dir, 'enospc');
    await mkdir(s.spool, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', s.spool]);
    try {
      const { daemon, port } = await startDaemon(s);
      daemons.push(daemon);
      const client = await loginOverStartTls(port, 'alice', 'alice-password');
      await client.command('MAIL FROM:<app@shop.example>');
      await client.command('RCPT TO:<x@a.example>');
      await client.command('DATA');
      client.write(`Subject: big\r\n\r\n${('y'.repeat(998) + '\r\n').repeat(600)}.\r\n`);
      assert.match((await client.read()).raw, /^452 4\.3\.1 /);
      assert.deepEqual(await spoolEntries(s.spool), []);
      await client.command('MAIL FROM:<app@shop.example>');
      await client.command('RCPT TO:<x@a.example>');
      await client.command('DATA');
      assert.equal((await client.command('Subject: small\r\n\r\nfits\r\n.')).code, 250, 'a message that fits still goes through');
      client.close();
      daemon.signal('SIGTERM');
      assert.equal((await daemon.exit()).code, 0);
    } finally {
      execFileSync('umount', ['-l', s.spool]);
    }
  });
});

describe('mta-server start-up warnings and file modes', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  const daemons: DaemonProcess[] = [];
  before(async () => ({ dir, cleanup } = await tempDir('mta-cli-warn-')));
  after(async () => {
    await Promise.all(daemons.map((daemon) => daemon.stop()));
    await cleanup();
  });

  test('passwd leaves the users file 0600, also when it was 0644 before', async () => {
    const s = await setup(dir, 'passwd-mode');
    await writeFile(s.usersFile, 'alice:alice-password\n');
    await chmod(s.usersFile, 0o644);
    const result = await runCli('mta-server', ['passwd', 'bob', '--users', s.usersFile], { input: 'bob-secret\n' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal((await stat(s.usersFile)).mode & 0o777, 0o600);
    const fresh = path.join(s.dir, 'new-users.txt');
    assert.equal((await runCli('mta-server', ['passwd', 'carol', '--users', fresh], { input: 'carol-secret\n' })).code, 0);
    assert.equal((await stat(fresh)).mode & 0o777, 0o600);
  });

  test('a users file or TLS key readable by others, trusted networks covering everything and a bare hostname are each logged at start', async () => {
    const s = await setup(dir, 'loose');
    await chmod(s.usersFile, 0o644);
    await chmod(s.certificate.keyFile, 0o640);
    const args = serverArgs(s, ['--trusted-networks', '10.0.0.0/8,0.0.0.0/0']).map((arg) => (arg === 'relay.test' ? 'vm' : arg));
    const daemon = DaemonProcess.start('mta-server', args);
    daemons.push(daemon);
    await daemon.waitForEvent('listening');
    const readable = daemon.logs.filter((line) => line.event === 'file-readable-by-others');
    assert.deepEqual(readable.map((line) => [line.what, line.file, line.mode]).sort(), [['tls-key', s.certificate.keyFile, '0640'], ['users', s.usersFile, '0644']]);
    assert.equal(daemon.logs.filter((line) => line.event === 'trusted-networks-everything').length, 1);
    assert.deepEqual(daemon.logs.filter((line) => line.event === 'hostname-not-fqdn').map((line) => line.hostname), ['vm']);
    daemon.signal('SIGTERM');
    await daemon.exit();
  });

  test('a tidy configuration logs none of those warnings', async () => {
    const s = await setup(dir, 'tidy');
    const { daemon } = await startDaemon(s, ['--trusted-networks', '127.0.0.0/8,::1']);
    daemons.push(daemon);
    const warned = daemon.logs.filter((line) => ['file-readable-by-others', 'trusted-networks-everything', 'hostname-not-fqdn'].includes(String(line.event)));
    assert.deepEqual(warned, []);
    daemon.signal('SIGTERM');
    await daemon.exit();
  });

  test('mta-queue warns hostname-not-fqdn too, and not for a dotted name', async () => {
    const spool = path.join(dir, 'queue-spool');
    const bare = await runCli('mta-queue', ['--once', '--spool', spool, '--hostname', 'vm']);
    assert.equal(bare.code, 0, bare.stderr);
    assert.deepEqual(bare.logs.filter((line) => line.event === 'hostname-not-fqdn').map((line) => line.hostname), ['vm']);
    const dotted = await runCli('mta-queue', ['--once', '--spool', spool, '--hostname', 'relay.test']);
    assert.equal(dotted.code, 0, dotted.stderr);
    assert.equal(dotted.logs.filter((line) => line.event === 'hostname-not-fqdn').length, 0);
  });
});
