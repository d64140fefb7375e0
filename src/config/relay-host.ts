import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { rootCertificates } from 'node:tls';
import { ConfigError } from '../shared/errors.js';

/** `--relay-host` and its companions: every message goes to this one host instead of the MXes (Postfix relayhost). */
export interface RelayHostConfig {
  /** A DNS name (its A/AAAA records are used, never its MX) or an IP literal. */
  host: string;
  port: number;
  /** `--relay-auth-file`: AUTH after STARTTLS; null for none. */
  credentials: RelayCredentials | null;
  /**
   * `verify`: the certificate chain and the relay's name are checked, or nothing is sent; `require`: encrypted but
   * unchecked; both defer the recipients when TLS cannot be had. `may`: clear text when TLS is not to be had, but
   * never AUTH.
   */
  tls: RelayTlsMode;
  /**
   * `--relay-ca` (with `verify` only): every CA a relay certificate may chain to, null for Node's own store. Node's
   * `ca` option replaces that store instead of adding to it, so its bundled CAs and NODE_EXTRA_CA_CERTS are here too.
   */
  trustedCas: string[] | null;
}

export type RelayTlsMode = 'verify' | 'require' | 'may';
const RELAY_TLS_MODES: readonly string[] = ['verify', 'require', 'may'] satisfies RelayTlsMode[];

export interface RelayCredentials {
  /** Where they were read from, for the permission warning at start. */
  file: string;
  user: string;
  /** Never logged, never in an error message. */
  password: string;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?$/i;

/** `HOST`, `HOST:PORT`, `IPv4[:PORT]`, `[IPv6]` or `[IPv6]:PORT`; the port defaults to 25. */
export function parseRelayHost(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const bad = () => new ConfigError(`--relay-host: "${text}" is not HOST[:PORT] (IPv6 as [::1]:2525)`);
  if (!match) throw bad();
  const [, v6, name, portText] = match;
  const port = portText === undefined ? 25 : Number(portText);
  if (!(port >= 1 && port <= 65535)) throw bad();
  if (v6 !== undefined) {
    if (net.isIPv6(v6)) return { host: v6, port };
    throw bad();
  }
  const host = name!.toLowerCase().replace(/\.$/, '');
  if (net.isIPv4(host)) return { host, port };
  // A dotted-quad that is not an address (999.1.1.1) is a typo, not a name to look up.
  if (/^[0-9.]+$/.test(host) || host.length > 253 || !host.split('.').every((label) => LABEL.test(label))) throw bad();
  return { host, port };
}

/** One `user:password` line (the password may contain ':'); the file's content never appears in an error. */
export function readRelayCredentials(file: string): RelayCredentials {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`--relay-auth-file: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  const line = lines[0] ?? '';
  const colon = line.indexOf(':');
  if (lines.length !== 1 || colon <= 0 || colon === line.length - 1) {
    throw new ConfigError(`--relay-auth-file: ${file} must hold exactly one user:password line`);
  }
  return { file, user: line.slice(0, colon), password: line.slice(colon + 1) };
}

/** The flags of the relay host, as given (empty when not). */
export interface RelayHostFlags {
  host: string;
  authFile: string;
  tls: string;
  ca: string;
  /** The NODE_EXTRA_CA_CERTS file Node itself trusts, which a `--relay-ca` must not take away. */
  nodeExtraCaCerts?: string | undefined;
}

/** The relay host settings, or null without `--relay-host` (then its companion flags must not be given). */
export function resolveRelayHost(flags: RelayHostFlags): RelayHostConfig | null {
  if (flags.tls !== '' && !RELAY_TLS_MODES.includes(flags.tls)) throw new ConfigError(`--relay-tls: "${flags.tls}" is not verify, require or may`);
  if (flags.host === '') {
    for (const [flag, value] of [['--relay-auth-file', flags.authFile], ['--relay-tls', flags.tls], ['--relay-ca', flags.ca]] as const) {
      if (value !== '') throw new ConfigError(`${flag} needs --relay-host`);
    }
    return null;
  }
  const { host, port } = parseRelayHost(flags.host);
  const credentials = flags.authFile === '' ? null : readRelayCredentials(flags.authFile);
  // Postfix's smtp_tls_security_level=secure for a relay that gets the password: an impostor must not get it.
  const tls = (flags.tls || (credentials ? 'verify' : 'may')) as RelayTlsMode;
  if (flags.ca !== '' && tls !== 'verify') throw new ConfigError(`--relay-ca applies to --relay-tls verify, not ${tls}`);
  const trustedCas = flags.ca === '' ? null : [...rootCertificates, ...readNodeExtraCas(flags.nodeExtraCaCerts), ...readCaFile(flags.ca, '--relay-ca')];
  return { host, port, credentials, tls, trustedCas };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** The PEM certificates in `file`, each one checked to parse; a file without any is a configuration error. */
function readCaFile(file: string, flag: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${flag}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const certificates = text.match(PEM_CERTIFICATE) ?? [];
  if (certificates.length === 0) throw new ConfigError(`${flag}: ${file} holds no PEM certificate`);
  for (const pem of certificates) {
    try {
      new X509Certificate(pem);
    } catch {
      throw new ConfigError(`${flag}: ${file} holds a certificate that does not parse`);
    }
  }
  return certificates;
}

/** Node only warns about an unreadable NODE_EXTRA_CA_CERTS and goes on without it; so do we. */
function readNodeExtraCas(file: string | undefined): string[] {
  if (!file) return [];
  try {
    return readCaFile(file, 'NODE_EXTRA_CA_CERTS');
  } catch {
    return [];
  }
}

