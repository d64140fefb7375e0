import { spawn, type ChildProcess } from 'node:child_process';
import { access, chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchKey } from './dkim-keys.js';
import { readCpuMs, runCommand } from './proc.js';

export const OPENDKIM = '/usr/sbin/opendkim';

/**
 * A private OpenDKIM (Debian `opendkim`) signing one domain for the Postfix end-to-end comparison, set up as
 * Debian's package does (UserID opendkim, milter on a unix socket) but with its own config, key and socket, in
 * the foreground (`-f`) as a child of the benchmark, so its PID, CPU and end are ours. The system's opendkim
 * service is never started.
 *
 * Where the files go: OpenDKIM refuses a config or key file when any directory above it can be written by other
 * users (/tmp, /var/tmp: "can be read or written by other users"), so the tree is a mkdtemp under /run (root,
 * 0755):
 *
 *     /run/mta-bench-opendkim-XXXXXX/        root 0755
 *       opendkim.conf                        root 0644
 *       keys/                                opendkim 0700
 *         <selector>.private                 opendkim 0600   the same PKCS#8 PEM mta-queue signs with
 *       run/                                 opendkim:postfix 0750
 *         opendkim.sock                      the milter socket, 0777 (UMask 000) inside a directory only
 *                                            the postfix group can enter: smtpd runs as user postfix
 */
export class OpenDkim {
  private exit: string | null = null;
  private output = '';
  private readonly exited: Promise<void>;

  private constructor(
    readonly root: string,
    readonly socket: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = `opendkim exited (${signal ?? `status ${code}`})${this.output ? `: ${this.output.trim().split('\n').slice(-2).join(' | ')}` : ''}`;
        resolve();
      }),
    );
    const keep = (chunk: Buffer) => (this.output = (this.output + chunk.toString('utf8')).slice(-4000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  /** Why it cannot run here, or null: the package, root (to run as user opendkim), the users opendkim and postfix. */
  static async unavailable(): Promise<string | null> {
    try {
      await access(OPENDKIM, constants.X_OK);
    } catch {
      return `${OPENDKIM} not found (apt-get install -y --no-install-recommends opendkim opendkim-tools)`;
    }
    if (process.getuid?.() !== 0) return 'starting opendkim as user opendkim needs root';
    for (const name of ['opendkim', 'postfix']) {
      const found = await runCommand('id', ['-u', name], { timeoutMs: 5000 });
      if (found.code !== 0) return `no user ${name}`;
    }
    return null;
  }

  /** `opendkim -V`'s first line, e.g. "OpenDKIM Filter v2.11.0". */
  static async version(): Promise<string> {
    const result = await runCommand(OPENDKIM, ['-V'], { timeoutMs: 10_000 });
    return (result.stdout + result.stderr).split('\n')[0]!.replace(/^opendkim:\s*/, '').trim();
  }

  /** Writes the config and key, starts `opendkim -f -x CONF` and waits (≤ 15 s) for its socket. */
  static async start(key: BenchKey): Promise<OpenDkim> {
    const ids = async (name: string, flag: '-u' | '-g') => Number((await runCommand('id', [flag, name], { timeoutMs: 5000 })).stdout.trim());
    const [opendkimUid, opendkimGid, postfixGid] = [await ids('opendkim', '-u'), await ids('opendkim', '-g'), await ids('postfix', '-g')];
    const root = await mkdtemp('/run/mta-bench-opendkim-');
    let instance: OpenDkim | null = null;
    try {
      await chmod(root, 0o755);
      const keys = path.join(root, 'keys');
      const run = path.join(root, 'run');
      await mkdir(keys, { mode: 0o700 });
      await chown(keys, opendkimUid, opendkimGid);
      const keyFile = path.join(keys, `${key.selector}.private`);
      await writeFile(keyFile, key.privateKeyPem, { mode: 0o600 });
      await chown(keyFile, opendkimUid, opendkimGid);
      await mkdir(run, { mode: 0o750 });
      await chmod(run, 0o750);
      await chown(run, opendkimUid, postfixGid);
      const socket = path.join(run, 'opendkim.sock');
      const config = [
        '# private benchmark instance, written by bench/lib/opendkim.ts',
        'Syslog no',
        'Mode s',
        'Canonicalization relaxed/relaxed',
        'SignatureAlgorithm rsa-sha256',
        `Domain ${key.domain}`,
        `Selector ${key.selector}`,
        `KeyFile ${keyFile}`,
        // Debian's default: a second From: added later breaks the signature.
        'OversignHeaders From',
        // The default, written out: only mail from these clients (smtp-source on 127.0.0.1) is signed.
        'InternalHosts 127.0.0.1',
        `Socket local:${socket}`,
        `PidFile ${path.join(run, 'opendkim.pid')}`,
        'UserID opendkim:opendkim',
        'UMask 000',
        '',
      ].join('\n');
      const configFile = path.join(root, 'opendkim.conf');
      await writeFile(configFile, config, { mode: 0o644 });
      const child = spawn(OPENDKIM, ['-f', '-x', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      instance = new OpenDkim(root, socket, child);
      const deadline = Date.now() + 15_000;
      for (;;) {
        if (instance.exit) throw new Error(instance.exit);
        if (await stat(socket).then((s) => s.isSocket(), () => false)) break;
        if (Date.now() > deadline) throw new Error(`opendkim made no socket ${socket} within 15 s${instance.output ? `: ${instance.output.trim()}` : ''}`);
        await sleep(50);
      }
      return instance;
    } catch (error) {
      if (instance) await instance.stop();
      else await rm(root, { recursive: true, force: true });
      throw error;
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  get exitReason(): string | null {
    return this.exit;
  }

  /** CPU so far, all its threads (one per milter connection). */
  async cpuMs(): Promise<number> {
    return (await readCpuMs(this.pid)) ?? NaN;
  }

  /** SIGTERM to its PID, SIGKILL after 10 s, then its tree under /run is removed. */
  async stop(): Promise<void> {
    if (this.exit === null && this.child.pid !== undefined) {
      this.child.kill('SIGTERM');
      if (await Promise.race([this.exited.then(() => false), sleep(10_000).then(() => true)])) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    await rm(this.root, { recursive: true, force: true });
  }
}
