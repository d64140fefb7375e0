import { Resolver } from 'node:dns/promises';
import os from 'node:os';
import { Command } from 'commander';
import { Registry } from 'prom-client';
import { resolveQueueConfig, type QueueFlags } from '../config/queue-config.js';
import { mxTransport } from '../delivery/mx-transport.js';
import { QueueRunner } from '../delivery/queue-runner.js';
import { logRelayHostWarnings } from '../delivery/relay-warnings.js';
import { systemClock } from '../shared/clock.js';
import { createMetricsRegistry } from '../shared/metrics.js';
import { addDkimCommands } from './dkim-cli.js';
import { startDkimSigning } from './dkim-signing.js';
import { newLeaseToken, procProcessTable } from './process-table.js';
import { loadDaemonPolicy } from './daemon-policy.js';
import { localAddressCheck } from './local-addresses.js';
import { addPolicyCommands } from './policy-cli.js';
import { addQueueAdminCommands } from './queue-admin-cli.js';
import { prepareWebUi } from './web-ui.js';
import { envOption, openDaemonLogger, runCli, runUntilSignalled } from './run-cli.js';

const program = new Command('mta-queue')
  .description("delivery daemon: delivers the spool's messages to each recipient's MX, retries, and bounces")
  .enablePositionalOptions()
  .option('--once', 'deliver everything due now, wait for it, and exit 0 (deferred mail stays queued)')
  .addOption(envOption('--spool <dir>', 'spool directory shared with mta-server [/var/mailqueue]'))
  .addOption(envOption('--concurrency <n>', 'SMTP transactions in flight at once (a message waiting for its destination holds none) [20]'))
  .addOption(envOption('--hostname <name>', 'EHLO name and DSN reporting MTA [os.hostname()]'))
  .addOption(envOption('--dns-servers <list>', 'DNS servers for MX/A/AAAA look-ups, IP[:PORT],… [system resolver]'))
  .addOption(envOption('--smtp-port <n>', 'port used to reach every MX [25]'))
  .addOption(envOption('--allow-private-destinations [yes|no]', 'dial MX addresses on loopback, private or link-local networks (a lab); implied by --smtp-port other than 25 [no]').preset('yes'))
  .addOption(envOption('--relay-host <host[:port]>', 'send every message to this host instead of the MXes (Postfix relayhost), IPv6 as [::1]:2525 [off]'))
  .addOption(envOption('--relay-auth-file <file>', 'one user:password line: AUTH to the relay host after STARTTLS [none]'))
  .addOption(envOption('--relay-tls <mode>', 'verify (chain and name checked), require (encrypted, unchecked) or may (clear text without STARTTLS, never AUTH): TLS towards the relay host [verify with auth, else may]'))
  .addOption(envOption('--relay-ca <file>', 'extra CA certificates (PEM) for --relay-tls verify, a private relay [none]'))
  .addOption(envOption('--retry-schedule <list>', 'waits between attempts, 5m*3 repeats, the last repeats [1m,5m,15m,30m,1h,2h,4h]'))
  .addOption(envOption('--max-queue-time <dur>', 'after this a deferred recipient bounces (expired) [5d]'))
  .addOption(envOption('--max-connections-per-destination <n>', 'connections at once per site (the MX set): [shaping.default] connection_limit, a value in --policy wins [10]'))
  .addOption(envOption('--poll-interval <dur>', 'fallback scan of the spool for new mail [1s]'))
  .addOption(envOption('--connect-timeout <dur>', 'TCP connect and greeting timeout per MX address [30s]'))
  .addOption(envOption('--dkim-dir <dir>', 'DKIM keys and their states, re-read on SIGHUP and when they change (docs/dkim.md) [/etc/mta-relay/dkim]'))
  .addOption(envOption('--dkim-default-domain <domain>', "sign with this domain's key when neither the From: domain nor a parent of it has one [none]"))
  .addOption(envOption('--web <addr:port>', 'serve the web UI and its JSON API /api, e.g. 127.0.0.1:8025; a bare port means 127.0.0.1 [off]'))
  .addOption(envOption('--web-users <file>', 'web UI accounts, users.txt format (mta-server passwd USER --users FILE) [/etc/mta-relay/web-users.txt]'))
  .addOption(envOption('--web-cert <file>', 'serve the web UI over HTTPS with this certificate chain (PEM), with --web-key [off]'))
  .addOption(envOption('--web-key <file>', 'private key (PEM) for --web-cert'))
  .addOption(envOption('--web-hostnames <list>', 'Host names the web UI answers, NAME,… (DNS rebinding); others get 421 [the --web address, localhost, 127.0.0.1, --hostname]'))
  .addOption(envOption('--web-trusted-proxies <list>', 'reverse proxies whose X-Forwarded-For names the web client, CIDR,… [none]'))
  .addOption(envOption('--web-max-connections <n>', 'web UI connections open at once; more are closed as they arrive [256]'))
  .addOption(envOption('--web-idle-timeout <dur>', 'close a web UI connection silent this long [60s]'))
  .addOption(envOption('--inbox-dir <dir>', "show this local test inbox's messages under /inbox (npm start runs one) [none]"))
  .addOption(envOption('--shutdown-timeout <dur>', 'on SIGTERM, how long deliveries in flight may finish [30s]'))
  .addOption(envOption('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent [info]'))
  .addOption(envOption('--log-format <format>', 'json (for journald) or pretty [json]'))
  .addOption(envOption('--log-file <path>', 'write the log to this file, rotated, instead of stdout, e.g. /var/log/mta-relay/mta-queue.log [stdout]'))
  .addOption(envOption('--log-rotate <when>', 'with --log-file: size, daily or both [size]'))
  .addOption(envOption('--log-max-size <size>', 'with --log-file: start a new file past this size [100m]'))
  .addOption(envOption('--log-keep <n>', 'with --log-file: rotated files kept besides the current one [7]'))
  .addOption(envOption('--metrics <addr:port>', 'serve Prometheus /metrics and /healthz, e.g. 127.0.0.1:9588; a bare port means 127.0.0.1 [off]'))
  .addOption(envOption('--policy <file>', 'shaping policy, TOML (docs/policy.md); re-read on SIGHUP [/etc/mta-relay/policy.toml; missing: built-in]'))
  .action(async (flags: Partial<QueueFlags> & { once?: boolean }) => {
    const config = resolveQueueConfig(flags, os.hostname(), process.env.NODE_EXTRA_CA_CERTS);
    const logger = await openDaemonLogger('mta-queue', config);
    // It is our EHLO name and the DSN's Reporting-MTA: receivers and their filters expect a fully qualified name.
    if (!config.hostname.includes('.')) logger.warn({ event: 'hostname-not-fqdn', hostname: config.hostname }, `--hostname ${config.hostname} is not a fully qualified domain name`);
    await logRelayHostWarnings(config.relayHost, logger);
    // --max-connections-per-destination is [shaping.default] connection_limit, unless the file says otherwise.
    const policy = await loadDaemonPolicy(config.policyFile, { connection_limit: config.maxConnectionsPerDestination }, logger, localAddressCheck);
    const resolver = new Resolver({ timeout: 5000, tries: 2 });
    if (config.dnsServers) resolver.setServers(config.dnsServers);
    // The web UI's chart reads the delivery counters, so they are kept when it runs even without --metrics.
    const metrics = config.metrics ? createMetricsRegistry() : config.web ? new Registry() : undefined;
    // Signed at delivery, not at intake: retries and DSNs get the key that is active when they go out.
    const dkim = await startDkimSigning(config, mxTransport(config, resolver, systemClock), { logger, clock: systemClock, registry: metrics });
    const runner = new QueueRunner(config, { logger, transport: dkim.transport, processes: procProcessTable(), leaseToken: newLeaseToken(), metrics, policy: policy.current });
    if (flags.once) {
      await runner.start({ watch: false });
      await runner.drain();
      await runner.close();
      return;
    }
    // Before the runner: a missing users file is a usage error (exit 2) with nothing started yet.
    const startWeb = config.web && metrics ? await prepareWebUi({ ...config, web: config.web }, { logger, registry: metrics, keyring: dkim.keyring, sites: () => runner.sitesReport() }) : null;
    await runUntilSignalled(logger, async () => {
      await runner.start({ watch: true });
      dkim.keyring.watch();
      const web = await startWeb?.().catch(async (error: unknown) => {
        // Port taken, say: nothing may keep running half started.
        dkim.keyring.close();
        await runner.close();
        throw error;
      });
      return {
        close: async () => {
          await web?.close();
          dkim.keyring.close();
          await runner.close();
        },
        reload: async () => {
          await Promise.all([dkim.keyring.load('sighup'), web?.reload(), policy.reload()]);
        },
      };
    });
  });

// list, show, stats, flush, hold, release, delete: queue administration, safe while the daemons run.
addQueueAdminCommands(program);
// dkim keygen, list, check, activate, retire, remove (docs/dkim.md).
addDkimCommands(program);
// policy check, show: the shaping policy file.
addPolicyCommands(program);

await runCli(program, process.argv);
