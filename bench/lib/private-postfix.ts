import { access, chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { childPids, countFiles, readCpuMs, runCommand, waitForPort } from './proc.js';

/**
 * A private Postfix instance (own config_directory and queue_directory under a temp dir) on a loopback port:
 * set-up, start, stop and the readings both benchmarks take. intake.ts holds everything it accepts
 * (postfix-instance.ts); delivery.ts relays it to the sink once released (postfix-relay.ts).
 */

const SBIN = '/usr/sbin';
export const POSTFIX = `${SBIN}/postfix`;
export const POSTCONF = `${SBIN}/postconf`;
export const POSTSUPER = `${SBIN}/postsuper`;
export const POSTQUEUE = `${SBIN}/postqueue`;

export type PostfixAvailability = { ok: true; version: string } | { ok: false; reason: string };

/** Whether a private Postfix instance can be started here: the Debian `postfix` package, and root. */
export async function detectPostfix(): Promise<PostfixAvailability> {
  for (const file of [POSTFIX, POSTCONF, POSTSUPER]) {
    try {
      await access(file, constants.X_OK);
    } catch {
      return { ok: false, reason: `${file} not found (Debian package postfix)` };
    }
  }
  if (process.getuid?.() !== 0) return { ok: false, reason: 'starting Postfix needs root' };
  const version = await runCommand(POSTCONF, ['-dh', 'mail_version'], { timeoutMs: 10_000 });
  if (version.code !== 0) return { ok: false, reason: `postconf -d failed: ${version.stderr.trim()}` };
  return { ok: true, version: version.stdout.trim() };
}

export interface PrivatePostfixOptions {
  /** Loopback port of its smtpd. */
  port: number;
  /** Name prefix of the temp dir under os.tmpdir(). */
  tmpPrefix: string;
  /** Which benchmark wrote the config (a comment in main.cf). */
  writtenBy: string;
  /** default_process_limit. */
  processLimit: number;
  /** Whether master.cf runs pickup (postqueue -f refuses to run, "mail system is down", without public/pickup). */
  pickup?: boolean;
  /** master.cf lines after the common ones. */
  extraServices?: string[];
  /** main.cf settings after the common ones (given the temp root). */
  extraSettings?: (root: string) => string[];
  /** Whether a PID still counts as running while waiting for start and stop. */
  isLive: (pid: number) => boolean;
}

/**
 * Everything runs unchrooted from this private config and queue: an smtpd on one loopback port, and the
 * daemons cleanup needs. No local delivery.
 */
function masterCf(options: PrivatePostfixOptions): string {
  return [
    `127.0.0.1:${options.port} inet n - n - - smtpd`,
    ...(options.pickup ? ['pickup    unix  n - n 60 1 pickup'] : []),
    'cleanup   unix  n - n - 0 cleanup',
    'qmgr      unix  n - n 300 1 qmgr',
    'rewrite   unix  - - n - - trivial-rewrite',
    'bounce    unix  - - n - 0 bounce',
    'defer     unix  - - n - 0 bounce',
    'trace     unix  - - n - 0 bounce',
    'verify    unix  - - n - 1 verify',
    'flush     unix  n - n 1000? 0 flush',
    'proxymap  unix  - - n - - proxymap',
    'smtp      unix  - - n - - smtp',
    'relay     unix  - - n - - smtp',
    'showq     unix  n - n - - showq',
    'error     unix  - - n - - error',
    'retry     unix  - - n - - error',
    'discard   unix  - - n - - discard',
    'anvil     unix  - - n - 1 anvil',
    'scache    unix  - - n - 1 scache',
    ...(options.extraServices ?? []),
    '',
  ].join('\n');
}

/**
 * Durable intake, held: smtpd accepts from 127.0.0.0/8 only and every message goes into the hold queue
 * (cleanup fsyncs the queue file before smtpd answers 250); what happens after a release is up to the caller.
 */
function mainCfSettings(root: string, options: PrivatePostfixOptions): string[] {
  return [
    'compatibility_level=3.6',
    `queue_directory=${root}/queue`,
    `data_directory=${root}/data`,
    'myhostname=postfix-bench.test',
    'mydomain=bench.test',
    'myorigin=$myhostname',
    'mydestination=',
    'relay_domains=',
    'inet_interfaces=127.0.0.1',
    'inet_protocols=ipv4',
    'mynetworks=127.0.0.0/8',
    'alias_maps=',
    'alias_database=',
    'biff=no',
    'smtputf8_enable=no',
    'smtpd_relay_restrictions=permit_mynetworks, reject',
    'smtpd_recipient_restrictions=check_client_access static:HOLD, permit_mynetworks, reject',
    `default_process_limit=${options.processLimit}`,
    ...(options.extraSettings?.(root) ?? []),
  ];
}

export class PrivatePostfix {
  protected constructor(
    readonly root: string,
    readonly port: number,
    protected readonly masterPid: number,
    private readonly isLive: (pid: number) => boolean,
  ) {}

  get configDir(): string {
    return path.join(this.root, 'etc');
  }

  /** Writes the config, starts it and waits for its smtpd; on failure nothing it started is left behind. */
  protected static async launch(options: PrivatePostfixOptions): Promise<{ root: string; masterPid: number }> {
    // Postfix's daemons run as the postfix user and must reach the queue: the tree is 0755, not mkdtemp's 0700.
    const root = await mkdtemp(path.join(os.tmpdir(), options.tmpPrefix));
    const configDir = path.join(root, 'etc');
    try {
      await chmod(root, 0o755);
      await mkdir(configDir, { mode: 0o755 });
      await mkdir(path.join(root, 'queue'), { mode: 0o755 });
      await writeFile(path.join(configDir, 'main.cf'), `# private benchmark instance, written by ${options.writtenBy}\n`);
      await writeFile(path.join(configDir, 'master.cf'), masterCf(options));
      const postconf = await runCommand(POSTCONF, ['-c', configDir, '-e', ...mainCfSettings(root, options)], { timeoutMs: 30_000 });
      if (postconf.code !== 0) throw new Error(`postconf -e failed: ${postconf.stderr.trim()}`);
      const started = await runCommand(POSTFIX, ['-c', configDir, 'start'], { timeoutMs: 60_000 });
      if (started.code !== 0) throw new Error(`postfix start failed (${await explainFailure(configDir, started.stderr)})`);
      const masterPid = await readMasterPid(root);
      await waitForPort(options.port, 15_000, () => (options.isLive(masterPid) ? null : 'Postfix master exited'));
      return { root, masterPid };
    } catch (error) {
      // Whatever got started must not outlive the benchmark.
      const masterPid = await readMasterPid(root).catch(() => null);
      if (masterPid !== null && options.isLive(masterPid)) await new PrivatePostfix(root, options.port, masterPid, options.isLive).stop();
      await rm(root, { recursive: true, force: true });
      throw error;
    }
  }

  /** Messages in the hold queue. */
  heldCount(): Promise<number> {
    return countFiles(path.join(this.root, 'queue', 'hold'));
  }

  /** Empties every queue between measurements, so each starts on the same footing as a fresh spool. */
  async clearQueue(): Promise<void> {
    const result = await runCommand(POSTSUPER, ['-c', this.configDir, '-d', 'ALL'], { timeoutMs: 120_000 });
    if (result.code !== 0) throw new Error(`postsuper -d ALL failed: ${result.stderr.trim()}`);
  }

  /**
   * CPU used so far by master and every daemon it runs: the live ones, plus (through master's own count of
   * reaped children) those that exited, e.g. cleanup or smtp processes retired after max_use.
   */
  async cpuMs(): Promise<number> {
    let total = (await readCpuMs(this.masterPid, true)) ?? NaN;
    for (const pid of await childPids(this.masterPid)) total += (await readCpuMs(pid)) ?? 0;
    return total;
  }

  /**
   * `postfix stop`, then waits for master and every daemon it had to be gone (by `isLive`); any left after 15 s
   * gets SIGKILL by PID (they were all started by this instance). The temp tree is removed.
   */
  async stop(): Promise<string[]> {
    const notes: string[] = [];
    const pids = [this.masterPid, ...(await childPids(this.masterPid).catch(() => []))];
    const stopped = await runCommand(POSTFIX, ['-c', this.configDir, 'stop'], { timeoutMs: 30_000 });
    if (stopped.code !== 0) notes.push(`postfix stop exited ${stopped.code}: ${stopped.stderr.trim()}`);
    const deadline = Date.now() + 15_000;
    while (pids.some(this.isLive) && Date.now() < deadline) await sleep(100);
    for (const pid of pids.filter(this.isLive)) {
      notes.push(`Postfix process ${pid} still running after stop: SIGKILL`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await rm(this.root, { recursive: true, force: true });
    return notes;
  }
}

async function readMasterPid(root: string): Promise<number> {
  const text = await readFile(path.join(root, 'queue', 'pid', 'master.pid'), 'utf8');
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`bad master.pid: ${JSON.stringify(text)}`);
  return pid;
}

/**
 * Postfix commands write their errors to stderr only when it is a terminal (otherwise to syslog, which may not
 * exist): run `postfix check` under script(1) to get the reason in words.
 */
async function explainFailure(configDir: string, stderr: string): Promise<string> {
  if (stderr.trim()) return stderr.trim().split('\n').slice(-2).join(' | ');
  const check = await runCommand('script', ['-qec', `${POSTFIX} -c ${configDir} check`, '/dev/null'], { timeoutMs: 30_000 });
  const text = check.stdout.replace(/\r/g, '').trim();
  return text ? text.split('\n').slice(-2).join(' | ') : 'no message; try: postfix -c DIR check on a terminal';
}
