import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import selfsigned from 'selfsigned';
import { setUserSecret } from '../config/users-file.js';
import { hashPassword } from '../shared/password-hash.js';

/**
 * `npm start`: a working local relay from a fresh clone, in the foreground. Creates what is missing (a
 * self-signed certificate in certs/, users.txt with a random password printed once, the spool in
 * ./var/mailqueue) and runs mta-server on 127.0.0.1:2587 and mta-queue side by side with readable logs.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const certFile = path.join(root, 'certs/cert.pem');
const keyFile = path.join(root, 'certs/key.pem');
const usersFile = path.join(root, 'users.txt');
const spool = path.join(root, 'var/mailqueue');
const port = process.env.MTA_PORT ?? '2587';

const exists = (file: string) => access(file).then(() => true, () => false);

async function ensureCertificate(): Promise<void> {
  if ((await exists(certFile)) && (await exists(keyFile))) return;
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
  });
  await mkdir(path.dirname(certFile), { recursive: true });
  await writeFile(certFile, pems.cert);
  await writeFile(keyFile, pems.private, { mode: 0o600 });
  console.log(`created a self-signed certificate: ${certFile}`);
}

/** Returns the user and, when it was just created, its password (shown this once only). */
async function ensureUsers(): Promise<{ user: string; password: string | null }> {
  const example = await readFile(path.join(root, 'users.txt.example'), 'utf8');
  const user = /^([^#\s:][^:\s]*):/m.exec(example)?.[1] ?? 'acelle';
  if (await exists(usersFile)) return { user, password: null };
  // Not copyFile: that gives the copy the example's 0644, and the file is about to hold a password.
  await writeFile(usersFile, example, { mode: 0o600, flag: 'wx' });
  const password = randomBytes(12).toString('base64url');
  await setUserSecret(usersFile, user, await hashPassword(password));
  return { user, password };
}

function run(cli: string, args: string[]): ChildProcess {
  return spawn(process.execPath, [path.join(root, 'dist/cli', `${cli}.js`), ...args, '--log-format', 'pretty'], { stdio: 'inherit' });
}

await ensureCertificate();
const { user, password } = await ensureUsers();
await mkdir(spool, { recursive: true, mode: 0o700 });
const children = [
  run('mta-server', ['--host', '127.0.0.1', '--port', port, '--spool', spool, '--users', usersFile, '--cert', certFile, '--key', keyFile]),
  run('mta-queue', ['--spool', spool]),
];
console.log(
  [
    '',
    `mta-relay: submission on 127.0.0.1:${port} (STARTTLS, AUTH), spool ${spool}`,
    password ? `user "${user}" created with password: ${password}   (shown once; change it with: npx mta-server passwd ${user} --users users.txt)` : `user "${user}" from ${usersFile}`,
    'send a test message:',
    `  swaks --server 127.0.0.1 --port ${port} --tls --auth-user ${user} --auth-password '${password ?? 'YOUR-PASSWORD'}' --from you@example.com --to someone@example.com`,
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
for (const child of children) {
  child.on('exit', (code) => {
    if (!stopping) stop('SIGTERM');
    process.exitCode = Math.max(Number(process.exitCode ?? 0), code ?? 0);
  });
}
