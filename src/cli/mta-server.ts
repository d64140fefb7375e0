import os from 'node:os';
import { Command } from 'commander';
import { resolveServerConfig, type ServerFlags } from '../config/server-config.js';
import { setUserSecret } from '../config/users-file.js';
import { hashPassword } from '../shared/password-hash.js';
import { startServer } from '../intake/server.js';
import { ConfigError } from '../shared/errors.js';
import { createMetricsRegistry } from '../shared/metrics.js';
import { loadDaemonPolicy } from './daemon-policy.js';
import { envOption, openDaemonLogger, runCli, runUntilSignalled } from './run-cli.js';
import { readSecret } from './read-secret.js';

const program = new Command('mta-server')
  .description('SMTP submission daemon: accepts mail on 587 (STARTTLS + AUTH) into the spool mta-queue delivers from')
  .enablePositionalOptions()
  .addOption(envOption('--host <addr>', 'listen address (:: for both families) [0.0.0.0]'))
  .addOption(envOption('--port <n>', 'SMTP submission port with STARTTLS [587]'))
  .addOption(envOption('--smtps-port <n>', 'implicit TLS port, e.g. 465 [off]'))
  .addOption(envOption('--spool <dir>', 'spool directory shared with mta-queue [/var/mailqueue]'))
  .addOption(envOption('--users <file>', 'users file, user:password or user:$scrypt$… lines [/etc/mta-relay/users.txt]'))
  .addOption(envOption('--cert <file>', 'TLS certificate chain (PEM) [/etc/mta-relay/cert.pem]'))
  .addOption(envOption('--key <file>', 'TLS private key (PEM) [/etc/mta-relay/key.pem]'))
  .addOption(envOption('--hostname <name>', 'name in the banner, EHLO reply and Received header [os.hostname()]'))
  .addOption(envOption('--max-size <size>', 'largest message accepted, advertised as SIZE [25m]'))
  .addOption(envOption('--max-recipients <n>', 'recipients per message; more get 452 4.5.3 [100]'))
  .addOption(envOption('--trusted-networks <cidrs>', 'clients that may send without AUTH or TLS, e.g. 127.0.0.0/8,::1 [none]'))
  .addOption(envOption('--max-connections-per-ip <n>', 'simultaneous admitted connections from one address; only the excess gets 421 [50]'))
  .addOption(envOption('--max-connections <n>', 'simultaneous connections in all, TLS handshakes on --smtps-port included [1000]'))
  .addOption(envOption('--max-handshakes-per-ip <n>', 'TLS handshakes in progress on --smtps-port from one address (IPv6: /64); the excess is closed [10]'))
  .addOption(envOption('--tls-handshake-timeout <dur>', 'longest a TLS handshake on --smtps-port may take [10s]'))
  .addOption(envOption('--session-time-limit <dur>', 'longest a session may last, however active [30m]'))
  .addOption(envOption('--idle-timeout <dur>', 'longest wait for the next command [5m]'))
  .addOption(envOption('--shutdown-timeout <dur>', 'on SIGTERM, how long sessions in DATA may take to finish [30s]'))
  .addOption(envOption('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent [info]'))
  .addOption(envOption('--log-format <format>', 'json (for journald) or pretty [json]'))
  .addOption(envOption('--log-file <path>', 'write the log to this file, rotated, instead of stdout, e.g. /var/log/mta-relay/mta-server.log [stdout]'))
  .addOption(envOption('--log-rotate <when>', 'with --log-file: size, daily or both [size]'))
  .addOption(envOption('--log-max-size <size>', 'with --log-file: start a new file past this size [100m]'))
  .addOption(envOption('--log-keep <n>', 'with --log-file: rotated files kept besides the current one [7]'))
  .addOption(envOption('--metrics <addr:port>', 'serve Prometheus /metrics and /healthz, e.g. 127.0.0.1:9587; a bare port means 127.0.0.1 [off]'))
  .addOption(envOption('--policy <file>', 'the policy file both daemons read (docs/policy.md), checked at start and re-read on SIGHUP [/etc/mta-relay/policy.toml; missing: built-in]'))
  .action(async (flags: Partial<ServerFlags>) => {
    const config = resolveServerConfig(flags, os.hostname());
    const logger = await openDaemonLogger('mta-server', config);
    // It names us in the banner, EHLO, Received and Message-IDs: a bare `vm` there reads as a forgery to receivers.
    if (!config.hostname.includes('.')) logger.warn({ event: 'hostname-not-fqdn', hostname: config.hostname }, `--hostname ${config.hostname} is not a fully qualified domain name`);
    // One file for both daemons, so mta-server refuses at start what mta-queue would ([users] is its part of it).
    const policy = await loadDaemonPolicy(config.policyFile, {}, logger);
    await runUntilSignalled(logger, async () => {
      const server = await startServer(config, { logger, metrics: config.metrics ? createMetricsRegistry() : undefined });
      return { close: () => server.close(), reload: async () => void (await Promise.all([server.reload(), policy.reload()])) };
    });
  });

program
  .command('passwd')
  .description("read a password from stdin and add or replace USER's scrypt line in the users file")
  .argument('<user>', 'user name (no spaces or colons)')
  .addOption(envOption('--users <file>', 'users file [/etc/mta-relay/users.txt]'))
  .action(async (user: string, flags: { users?: string }) => {
    const file = flags.users ?? '/etc/mta-relay/users.txt';
    const password = await readSecret(`Password for ${user}: `);
    if (password === '') throw new ConfigError('empty password, nothing changed');
    const result = await setUserSecret(file, user, await hashPassword(password));
    process.stderr.write(`mta-server: ${result} ${user} in ${file}\n`);
  });

await runCli(program, process.argv);
