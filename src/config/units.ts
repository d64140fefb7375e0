import net from 'node:net';
import { ConfigError } from '../shared/errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** `500ms`, `30s`, `5m`, `2h`, `5d` → milliseconds (shared/design/cli.md). */
export function parseDuration(text: string, what = 'duration'): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) throw new ConfigError(`${what}: "${text}" is not a duration (use 500ms, 30s, 5m, 2h or 5d)`);
  return Number(match[1]) * DURATION_UNITS[match[2]!]!;
}

/** A duration that must not be 0, for a deadline that 0 would turn into "fail at once". */
export function parsePositiveDuration(text: string, what: string): number {
  const ms = parseDuration(text, what);
  if (ms === 0) throw new ConfigError(`${what}: "${text}" must be longer than 0`);
  return ms;
}

/** Bytes, or `10k`, `25m`, `1g` → bytes. */
export function parseSize(text: string, what = 'size'): number {
  const match = /^(\d+)([kmg]?)$/i.exec(text.trim());
  const bytes = match ? Number(match[1]) * SIZE_UNITS[match[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new ConfigError(`${what}: "${text}" is not a size (use bytes, 10k or 25m)`);
  return bytes;
}

export function parsePositiveInteger(text: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) throw new ConfigError(`${what}: "${text}" is not a whole number from 1 to ${max}`);
  return value;
}

const SWITCH_VALUES: Record<string, boolean> = { yes: true, true: true, on: true, '1': true, no: false, false: false, off: false, '0': false };

/** An on/off flag's value, from its environment variable or `--flag=no`: yes/no, true/false, on/off, 1/0. */
export function parseSwitch(text: string, what: string): boolean {
  const value = SWITCH_VALUES[text.trim().toLowerCase()];
  if (value === undefined) throw new ConfigError(`${what}: "${text}" is not yes or no`);
  return value;
}

export function parsePort(text: string, what: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new ConfigError(`${what}: "${text}" is not a port number (0-65535)`);
  return value;
}

/**
 * `127.0.0.0/8,::1,10.1.2.3` → a BlockList; a bare address is a single host. Strict, since a network list decides
 * who may relay: `10.0.0.0/8/9`, a prefix with a leading zero or sign, a zone index (`fe80::1%eth0`) or an empty
 * item (`a,,b`, a trailing comma) is a mistake to report, not something to guess the meaning of.
 */
export function parseNetworks(text: string, what: string): net.BlockList {
  const list = new net.BlockList();
  for (const entry of text.split(',').map((part) => part.trim())) {
    const match = /^([0-9A-Fa-f.:]+)(?:\/(0|[1-9]\d{0,2}))?$/.exec(entry);
    const address = match?.[1] ?? '';
    const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
    const maxPrefix = family === 'ipv4' ? 32 : 128;
    const prefix = match?.[2] === undefined ? maxPrefix : Number(match[2]);
    if (!family || prefix > maxPrefix) {
      const why = entry === '' ? 'an empty item (two commas, or one at an end)' : `"${entry}" is not an address or a CIDR network such as 10.0.0.0/8 or 2001:db8::/32`;
      throw new ConfigError(`${what}: ${why}`);
    }
    list.addSubnet(address, prefix, family);
  }
  return list;
}
