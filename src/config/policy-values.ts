import net from 'node:net';

/**
 * The value syntaxes of the policy file (shared/design/cli.md, "Policy file"), each a pure function from text to a
 * value or a problem text. They return the problem instead of throwing so that `policy check` can report every
 * problem of a file, each with its line, in one run.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const problem = <T>(text: string): Parsed<T> => ({ ok: false, problem: text });

export const RATE_PERIODS = { sec: 1000, min: 60_000, hour: 3_600_000, day: 86_400_000 } as const;

/** `count` tokens per `periodMs`, at most `burst` at once (GCRA: one token every periodMs/count). */
export interface Rate {
  count: number;
  periodMs: number;
  burst: number;
  /** As written, for `policy show`. */
  text: string;
}

/** `"100/min"`, `"1000/hour, max_burst=10"`; the default burst of 1 spaces the tokens evenly. */
export function parseRate(text: string): Parsed<Rate> {
  const match = /^\s*(\d{1,9})\s*\/\s*(sec|min|hour|day)\s*(?:,\s*max_burst\s*=\s*(\d{1,9})\s*)?$/.exec(text);
  if (!match) return problem(`"${text}" is not a rate ("N/sec", "N/min", "N/hour" or "N/day", optionally ", max_burst=N")`);
  const count = Number(match[1]);
  const burst = match[3] === undefined ? 1 : Number(match[3]);
  if (count < 1) return problem(`"${text}": a rate needs at least 1 per period`);
  if (burst < 1) return problem(`"${text}": max_burst must be at least 1`);
  return ok({ count, periodMs: RATE_PERIODS[match[2] as keyof typeof RATE_PERIODS], burst, text: text.trim() });
}

/** One window of a user's quota: at most `count` recipients within any sliding `windowMs`. */
export interface QuotaWindow {
  count: number;
  windowMs: number;
}

/** `"1000/hour, 20000/day"`: counts per sliding window, each usable all at once (not rates). */
export function parseQuota(text: string): Parsed<QuotaWindow[]> {
  const parts = text.split(',').map((part) => part.trim());
  const windows: QuotaWindow[] = [];
  for (const part of parts) {
    const match = /^(\d{1,9})\s*\/\s*(hour|day)$/.exec(part);
    if (!match || Number(match[1]) < 1) return problem(`"${text}" is not a quota ("N/hour", "N/day" or both, comma-separated, N ≥ 1)`);
    const windowMs = RATE_PERIODS[match[2] as 'hour' | 'day'];
    if (windows.some((window) => window.windowMs === windowMs)) return problem(`"${text}" names the ${match[2]} twice`);
    windows.push({ count: Number(match[1]), windowMs });
  }
  return ok(windows);
}

/** `"8%"` or `"0.5%"` → a fraction in (0, 1]. */
export function parsePercent(text: string): Parsed<number> {
  const match = /^\s*(\d{1,3}(?:\.\d{1,3})?)\s*%\s*$/.exec(text);
  const value = match ? Number(match[1]) : NaN;
  if (!(value > 0 && value <= 100)) return problem(`"${text}" is not a percentage above 0 and at most 100 ("8%")`);
  return ok(value / 100);
}

/** `"2026-12-01"` → that day's start in UTC, epoch ms (warm-up days are UTC days). */
export function parseUtcDay(text: string): Parsed<number> {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text.trim());
  const time = match ? Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])) : NaN;
  // Date.UTC rolls 2026-02-31 over into March: a date that does not round-trip is not a date.
  if (!match || new Date(time).toISOString().slice(0, 10) !== text.trim()) return problem(`"${text}" is not a date (YYYY-MM-DD)`);
  return ok(time);
}

/** `"50,100,500"` → messages per provider per day for day 1..N of a warm-up, each at least 1. */
export function parseWarmup(text: string): Parsed<number[]> {
  const days = text.split(',').map((part) => part.trim());
  if (days.length > 366 || !days.every((day) => /^\d{1,9}$/.test(day) && Number(day) >= 1)) {
    return problem(`"${text}" is not a warm-up schedule (daily counts, comma-separated, e.g. "50,100,500")`);
  }
  return ok(days.map(Number));
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A DNS name in lower-case A-label form, at least two labels (a sender domain, an EHLO name). */
export function isDomainName(text: string): boolean {
  return text.length <= 253 && text.includes('.') && text.split('.').every((label) => LABEL.test(label));
}

/** An MX suffix of the provider table: `.google.com` (leading dot, so `evilgoogle.com` does not match). */
export function parseMxSuffix(text: string): Parsed<string> {
  const suffix = text.trim().toLowerCase();
  if (!suffix.startsWith('.') || !isDomainName(suffix.slice(1))) return problem(`"${text}" is not an MX suffix (".google.com")`);
  return ok(suffix);
}

/** A `senders` entry: a domain (`example.com`) or an address (`bounces@mail.example.org`), compared lower-cased. */
export function parseSenderEntry(text: string): Parsed<string> {
  const entry = text.trim().toLowerCase();
  const at = entry.lastIndexOf('@');
  const domain = at < 0 ? entry : entry.slice(at + 1);
  const local = at < 0 ? '' : entry.slice(0, at);
  if (!isDomainName(domain) || (at >= 0 && !/^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$/.test(local))) {
    return problem(`"${text}" is not a domain or an address`);
  }
  return ok(entry);
}

/** A source address of a pool: an IPv4 or IPv6 literal to bind. */
export function parseSourceAddress(text: string): Parsed<string> {
  const address = text.trim().toLowerCase();
  if (net.isIP(address) === 0) return problem(`"${text}" is not an IP address`);
  return ok(address);
}
