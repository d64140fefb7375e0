import type { PolicyPath } from './policy-lines.js';
import type { Parsed } from './policy-values.js';
import { parseDuration } from './units.js';

/**
 * Reading a parsed TOML document's values into typed fields: each reader returns the value or a problem, and
 * every problem goes to `report` with the key's path, so one run of `policy check` lists them all.
 */
export type Table = Record<string, unknown>;
export type Report = (path: PolicyPath, message: string) => void;

export const isTable = (value: unknown): value is Table => typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);

export function asString(value: unknown): Parsed<string> {
  return typeof value === 'string' ? { ok: true, value } : { ok: false, problem: 'must be a string in quotes' };
}

export function asCount(value: unknown): Parsed<number> {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= 1_000_000_000
    ? { ok: true, value }
    : { ok: false, problem: 'must be a whole number of at least 1' };
}

export function asDuration(value: unknown): Parsed<number> {
  const text = asString(value);
  if (!text.ok) return text;
  try {
    return { ok: true, value: parseDuration(text.value) };
  } catch {
    return { ok: false, problem: `"${text.value}" is not a duration ("500ms", "30s", "5m", "2h", "5d")` };
  }
}

export const fromString = <T>(parseText: (text: string) => Parsed<T>) => (value: unknown): Parsed<T> => {
  const text = asString(value);
  return text.ok ? parseText(text.value) : text;
};
/** Reads the keys a table may have; every other key is a problem (a typo must never be silently ignored). */
export function readFields<T extends object>(
  table: Table,
  path: PolicyPath,
  fields: { [K in keyof T]?: (value: unknown) => Parsed<T[K]> },
  report: Report,
  also: readonly string[] = [],
): T {
  const result = {} as T;
  for (const [key, value] of Object.entries(table)) {
    const field = (fields as Record<string, ((value: unknown) => Parsed<unknown>) | undefined>)[key];
    if (!field) {
      if (!also.includes(key)) report([...path, key], `unknown key "${key}"${hint(Object.keys(fields).concat(also))}`);
      continue;
    }
    const parsed = field(value);
    if (parsed.ok) (result as Record<string, unknown>)[key] = parsed.value;
    else report([...path, key], `${key} ${parsed.problem.startsWith('"') ? `= ${parsed.problem}` : parsed.problem}`);
  }
  return result;
}

export const hint = (keys: string[]) => ` (one of: ${keys.join(', ')})`;
export function tableAt(value: unknown, path: PolicyPath, report: Report): Table {
  if (isTable(value)) return value;
  if (value !== undefined) report(path, `${path.join('.')} must be a table`);
  return {};
}

export function stringList(value: unknown, parseEntry: (text: string) => Parsed<string>, path: PolicyPath, report: Report): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    report(path, `${path[path.length - 1]} must be a non-empty list of strings`);
    return undefined;
  }
  const entries: string[] = [];
  for (const item of value) {
    const parsed = fromString(parseEntry)(item);
    if (parsed.ok) entries.push(parsed.value);
    else report(path, `${path[path.length - 1]}: ${parsed.problem}`);
  }
  return entries;
}
export const tableOrEmpty = (value: unknown): Table => (isTable(value) ? value : {});
