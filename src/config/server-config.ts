import type net from 'node:net';
import { ConfigError } from '../shared/errors.js';
import { OBSERVABILITY_FLAG_DEFAULTS, resolveObservability, type ObservabilityConfig } from './observability.js';
import { parseDuration, parseNetworks, parsePort, parsePositiveDuration, parsePositiveInteger, parseSize } from './units.js';

export interface ServerConfig extends ObservabilityConfig {
  host: string;
  port: number;
  smtpsPort: number | null;
  spool: string;
  usersFile: string;
  certFile: string;
  keyFile: string;
  hostname: string;
  maxSize: number;
  maxRecipients: number;
  /** `--policy`: the policy file (docs/policy.md); null: the default path, where a missing file means the built-in policy. */
  policyFile: string | null;
  trustedNetworks: net.BlockList | null;
  /** Simultaneous admitted connections from one address; only the excess is refused. */
  maxConnectionsPerIp: number;
  /** Simultaneous connections in all, both ports, implicit-TLS handshakes in progress included. */
  maxConnections: number;
  /** Implicit-TLS handshakes in progress from one address (IPv6: one /64); the excess is closed at once. */
  maxHandshakesPerIp: number;
  /** Longest an implicit-TLS handshake may take before the socket is closed. */
  tlsHandshakeTimeout: number;
  /** Whole-session deadline: a client that trickles commands cannot hold a slot forever. */
  sessionTimeLimit: number;
  idleTimeout: number;
}

/** Flag values as commander hands them over (flag, else MTA_* variable, else default). */
export type ServerFlags = Record<keyof typeof SERVER_FLAG_DEFAULTS, string | undefined>;

export const SERVER_FLAG_DEFAULTS = {
  host: '0.0.0.0',
  port: '587',
  smtpsPort: undefined,
  spool: '/var/mailqueue',
  users: '/etc/mta-relay/users.txt',
  cert: '/etc/mta-relay/cert.pem',
  key: '/etc/mta-relay/key.pem',
  hostname: undefined,
  maxSize: '25m',
  maxRecipients: '100',
  trustedNetworks: undefined,
  maxConnectionsPerIp: '50',
  maxConnections: '1000',
  maxHandshakesPerIp: '10',
  tlsHandshakeTimeout: '10s',
  sessionTimeLimit: '30m',
  idleTimeout: '5m',
  policy: undefined,
  ...OBSERVABILITY_FLAG_DEFAULTS,
} as const;

export function resolveServerConfig(flags: Partial<ServerFlags>, defaultHostname: string): ServerConfig {
  const value = (name: keyof ServerFlags): string | undefined => flags[name] ?? SERVER_FLAG_DEFAULTS[name];
  const required = (name: keyof ServerFlags): string => {
    const text = value(name);
    if (text === undefined || text === '') throw new ConfigError(`--${kebab(name)} must not be empty`);
    return text;
  };
  const smtpsPort = value('smtpsPort');
  const trusted = value('trustedNetworks');
  return {
    host: required('host'),
    port: parsePort(required('port'), '--port'),
    smtpsPort: smtpsPort === undefined || smtpsPort === '' ? null : parsePort(smtpsPort, '--smtps-port'),
    spool: required('spool'),
    usersFile: required('users'),
    certFile: required('cert'),
    keyFile: required('key'),
    hostname: value('hostname') || defaultHostname,
    maxSize: parseSize(required('maxSize'), '--max-size'),
    maxRecipients: parsePositiveInteger(required('maxRecipients'), '--max-recipients', 100_000),
    trustedNetworks: trusted ? parseNetworks(trusted, '--trusted-networks') : null,
    policyFile: value('policy') || null,
    maxConnectionsPerIp: parsePositiveInteger(required('maxConnectionsPerIp'), '--max-connections-per-ip'),
    maxConnections: parsePositiveInteger(required('maxConnections'), '--max-connections'),
    maxHandshakesPerIp: parsePositiveInteger(required('maxHandshakesPerIp'), '--max-handshakes-per-ip'),
    tlsHandshakeTimeout: parsePositiveDuration(required('tlsHandshakeTimeout'), '--tls-handshake-timeout'),
    sessionTimeLimit: parseDuration(required('sessionTimeLimit'), '--session-time-limit'),
    idleTimeout: parseDuration(required('idleTimeout'), '--idle-timeout'),
    ...resolveObservability(value),
  };
}

export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}
