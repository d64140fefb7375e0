import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { countFiles, isRunning, runCommand } from './proc.js';
import { POSTQUEUE, POSTSUPER, PrivatePostfix } from './private-postfix.js';

/** Queues a message can be in before it is delivered (hold and deferred are hashed: counted recursively). */
const QUEUES = ['maildrop', 'incoming', 'active', 'deferred', 'hold'] as const;

export interface PostfixRelayOptions {
  /** Loopback port of its smtpd (how the queue is filled). */
  smtpdPort: number;
  /** Where everything is relayed: `[127.0.0.2]:PORT`, no DNS; null: no relayhost, `transports` route every domain. */
  relayhost: string | null;
  /** default_destination_concurrency_limit: parallel deliveries to the one destination. */
  concurrency: number;
  /** Log to ROOT/maillog through postlogd (there is no syslog here; without it, logs go nowhere). */
  log: boolean;
  /**
   * false: relay what smtpd accepts at once (the end-to-end comparison) instead of holding it until release();
   * smtpd_recipient_restrictions is then just permit_mynetworks, reject. [true]
   */
  hold?: boolean;
  /** A milter's unix socket for smtpd (OpenDKIM signing); mail is refused with 4xx if it does not answer. */
  milterSocket?: string;
  /** transport_maps entries, `domain=transport:nexthop` (the check messages go to another sink). */
  transports?: string[];
}

/**
 * A private Postfix that relays to the sink. Intake from 127.0.0.0/8 goes on hold (check_client_access
 * static:HOLD) so the queue can be filled first; once released, everything goes to the relayhost over plain
 * SMTP with the connection cache on, up to `concurrency` deliveries at once (after Postfix's own slow start
 * from initial_destination_concurrency). Waiting for its processes, a zombie counts as gone: on a machine
 * whose PID 1 does not reap, orphans stay as zombies.
 */
export class PostfixRelay extends PrivatePostfix {
  static async start(options: PostfixRelayOptions): Promise<PostfixRelay> {
    const { root, masterPid } = await PrivatePostfix.launch({
      port: options.smtpdPort,
      processLimit: Math.max(100, options.concurrency + 30),
      tmpPrefix: 'mta-bench-postfix-relay-',
      writtenBy: 'bench/delivery.ts',
      pickup: true,
      extraServices: options.log ? ['postlog   unix-dgram n - n - 1 postlogd'] : [],
      extraSettings: (root) => [
        ...(options.relayhost === null ? [] : [`relayhost=${options.relayhost}`, 'smtp_connection_cache_on_demand=yes', 'smtp_connection_cache_destinations=$relayhost']),
        'smtp_tls_security_level=none',
        `default_destination_concurrency_limit=${options.concurrency}`,
        ...(options.log ? [`maillog_file=${root}/maillog`, `maillog_file_prefixes=${root}`] : []),
        ...(options.hold === false ? ['smtpd_recipient_restrictions=permit_mynetworks, reject'] : []),
        // milter_default_action=tempfail: a milter that fails makes smtpd answer 4xx, never pass mail unsigned.
        ...(options.milterSocket ? [`smtpd_milters=unix:${options.milterSocket}`, 'milter_protocol=6', 'milter_default_action=tempfail'] : []),
        ...(options.transports?.length ? [`transport_maps=inline:{${options.transports.join(', ')}}`] : []),
      ],
      isLive: isRunning,
    });
    return new PostfixRelay(root, options.smtpdPort, masterPid, isRunning);
  }

  /** Queue files not yet delivered, in any queue (cheap: directory reads, not showq). */
  async queuedCount(): Promise<number> {
    let total = 0;
    for (const queue of QUEUES) total += await countFiles(path.join(this.root, 'queue', queue));
    return total;
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
}
