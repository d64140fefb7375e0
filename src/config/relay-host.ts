import { readFileSync } from 'node:fs';
import net from 'node:net';
import { ConfigError } from '../shared/errors.js';

/** `--relay-host` and its companions: every message goes to this one host instead of the MXes (Postfix relayhost). */
export interface RelayHostConfig {
  /** A DNS name (its A/AAAA records are used, never its MX) or an IP literal. */
  host: string;
  port: number;
  /** `--relay-auth-file`: AUTH after STARTTLS; null for none. */
  credentials: RelayCredentials | null;
  /** `require`: no TLS, no AUTH and no mail (the recipients are deferred); `may`: clear text when TLS is not to be had. */
  tls: 'require' | 'may';
}

export interface RelayCredentials {
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
  return { user: line.slice(0, colon), password: line.slice(colon + 1) };
}

/** The relay host settings, or null without `--relay-host` (then the other two flags must not be given). */
export function resolveRelayHost(hostText: string, authFile: string, tlsText: string): RelayHostConfig | null {
  if (tlsText !== '' && tlsText !== 'require' && tlsText !== 'may') throw new ConfigError(`--relay-tls: "${tlsText}" is not require or may`);
  if (hostText === '') {
    if (authFile !== '') throw new ConfigError('--relay-auth-file needs --relay-host');
    if (tlsText !== '') throw new ConfigError('--relay-tls needs --relay-host');
    return null;
  }
  const { host, port } = parseRelayHost(hostText);
  const credentials = authFile === '' ? null : readRelayCredentials(authFile);
  const tls = tlsText === '' ? (credentials ? 'require' : 'may') : tlsText;
  return { host, port, credentials, tls };
}
