import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { childPids, countFiles, readCpuMs, runCommand, waitForPort } from './proc.js';

const SBIN = '/usr/sbin';
const POSTFIX = `${SBIN}/postfix`;
const POSTCONF = `${SBIN}/postconf`;
const POSTSUPER = `${SBIN}/postsuper`;
const POSTQUEUE = `${SBIN}/postqueue`;

/** Queues a message can be in before it is delivered (hold and deferred are hashed: counted recursively). */
const QUEUES = ['maildrop', 'incoming', 'active', 'deferred', 'hold'] as const;

export interface PostfixRelayOptions {
  /** Loopback port of its smtpd (how the queue is filled). */
  smtpdPort: number;
  /** Where everything is relayed: `[127.0.0.2]:PORT`, no DNS. */
  relayhost: string;
  /** default_destination_concurrency_limit: parallel deliveries to the one destination. */
  concurrency: number;
  /** Log to ROOT/maillog through postlogd (there is no syslog here; without it, logs go nowhere). */
  log: boolean;
}

function masterCf(port: number, log: boolean): string {
  return [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    // postqueue -f refuses to run ("mail system is down") unless public/pickup exists.
    'pickup    unix  n - n 60 1 pickup',
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
    ...(log ? ['postlog   unix-dgram n - n - 1 postlogd'] : []),
    '',
  ].join('\n');
}

/**
 * Intake from 127.0.0.0/8 goes on hold (check_client_access static:HOLD) so the queue can be filled first;
 * once released, everything goes to the relayhost over plain SMTP with the connection cache on, up to
 * `concurrency` deliveries at once (after Postfix's own slow start from initial_destination_concurrency).
 */
function mainCfSettings(root: string, options: PostfixRelayOptions): string[] {
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
    `default_process_limit=${Math.max(100, options.concurrency + 30)}`,
    `relayhost=${options.relayhost}`,
    'smtp_tls_security_level=none',
    'smtp_connection_cache_on_demand=yes',
    'smtp_connection_cache_destinations=$relayhost',
    `default_destination_concurrency_limit=${options.concurrency}`,
    ...(options.log ? [`maillog_file=${root}/maillog`, `maillog_file_prefixes=${root}`] : []),
  ];
}

/** A private Postfix (own config_directory and queue_directory under a temp dir) that relays to the sink. */
export class PostfixRelay {
  private constructor(
    readonly root: string,
    readonly port: number,
    private readonly masterPid: number,
  ) {}

  get configDir(): string {
    return path.join(this.root, 'etc');
  }

  static async start(options: PostfixRelayOptions): Promise<PostfixRelay> {
    // Postfix's daemons run as the postfix user and must reach the queue: the tree is 0755, not mkdtemp's 0700.
    const root = await mkdtemp(path.join(os.tmpdir(), 'mta-bench-postfix-relay-'));
    const configDir = path.join(root, 'etc');
    try {
      await chmod(root, 0o755);
      await mkdir(configDir, { mode: 0o755 });
      await mkdir(path.join(root, 'queue'), { mode: 0o755 });
      await writeFile(path.join(configDir, 'main.cf'), '# private benchmark instance, written by bench/delivery.ts\n');
      await writeFile(path.join(configDir, 'master.cf'), masterCf(options.smtpdPort, options.log));
      const postconf = await runCommand(POSTCONF, ['-c', configDir, '-e', ...mainCfSettings(root, options)], { timeoutMs: 30_000 });
      if (postconf.code !== 0) throw new Error(`postconf -e failed: ${postconf.stderr.trim()}`);
      const started = await runCommand(POSTFIX, ['-c', configDir, 'start'], { timeoutMs: 60_000 });
      if (started.code !== 0) throw new Error(`postfix start failed (${await explainFailure(configDir, started.stderr)})`);
      const masterPid = await readMasterPid(root);
      await waitForPort(options.smtpdPort, 15_000, () => (isRunning(masterPid) ? null : 'Postfix master exited'));
      return new PostfixRelay(root, options.smtpdPort, masterPid);
    } catch (error) {
      const masterPid = await readMasterPid(root).catch(() => null);
      if (masterPid !== null && isRunning(masterPid)) await new PostfixRelay(root, options.smtpdPort, masterPid).stop();
      await rm(root, { recursive: true, force: true });
      throw error;
    }
  }

  heldCount(): Promise<number> {
    return countFiles(path.join(this.root, 'queue', 'hold'));
  }

  /** Queue files not yet delivered, in any queue (cheap: directory reads, not showq). */
  async queuedCount(): Promise<number> {
    let total = 0;
    for (const queue of QUEUES) total += await countFiles(path.join(this.root, 'queue', queue));
    return total;
  }

  async clearQueue(): Promise<void> {
    const result = await runCommand(POSTSUPER, ['-c', this.configDir, '-d', 'ALL'], { timeoutMs: 120_000 });
    if (result.code !== 0) throw new Error(`postsuper -d ALL failed: ${result.stderr.trim()}`);
  }

  /** Releases everything on hold (postsuper -H ALL) and asks for delivery now (postqueue -f). */
  async release(): Promise<void> {
    const released = await runCommand(POSTSUPER, ['-c', this.configDir, '-H', 'ALL'], { timeoutMs: 120_000 });
    if (released.code !== 0) throw new Error(`postsuper -H ALL failed: ${released.stderr.trim()}`);
    const flushed = await runCommand(POSTQUEUE, ['-c', this.configDir, '-f'], { timeoutMs: 60_000 });
    if (flushed.code !== 0) throw new Error(`postqueue -f failed: ${flushed.stderr.trim()}`);
  }

  /** `postqueue -p` output; "Mail queue is empty" when done. */
  async listQueue(): Promise<string> {
    const result = await runCommand(POSTQUEUE, ['-c', this.configDir, '-p'], { timeoutMs: 60_000 });
    return (result.stdout + result.stderr).trim();
  }

  /** The last lines of its log, when logging is on. */
  async logTail(lines = 5): Promise<string> {
    const text = await readFile(path.join(this.root, 'maillog'), 'utf8').catch(() => '');
    return text.trim().split('\n').slice(-lines).join('\n');
  }

  /** CPU of master and every daemon: the live ones plus those master reaped (smtp processes retire after max_use). */
  async cpuMs(): Promise<number> {
    let total = (await readCpuMs(this.masterPid, true)) ?? NaN;
    for (const pid of await childPids(this.masterPid)) total += (await readCpuMs(pid)) ?? 0;
    return total;
  }

  /**
   * `postfix stop`, then waits for master and its daemons to be gone (a zombie counts as gone: on a machine whose
   * PID 1 does not reap, orphans stay as zombies); any left after 15 s get SIGKILL by PID. The tree is removed.
   */
  async stop(): Promise<string[]> {
    const notes: string[] = [];
    const pids = [this.masterPid, ...(await childPids(this.masterPid).catch(() => []))];
    const stopped = await runCommand(POSTFIX, ['-c', this.configDir, 'stop'], { timeoutMs: 30_000 });
    if (stopped.code !== 0) notes.push(`postfix stop exited ${stopped.code}: ${stopped.stderr.trim()}`);
    const deadline = Date.now() + 15_000;
    while (pids.some(isRunning) && Date.now() < deadline) await sleep(100);
    for (const pid of pids.filter(isRunning)) {
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

/** Alive and not a zombie (state Z or X in /proc/PID/stat). Synchronous: a tiny /proc read in bounded polls. */
function isRunning(pid: number): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
  return state !== 'Z' && state !== 'X';
}

async function readMasterPid(root: string): Promise<number> {
  const text = await readFile(path.join(root, 'queue', 'pid', 'master.pid'), 'utf8');
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`bad master.pid: ${JSON.stringify(text)}`);
  return pid;
}

/** Postfix commands report errors on stderr only on a terminal: `postfix check` under script(1) gives the reason. */
async function explainFailure(configDir: string, stderr: string): Promise<string> {
  if (stderr.trim()) return stderr.trim().split('\n').slice(-2).join(' | ');
  const check = await runCommand('script', ['-qec', `${POSTFIX} -c ${configDir} check`, '/dev/null'], { timeoutMs: 30_000 });
  const text = check.stdout.replace(/\r/g, '').trim();
  return text ? text.split('\n').slice(-2).join(' | ') : 'no message; try: postfix -c DIR check on a terminal';
}
