import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { REPO_ROOT } from '../helpers/daemon-process.js';
import { run, toolAvailable, TOOLS } from '../helpers/external-clients.js';
import { eventually } from '../helpers/queue-harness.js';
import { tempDir } from '../helpers/temp.js';

/**
 * `npm start` as a newcomer runs it: the printed swaks line, run as printed, ends up in the local test inbox,
 * seen through the web UI with the printed login, and nothing is sent anywhere but loopback.
 */

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The stack's stdout until `predicate` finds what it needs in it (bounded). */
async function waitForOutput(child: ChildProcess, output: () => string, predicate: (text: string) => boolean, what: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (!predicate(output())) {
    if (child.exitCode !== null) throw new Error(`npm start exited (${child.exitCode}) before printing ${what}:\n${output()}`);
    if (Date.now() > deadline) throw new Error(`npm start printed no ${what} in 30 s:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return output();
}

/** Splits the printed command line the way a shell does for it: words, and one single-quoted password. */
function shellWords(line: string): string[] {
  return [...line.trim().matchAll(/'([^']*)'|(\S+)/g)].map((match) => match[1] ?? match[2]!);
}

/**
 * npm start in a temporary directory on free ports, under `umask` when given (through sh, as a shell would start
 * it); its output collected until it prints the swaks line. Stopped, and the directory removed, after the test.
 */
async function startStack(umask?: string): Promise<{ dir: string; printed: string; ports: { port: number; webPort: number; inboxPort: number } }> {
  const { dir, cleanup } = await tempDir('mta-start-');
  const ports = { port: await freePort(), webPort: await freePort(), inboxPort: await freePort() };
  const script = path.join(REPO_ROOT, 'dist/cli/start-local.js');
  let output = '';
  const [command, args] = umask === undefined ? [process.execPath, [script]] : ['sh', ['-c', `umask ${umask}; exec "$0" "$1"`, process.execPath, script]];
  const child = spawn(command, args, {
    env: { ...process.env, MTA_START_DIR: dir, MTA_PORT: String(ports.port), MTA_START_WEB_PORT: String(ports.webPort), MTA_START_INBOX_PORT: String(ports.inboxPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await cleanup();
  });
  const printed = await waitForOutput(child, () => output, (text) => /^\s*swaks .*$/m.test(text) && /web UI: http/.test(text), 'swaks line');
  return { dir, printed, ports };
}

const modeOf = async (file: string) => (await stat(file)).mode & 0o777;

test('npm start: the printed swaks line reaches the local inbox, shown at /inbox with the printed web login', { timeout: 90_000 }, async (t) => {
  if (!(await toolAvailable(t, TOOLS.swaks))) return;
  const { dir, printed, ports: { webPort, inboxPort } } = await startStack();
  const swaksLine = /^\s*(swaks .*)$/m.exec(printed)![1]!;
  const webLogin = /web UI: (http:\/\/127\.0\.0\.1:\d+\/)\s+log in as "([^"]+)" with password: (\S+)/.exec(printed);
  assert.ok(webLogin, `no web login printed:\n${printed}`);
  const [, webUrl, webUser, webPassword] = webLogin;
  // Printed to be pasted: 96 random bits in hex, never a leading '-' that swaks would take for an option.
  for (const password of [webPassword!, /--auth-password '([^']*)'/.exec(swaksLine)?.[1] ?? '']) assert.match(password, /^[0-9a-f]{24}$/);
  assert.equal(webUrl, `http://127.0.0.1:${webPort}/`);
  assert.match(printed, new RegExp(`local test inbox \\(127\\.0\\.0\\.1:${inboxPort}\\)`));
  // Both password files hold secrets: readable by their owner only.
  for (const file of ['users.txt', 'web-users.txt']) assert.equal(await modeOf(path.join(dir, file)), 0o600, file);

  // The daemons print the line before they listen: retry the submission until mta-server answers.
  const subject = `npm start check ${Date.now()}`;
  const [command, ...args] = shellWords(swaksLine);
  assert.equal(command, 'swaks');
  await eventually(async () => /250 2\.0\.0 Ok: queued as/.test((await run('swaks', [...args, '--header', `Subject: ${subject}`])).stdout), 'swaks answered 250', 20_000);

  // mta-queue may still be starting: its web UI answers once it listens.
  let login: Response | undefined;
  await eventually(async () => {
    login = await fetch(new URL('/login', webUrl), { method: 'POST', body: new URLSearchParams({ username: webUser!, password: webPassword! }), redirect: 'manual' }).catch(() => undefined);
    return login !== undefined;
  }, 'the web UI answers', 20_000);
  assert.equal(login!.status, 303);
  const cookie = /mta_session=[^;]+/.exec(login!.headers.get('set-cookie') ?? '')?.[0];
  assert.ok(cookie, 'no session cookie');

  let inbox = '';
  await eventually(async () => {
    const page = await fetch(new URL('/inbox', webUrl), { headers: { cookie } });
    inbox = await page.text();
    return page.status === 200 && inbox.includes(subject);
  }, 'the message shows up in /inbox', 15_000);
  assert.match(inbox, /someone@example\.com/);
  // One message, so the subject is not a stale listing: exactly one row links to a message.
  assert.equal(inbox.match(/href="\/inbox\/[0-9a-z]{9}-[0-9a-f]{8}"/g)?.length, 1);
});

test('npm start under umask 000: nothing it creates is writable by others, secrets readable by their owner only', { timeout: 60_000 }, async () => {
  const { dir } = await startStack('000');
  const expected: [string, number][] = [
    ['certs', 0o755],
    ['certs/cert.pem', 0o644],
    ['certs/key.pem', 0o600],
    ['users.txt', 0o600],
    ['web-users.txt', 0o600],
    ['var', 0o700],
    ['var/inbox', 0o700],
    ['var/mailqueue', 0o700],
  ];
  for (const [file, mode] of expected) assert.equal((await modeOf(path.join(dir, file))).toString(8), mode.toString(8), file);
  // The spool's own directories come from the daemons as they start (spool/layout.ts: 0700 whatever the umask).
  const spoolDirs = ['incoming', 'deferred', 'data', 'tmp', 'corrupt'].map((name) => path.join(dir, 'var/mailqueue', name));
  await eventually(async () => (await Promise.all(spoolDirs.map((file) => modeOf(file).catch(() => null)))).every((mode) => mode !== null), 'the spool is made', 20_000);
  for (const file of spoolDirs) assert.equal((await modeOf(file)).toString(8), '700', file);
});
