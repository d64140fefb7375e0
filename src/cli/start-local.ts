import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import selfsigned from 'selfsigned';
import { setUserSecret } from '../config/users-file.js';
import { startCatchAllInbox, type CatchAllInbox } from '../inbox/catch-all-server.js';
import { createLogger } from '../shared/logger.js';
import { hashPassword } from '../shared/password-hash.js';

/**
 * `npm start`: a working local relay from a fresh clone, in the foreground. Creates what is missing (a
 * self-signed certificate in certs/, users.txt and web-users.txt with random passwords printed once, the spool in
 * ./var/mailqueue) and runs mta-server on 127.0.0.1:2587 and mta-queue side by side with readable logs, the web
 * UI on 127.0.0.1:8025, and a local test inbox that every message is relayed to, so nothing leaves the machine
 * until `--real-mx` asks for delivery to the recipients' MXes.
 */
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// MTA_START_DIR: where the generated files go (tests start a stack in a temporary directory).
const root = path.resolve(process.env.MTA_START_DIR ?? packageRoot);
const certFile = path.join(root, 'certs/cert.pem');
const keyFile = path.join(root, 'certs/key.pem');
const usersFile = path.join(root, 'users.txt');
const webUsersFile = path.join(root, 'web-users.txt');
const spool = path.join(root, 'var/mailqueue');
const inboxDir = path.join(root, 'var/inbox');
const port = process.env.MTA_PORT ?? '2587';
const webPort = process.env.MTA_START_WEB_PORT ?? '8025';
const inboxPort = process.env.MTA_START_INBOX_PORT ?? '2525';
const INBOX_KEEP = 1000;

const USAGE = 'usage: npm start [-- --real-mx]   (--real-mx: deliver to the recipients\' MXes on port 25 instead of the local test inbox)';

function parseStartFlags(): { realMx: boolean } {
  try {
    const { values } = parseArgs({ args: process.argv.slice(2), options: { 'real-mx': { type: 'boolean' }, help: { type: 'boolean' } }, strict: true });
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    return { realMx: values['real-mx'] === true || process.env.MTA_START_REAL_MX === '1' };
  } catch (error) {
    process.stderr.write(`npm start: ${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
}

const exists = (file: string) => access(file).then(() => true, () => false);

/** Creates or rewrites `file`, then gives it `mode` whatever it had before (creation modes apply to new files only). */
async function withMode(file: string, mode: number, write: (file: string) => Promise<unknown>): Promise<void> {
  await write(file);
  await chmod(file, mode);
}

async function ensureCertificate(): Promise<void> {
  if ((await exists(certFile)) && (await exists(keyFile))) return;
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
  });
  // Modes set outright, not left to the umask: under `umask 000` anyone could have swapped the certificate.
  await withMode(path.dirname(certFile), 0o755, (dir) => mkdir(dir, { recursive: true, mode: 0o755 }));
  await withMode(certFile, 0o644, (file) => writeFile(file, pems.cert, { mode: 0o644 }));
  await withMode(keyFile, 0o600, (file) => writeFile(file, pems.private, { mode: 0o600 }));
  console.log(`created a self-signed certificate: ${certFile}`);
}

/** Returns the user and, when the file was just created, its password (shown this once only). */
async function ensureAccount(file: string, user: string, template: string): Promise<{ user: string; password: string | null }> {
  if (await exists(file)) return { user, password: null };
  // Not copyFile: that gives the copy the example's 0644, and the file is about to hold a password.
  await writeFile(file, template, { mode: 0o600, flag: 'wx' });
  // Hex: nothing a shell or an option parser reads (base64url may begin with '-', and swaks takes that for an option).
  const password = randomBytes(12).toString('hex');
  await setUserSecret(file, user, await hashPassword(password));
  return { user, password };
}

function run(cli: string, args: string[]): ChildProcess {
  return spawn(process.execPath, [path.join(packageRoot, 'dist/cli', `${cli}.js`), ...args, '--log-format', 'pretty'], { stdio: 'inherit' });
}

const { realMx } = parseStartFlags();
await ensureCertificate();
const example = await readFile(path.join(packageRoot, 'users.txt.example'), 'utf8');
const smtpUser = /^([^#\s:][^:\s]*):/m.exec(example)?.[1] ?? 'acelle';
const smtp = await ensureAccount(usersFile, smtpUser, example);
const web = await ensureAccount(webUsersFile, 'admin', '# web UI accounts (mta-queue --web-users): user:password or user:$scrypt$… lines\n');
await mkdir(spool, { recursive: true, mode: 0o700 });
let inbox: CatchAllInbox | null = null;
if (!realMx) {
  const logger = createLogger({ level: 'info', pretty: true });
  inbox = await startCatchAllInbox({ host: '127.0.0.1', port: Number(inboxPort), dir: inboxDir, maxMessageSize: 25 * 1024 * 1024, maxMessages: INBOX_KEEP, hostname: 'inbox.localhost', logger });
}
const delivery = inbox ? ['--relay-host', `127.0.0.1:${inbox.port}`, '--relay-tls', 'may', '--inbox-dir', inboxDir] : [];
const children = [
  run('mta-server', ['--host', '127.0.0.1', '--port', port, '--spool', spool, '--users', usersFile, '--cert', certFile, '--key', keyFile]),
  run('mta-queue', ['--spool', spool, '--web', `127.0.0.1:${webPort}`, '--web-users', webUsersFile, ...delivery]),
];
console.log(
  [
    '',
    `mta-relay: submission on 127.0.0.1:${port} (STARTTLS, AUTH), spool ${spool}`,
    smtp.password ? `user "${smtp.user}" created with password: ${smtp.password}   (shown once; change it with: npx mta-server passwd ${smtp.user} --users users.txt)` : `user "${smtp.user}" from ${usersFile}`,
    `web UI: http://127.0.0.1:${webPort}/   ` + (web.password ? `log in as "${web.user}" with password: ${web.password}   (shown once; change it with: npx mta-server passwd ${web.user} --users web-users.txt)` : `accounts in ${webUsersFile}`),
    inbox ? `delivery: everything goes to the local test inbox (127.0.0.1:${inbox.port}), shown at http://127.0.0.1:${webPort}/inbox; npm start -- --real-mx delivers to the real MXes instead` : 'delivery: to the recipients\' MXes on port 25 (--real-mx): use addresses you own',
    'send a test message:',
    `  swaks --server 127.0.0.1 --port ${port} --tls --auth-user ${smtp.user} --auth-password '${smtp.password ?? 'YOUR-PASSWORD'}' --from you@example.com --to someone@example.com`,
    '',
  ].join('\n'),
);
let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill(signal);
};
process.on('SIGINT', () => stop('SIGTERM'));
process.on('SIGTERM', () => stop('SIGTERM'));
let running = children.length;
for (const child of children) {
  child.on('exit', (code) => {
    if (!stopping) stop('SIGTERM');
    process.exitCode = Math.max(Number(process.exitCode ?? 0), code ?? 0);
    if (--running === 0) void inbox?.close();
  });
}
