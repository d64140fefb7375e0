import net from 'node:net';
import { ConfigError } from '../shared/errors.js';
import { resolveRelayHost, type RelayHostConfig } from './relay-host.js';
import { parseRetrySchedule } from './retry-schedule.js';
import type { MetricsAddress } from '../shared/metrics.js';
import { OBSERVABILITY_FLAG_DEFAULTS, parseListenAddress, resolveObservability, type ObservabilityConfig } from './observability.js';
import { parseDuration, parseNetworks, parsePort, parsePositiveInteger, parseSwitch } from './units.js';

export interface QueueConfig extends ObservabilityConfig {
  spool: string;
  concurrency: number;
  hostname: string;
  /** `host:port` strings for node's Resolver#setServers, or null for the system resolver. */
  dnsServers: string[] | null;
  smtpPort: number;
  /**
   * A lab set-up (shared/design/cli.md): MX addresses on loopback, private or link-local networks are dialled.
   * `--allow-private-destinations`, or `--smtp-port` other than 25, since only a lab reaches every MX on one port.
   */
  allowPrivateDestinations: boolean;
  retrySchedule: number[];
  maxQueueTime: number;
  maxConnectionsPerDestination: number;
  /** Fallback scan of incoming/ for when file-system events are missed (network filesystems, overflow). */
  pollInterval: number;
  connectTimeout: number;
  /** A message whose delivery failed for a reason of ours (not the remote's: the disk, a bug) waits this long. */
  localErrorBackoff: number;
  /** `--dkim-dir`: the DKIM keys and their states (dkim/key-store.ts); missing means no keys, mail goes unsigned. */
  dkimDir: string;
  /** `--dkim-default-domain`: whose key signs when neither the From: domain nor a parent of it has one; null: none. */
  dkimDefaultDomain: string | null;
  /** `--relay-host` (with `--relay-auth-file`, `--relay-tls`, `--relay-ca`): every message to this host instead of the MXes; null: the MXes. */
  relayHost: RelayHostConfig | null;
  /** `--web` (with `--web-users`, `--web-cert`, `--web-key`): the web UI and its API; null: off. */
  web: WebConfig | null;
  /** `--inbox-dir`: the local test inbox to show under /inbox (npm start); null: none. */
  inboxDir: string | null;
  /** `--policy`: the shaping policy file; null: the default path, where a missing file means the built-in policy. */
  policyFile: string | null;
}

export interface WebConfig {
  address: MetricsAddress;
  usersFile: string;
  /** HTTPS with this certificate chain and key; null: plain HTTP. */
  tls: { certFile: string; keyFile: string } | null;
  /** `--web-hostnames`: the `Host` names the UI answers, lower case, IPv6 without brackets (DNS rebinding). */
  hostnames: string[];
  /** `--web-trusted-proxies`: peers whose `X-Forwarded-For` names the client; null: none, the peer is the client. */
  trustedProxies: net.BlockList | null;
  /** `--web-max-connections`: UI connections open at once; the ones beyond are closed as they arrive. */
  maxConnections: number;
  /** `--web-idle-timeout`: a UI connection silent this long is closed. */
  idleTimeout: number;
}

export type QueueFlags = Record<keyof typeof QUEUE_FLAG_DEFAULTS, string | undefined>;

export const QUEUE_FLAG_DEFAULTS = {
  spool: '/var/mailqueue',
  concurrency: '20',
  hostname: undefined,
  dnsServers: undefined,
  smtpPort: '25',
  allowPrivateDestinations: 'no',
  retrySchedule: '1m,5m,15m,30m,1h,2h,4h',
  maxQueueTime: '5d',
  maxConnectionsPerDestination: '10',
  pollInterval: '1s',
  connectTimeout: '30s',
  dkimDir: '/etc/mta-relay/dkim',
  dkimDefaultDomain: undefined,
  relayHost: undefined,
  relayAuthFile: undefined,
  relayTls: undefined,
  relayCa: undefined,
  web: undefined,
  webUsers: '/etc/mta-relay/web-users.txt',
  webCert: undefined,
  webKey: undefined,
  webHostnames: undefined,
  webTrustedProxies: undefined,
  webMaxConnections: '256',
  webIdleTimeout: '60s',
  inboxDir: undefined,
  policy: undefined,
  ...OBSERVABILITY_FLAG_DEFAULTS,
} as const;

/** `nodeExtraCaCerts`: the process's NODE_EXTRA_CA_CERTS, which `--relay-ca` adds to rather than replaces. */
export function resolveQueueConfig(flags: Partial<QueueFlags>, defaultHostname: string, nodeExtraCaCerts?: string): QueueConfig {
  const value = (name: keyof QueueFlags) => flags[name] ?? QUEUE_FLAG_DEFAULTS[name] ?? '';
  const dns = value('dnsServers');
  const smtpPort = parsePort(value('smtpPort'), '--smtp-port');
  if (smtpPort === 0) throw new ConfigError('--smtp-port: 0 is not a port to connect to');
  if (value('spool') === '') throw new ConfigError('--spool must not be empty');
  if (value('dkimDir') === '') throw new ConfigError('--dkim-dir must not be empty');
  return {
    spool: value('spool'),
    concurrency: parsePositiveInteger(value('concurrency'), '--concurrency', 10_000),
    hostname: value('hostname') || defaultHostname,
    dnsServers: dns ? dns.split(',').map((server) => parseDnsServer(server.trim())) : null,
    smtpPort,
    allowPrivateDestinations: parseSwitch(value('allowPrivateDestinations'), '--allow-private-destinations') || smtpPort !== 25,
    retrySchedule: parseRetrySchedule(value('retrySchedule')),
    maxQueueTime: parseDuration(value('maxQueueTime'), '--max-queue-time'),
    maxConnectionsPerDestination: parsePositiveInteger(value('maxConnectionsPerDestination'), '--max-connections-per-destination', 1000),
    pollInterval: parseDuration(value('pollInterval'), '--poll-interval'),
    connectTimeout: parseDuration(value('connectTimeout'), '--connect-timeout'),
    localErrorBackoff: 60_000,
    dkimDir: value('dkimDir'),
    dkimDefaultDomain: parseDefaultDomain(value('dkimDefaultDomain')),
    relayHost: resolveRelayHost({ host: value('relayHost'), authFile: value('relayAuthFile'), tls: value('relayTls'), ca: value('relayCa'), nodeExtraCaCerts }),
    web: resolveWeb(value, value('hostname') || defaultHostname),
    inboxDir: value('inboxDir') || null,
    policyFile: value('policy') || null,
    ...resolveObservability(value),
  };
}

function resolveWeb(value: (name: keyof QueueFlags) => string, hostname: string): WebConfig | null {
  const address = parseListenAddress(value('web'), '--web');
  const [certFile, keyFile] = [value('webCert'), value('webKey')];
  if (Boolean(certFile) !== Boolean(keyFile)) throw new ConfigError('--web-cert and --web-key go together');
  if (!address) {
    if (certFile) throw new ConfigError('--web-cert needs --web');
    return null;
  }
  if (value('webUsers') === '') throw new ConfigError('--web-users must not be empty');
  const hostnames = value('webHostnames') ? value('webHostnames').split(',').map(parseWebHostname) : [address.host, 'localhost', '127.0.0.1', hostOf(hostname)];
  const idleTimeout = parseDuration(value('webIdleTimeout'), '--web-idle-timeout');
  if (idleTimeout === 0) throw new ConfigError('--web-idle-timeout: 0 would keep idle connections for ever');
  return {
    address,
    usersFile: value('webUsers'),
    tls: certFile ? { certFile, keyFile } : null,
    hostnames: [...new Set(hostnames)],
    trustedProxies: value('webTrustedProxies') ? parseNetworks(value('webTrustedProxies'), '--web-trusted-proxies') : null,
    // Each connection is a file descriptor of the process that also delivers: the cap keeps the UI from taking them all.
    maxConnections: parsePositiveInteger(value('webMaxConnections'), '--web-max-connections', 10_000),
    idleTimeout,
  };
}

/** The name part of a `Host` value as WebConfig.hostnames holds it: lower case, no trailing dot, IPv6 unbracketed. */
export function hostOf(text: string): string {
  return text.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

function parseWebHostname(text: string): string {
  const name = hostOf(text);
  const label = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?$/;
  if (net.isIP(name) || (name.length > 0 && name.length <= 253 && name.split('.').every((part) => label.test(part)))) return name;
  throw new ConfigError(`--web-hostnames: "${text}" is not a host name or IP address`);
}

/** A DNS name of at least two labels (the key directory's names are lower-case A-labels), or null when not given. */
function parseDefaultDomain(text: string): string | null {
  if (text === '') return null;
  const domain = text.trim().toLowerCase().replace(/\.$/, '');
  const label = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
  if (domain.length > 253 || !domain.includes('.') || !domain.split('.').every((part) => label.test(part))) {
    throw new ConfigError(`--dkim-default-domain: "${text}" is not a domain name (A-label form for IDNs)`);
  }
  return domain;
}

/** `IP` or `IP:PORT` (IPv6 with a port as `[::1]:53`), as node's Resolver#setServers takes them. */
export function parseDnsServer(text: string): string {
  const match = /^(?:\[([0-9a-f:.]+)\]|([0-9.]+)|([0-9a-f:]+))(?::(\d+))?$/i.exec(text);
  const port = match?.[4];
  if (!match || (match[3] && port) || (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535))) {
    throw new ConfigError(`--dns-servers: "${text}" is not IP or IP:PORT`);
  }
  return text;
}
