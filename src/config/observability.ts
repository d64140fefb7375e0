import net from 'node:net';
import { ConfigError } from '../shared/errors.js';
import type { LogFileOptions } from '../shared/logger.js';
import type { MetricsAddress } from '../shared/metrics.js';
import { LOG_LEVELS } from '../shared/logger.js';
import { parseDuration, parsePort, parsePositiveInteger, parseSize } from './units.js';

/** A flag value that must be one of a few words. */
export function oneOf<T extends string>(text: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(text)) throw new ConfigError(`${what}: "${text}" is not one of ${allowed.join(', ')}`);
  return text as T;
}

/** Logging, metrics and shutdown flags, the same for both daemons. */
export const OBSERVABILITY_FLAG_DEFAULTS = {
  shutdownTimeout: '30s',
  logLevel: 'info',
  logFormat: 'json',
  logFile: undefined,
  logRotate: 'size',
  logMaxSize: '100m',
  logKeep: '7',
  metrics: undefined,
} as const;

export interface ObservabilityConfig {
  /** On SIGTERM, how long sessions in DATA (mta-server) or deliveries in flight (mta-queue) may take to finish. */
  shutdownTimeout: number;
  logLevel: string;
  logFormat: 'json' | 'pretty';
  /** null: JSON lines on stdout (journald). */
  logFile: LogFileOptions | null;
  /** null: no metrics endpoint. */
  metrics: MetricsAddress | null;
}

type Name = keyof typeof OBSERVABILITY_FLAG_DEFAULTS;

export function resolveObservability(value: (name: Name) => string | undefined): ObservabilityConfig {
  const text = (name: Name) => value(name) ?? OBSERVABILITY_FLAG_DEFAULTS[name] ?? '';
  const logFormat = oneOf(text('logFormat'), ['json', 'pretty'] as const, '--log-format');
  const file = text('logFile');
  if (file && logFormat === 'pretty') throw new ConfigError('--log-format pretty is for a terminal; use json (the default) with --log-file');
  const rotate = text('logRotate');
  if (rotate !== 'size' && rotate !== 'daily' && rotate !== 'both') throw new ConfigError(`--log-rotate: "${rotate}" is not one of size, daily, both`);
  const maxSize = parseSize(text('logMaxSize'), '--log-max-size');
  const keep = parsePositiveInteger(text('logKeep'), '--log-keep', 10_000);
  return {
    shutdownTimeout: parseDuration(text('shutdownTimeout'), '--shutdown-timeout'),
    logLevel: oneOf(text('logLevel'), LOG_LEVELS, '--log-level'),
    logFormat,
    logFile: file ? { path: file, maxSize: rotate === 'daily' ? null : maxSize, daily: rotate !== 'size', keep } : null,
    metrics: parseListenAddress(text('metrics'), '--metrics'),
  };
}

/**
 * `PORT` (on 127.0.0.1), `ADDR:PORT` or `[IPv6]:PORT`; empty or `off` for none. Only a written-out address
 * leaves loopback (`--metrics` has no authentication; `--web` logs `web-exposed`).
 */
export function parseListenAddress(text: string, flag: string): MetricsAddress | null {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed === 'off') return null;
  if (/^\d+$/.test(trimmed)) return { host: '127.0.0.1', port: parsePort(trimmed, flag) };
  const match = /^(?:\[([0-9a-f:.]+)\]|([0-9.]+)):(\d+)$/i.exec(trimmed);
  const host = match?.[1] ?? match?.[2];
  if (!match || !host || (match[1] ? !net.isIPv6(host) : !net.isIPv4(host))) {
    throw new ConfigError(`${flag}: "${text}" is not PORT, ADDR:PORT or [IPv6]:PORT (e.g. 127.0.0.1:9587)`);
  }
  return { host, port: parsePort(match[3]!, flag) };
}
