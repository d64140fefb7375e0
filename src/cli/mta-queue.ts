import { Resolver } from 'node:dns/promises';
import os from 'node:os';
import { Command } from 'commander';
import { resolveQueueConfig, type QueueFlags } from '../config/queue-config.js';
import { QueueRunner } from '../delivery/queue-runner.js';
import { createLogger } from '../shared/logger.js';
import { spoolLayout } from '../spool/layout.js';
import { listQueue, type QueueEntry } from '../spool/queue-listing.js';
import { envOption, runCli, stopOnSignals } from './run-cli.js';

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const program = new Command('mta-queue')
  .description("delivery daemon: delivers the spool's messages to each recipient's MX, retries, and bounces")
  .enablePositionalOptions()
  .option('--once', 'deliver everything due now, wait for it, and exit 0 (deferred mail stays queued)')
  .addOption(envOption('--spool <dir>', 'spool directory shared with mta-server [/var/mailqueue]'))
  .addOption(envOption('--concurrency <n>', 'deliveries in flight at once [20]'))
  .addOption(envOption('--hostname <name>', 'EHLO name and DSN reporting MTA [os.hostname()]'))
  .addOption(envOption('--dns-servers <list>', 'DNS servers for MX/A/AAAA look-ups, IP[:PORT],… [system resolver]'))
  .addOption(envOption('--smtp-port <n>', 'port used to reach every MX [25]'))
  .addOption(envOption('--retry-schedule <list>', 'waits between attempts, 5m*3 repeats, the last repeats [1m,5m,15m,30m,1h,2h,4h]'))
  .addOption(envOption('--max-queue-time <dur>', 'after this a deferred recipient bounces (expired) [5d]'))
  .addOption(envOption('--max-connections-per-destination <n>', 'simultaneous connections per recipient domain [10]'))
  .addOption(envOption('--poll-interval <dur>', 'fallback scan of the spool for new mail [1s]'))
  .addOption(envOption('--connect-timeout <dur>', 'TCP connect and greeting timeout per MX address [30s]'))
  .addOption(envOption('--shutdown-timeout <dur>', 'on SIGTERM, how long deliveries in flight may finish [30s]'))
  .addOption(envOption('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent [info]'))
  .addOption(envOption('--log-format <format>', 'json (for journald) or pretty [json]'))
  .action(async (flags: Partial<QueueFlags> & { once?: boolean }) => {
    const config = resolveQueueConfig(flags, os.hostname());
    const logger = createLogger({ level: config.logLevel, pretty: config.logFormat === 'pretty' });
    const resolver = new Resolver({ timeout: 5000, tries: 2 });
    if (config.dnsServers) resolver.setServers(config.dnsServers);
    const runner = new QueueRunner(config, { logger, resolver, pid: process.pid, isAlive: isProcessAlive });
    await runner.start({ watch: !flags.once });
    if (flags.once) {
      await runner.drain();
      await runner.close();
      return;
    }
    stopOnSignals(logger, runner);
  });

program
  .command('list')
  .description('one line per queued message: id, state, sender, pending recipients, attempts, next attempt, last error')
  .option('--json', 'one JSON array instead of a table')
  .addOption(envOption('--spool <dir>', 'spool directory [/var/mailqueue]'))
  .action(async (flags: { json?: boolean; spool?: string }) => {
    const entries = await listQueue(spoolLayout(flags.spool ?? '/var/mailqueue'));
    process.stdout.write(flags.json ? JSON.stringify(entries, null, 2) + '\n' : formatTable(entries));
  });

function formatTable(entries: QueueEntry[]): string {
  const time = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));
  const lines = entries.map((entry) =>
    [entry.id, entry.state, entry.sender || '<>', entry.pending.join(',') || '-', String(entry.attempts), time(entry.nextAttemptAt), entry.lastError ?? '-'].join('\t'),
  );
  return ['ID\tSTATE\tSENDER\tPENDING\tATTEMPTS\tNEXT\tLAST ERROR', ...lines, `${entries.length} message(s)`].join('\n') + '\n';
}

await runCli(program, process.argv);
