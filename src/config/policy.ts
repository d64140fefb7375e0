import { readFile } from 'node:fs/promises';
import { parse, TomlError } from 'smol-toml';
import { ConfigError } from '../shared/errors.js';
import { BUILT_IN_POLICY } from './policy-defaults.js';
import { PolicyLines, type PolicyPath } from './policy-lines.js';
import {
  isDomainName, parseMxSuffix, parsePercent, parseQuota, parseRate, parseSenderEntry, parseSourceAddress, parseUtcDay,
  parseWarmup, RATE_PERIODS, type Parsed, type QuotaWindow, type Rate,
} from './policy-values.js';
import { asCount, asDuration, asString, fromString, hint, readFields, stringList, tableAt, tableOrEmpty, type Report, type Table } from './policy-fields.js';

/**
 * The policy file (`--policy`, shared/design/cli.md "Policy file"): shaping per site, provider and domain,
 * back-off rules, source pools and per-user settings, as data. Parsing is pure: text in, a Policy or every
 * problem with its line out. The built-in policy (policy-defaults.ts) is read by the same code, and a file
 * adds to it and overrides it.
 */

/** Settings keyed by their policy-file names, so `policy show --json` and the file say the same thing. */
export interface ShapingSettings {
  connection_limit?: number;
  provider_connection_limit?: number;
  max_deliveries_per_connection?: number;
  max_message_rate?: Rate;
  max_connection_rate?: Rate;
  consecutive_connection_failures_before_delay?: number;
  connection_failure_delay?: number;
}

export interface ProviderPolicy {
  name: string;
  /** MX suffixes: a site belongs to the provider when every one of its MX host names ends with one of them. */
  match: string[];
  shaping: ShapingSettings;
}

export type RuleTrigger = { kind: 'immediate' } | { kind: 'threshold'; count: number; periodMs: number };

export interface BackoffRule {
  /** Matched case-insensitively against the whole reply: code, enhanced code and text. */
  match: RegExp;
  action: 'suspend' | 'throttle';
  durationMs: number;
  trigger: RuleTrigger;
  /** For `throttle`: the settings that replace the site's while it lasts. */
  shaping: ShapingSettings;
  /** `file rule N` or `built-in rule N` (1-based): how logs and `policy show` name it. */
  name: string;
}

export interface SourcePolicy {
  ehlo?: string;
  warmupStart?: number;
  warmup?: number[];
}

export interface UserPolicy {
  senders?: string[];
  quota?: QuotaWindow[];
  maxBounceRate?: number;
  bounceWindow?: number;
  pool?: string;
}

export interface Policy {
  default: ShapingSettings;
  providers: ProviderPolicy[];
  domains: Map<string, ShapingSettings>;
  /** The file's rules first, then the built-in ones: the first that matches a reply applies. */
  rules: BackoffRule[];
  pools: Map<string, string[]>;
  sources: Map<string, SourcePolicy>;
  users: Map<string, UserPolicy>;
  senders: Map<string, { pool: string }>;
}

export interface PolicyProblem {
  line: number;
  message: string;
}

/** A policy file that cannot be used; `problems` has each one with its line, as `policy check` prints them. */
export class PolicyError extends ConfigError {
  constructor(readonly file: string, readonly problems: PolicyProblem[]) {
    const first = problems[0]!;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more: mta-queue policy check ${file})` : '';
    super(`${file}:${first.line}: ${first.message}${more}`);
  }
}


const SHAPING_FIELDS: { [K in keyof ShapingSettings]-?: (value: unknown) => Parsed<ShapingSettings[K]> } = {
  connection_limit: asCount,
  provider_connection_limit: asCount,
  max_deliveries_per_connection: asCount,
  max_message_rate: fromString(parseRate),
  max_connection_rate: fromString(parseRate),
  consecutive_connection_failures_before_delay: asCount,
  connection_failure_delay: asDuration,
};

type ShapingKey = keyof ShapingSettings;
const SITE_KEYS = (Object.keys(SHAPING_FIELDS) as ShapingKey[]).filter((key) => key !== 'provider_connection_limit');


function pick<K extends ShapingKey>(keys: readonly K[]) {
  return Object.fromEntries(keys.map((key) => [key, SHAPING_FIELDS[key]])) as { [P in K]: (typeof SHAPING_FIELDS)[P] };
}


function readRule(table: Table, path: PolicyPath, name: string, report: Report): BackoffRule | null {
  const fields = readFields<{ match: RegExp; action: BackoffRule['action']; duration: number; trigger: RuleTrigger } & ShapingSettings>(table, path, {
    match: fromString((text) => {
      try {
        return { ok: true, value: new RegExp(text, 'i') };
      } catch (error) {
        return { ok: false, problem: `"${text}" is not a regular expression (${(error as Error).message})` };
      }
    }),
    action: fromString((text) => (text === 'suspend' || text === 'throttle' ? { ok: true, value: text } : { ok: false, problem: `"${text}" is not "suspend" or "throttle"` })),
    duration: asDuration,
    trigger: fromString((text): Parsed<RuleTrigger> => {
      if (text === 'immediate') return { ok: true, value: { kind: 'immediate' } };
      const match = /^(\d{1,6})\/hour$/.exec(text.trim());
      if (match && Number(match[1]) >= 1) return { ok: true, value: { kind: 'threshold', count: Number(match[1]), periodMs: RATE_PERIODS.hour } };
      return { ok: false, problem: `"${text}" is not "immediate" or "N/hour"` };
    }),
    ...pick(SITE_KEYS),
  }, report);
  const { match, action, duration, trigger, ...shaping } = fields;
  for (const key of ['match', 'action', 'duration']) if (table[key] === undefined) report(path, `a rule needs ${key}`);
  const hasSettings = Object.keys(shaping).length > 0;
  if (action === 'throttle' && !hasSettings) report(path, `a throttle rule needs at least one of: ${SITE_KEYS.join(', ')}`);
  if (action === 'suspend' && hasSettings) report(path, `a suspend rule takes no shaping settings (${Object.keys(shaping).join(', ')})`);
  if (match === undefined || action === undefined || duration === undefined) return null;
  return { match, action, durationMs: duration, trigger: trigger ?? { kind: 'immediate' }, shaping, name };
}

const TOP_KEYS = ['shaping', 'pools', 'sources', 'users', 'senders'];
const SHAPING_SECTIONS = ['default', 'provider', 'domain', 'rule'];

/** Adds one document (the built-in policy, then a file) to `policy`; every problem goes to `report`. */
function mergeDocument(policy: Policy, document: Table, origin: string, report: Report): void {
  for (const key of Object.keys(document)) if (!TOP_KEYS.includes(key)) report([key], `unknown section [${key}]${hint(TOP_KEYS)}`);
  const shaping = tableAt(document.shaping, ['shaping'], report);
  for (const key of Object.keys(shaping)) if (!SHAPING_SECTIONS.includes(key)) report(['shaping', key], `unknown section [shaping.${key}]${hint(SHAPING_SECTIONS)}`);

  Object.assign(policy.default, readFields<ShapingSettings>(tableAt(shaping.default, ['shaping', 'default'], report), ['shaping', 'default'], pick(SITE_KEYS), report));

  for (const [name, value] of Object.entries(tableAt(shaping.provider, ['shaping', 'provider'], report))) {
    const path = ['shaping', 'provider', name];
    const table = tableAt(value, path, report);
    const settings = readFields<ShapingSettings>(table, path, SHAPING_FIELDS, report, ['match']);
    const known = policy.providers.find((provider) => provider.name === name);
    const match = table.match === undefined ? known?.match : stringList(table.match, parseMxSuffix, [...path, 'match'], report);
    if (!match) {
      if (table.match === undefined) report(path, `provider "${name}" needs match = [".mx-suffix.example"]`);
      continue;
    }
    if (known) Object.assign(known, { match, shaping: { ...known.shaping, ...settings } });
    else policy.providers.push({ name, match, shaping: settings });
  }

  for (const [domain, value] of Object.entries(tableAt(shaping.domain, ['shaping', 'domain'], report))) {
    const path = ['shaping', 'domain', domain];
    if (!isDomainName(domain)) report(path, `"${domain}" is not a domain name (lower-case A-labels)`);
    const settings = readFields<ShapingSettings>(tableAt(value, path, report), path, pick(SITE_KEYS), report);
    policy.domains.set(domain, { ...policy.domains.get(domain), ...settings });
  }

  const rules = shaping.rule === undefined ? [] : Array.isArray(shaping.rule) ? shaping.rule : (report(['shaping', 'rule'], 'rules are written [[shaping.rule]]'), []);
  const fileRules = rules.flatMap((value, index) => readRule(tableAt(value, ['shaping', 'rule', index], report), ['shaping', 'rule', index], `${origin} rule ${index + 1}`, report) ?? []);
  policy.rules.unshift(...fileRules);

  for (const [name, value] of Object.entries(tableAt(document.pools, ['pools'], report))) {
    const path = ['pools', name];
    const table = tableAt(value, path, report);
    readFields(table, path, {}, report, ['sources']);
    const sources = stringList(table.sources, parseSourceAddress, [...path, 'sources'], report);
    if (sources) policy.pools.set(name, sources);
  }

  for (const [address, value] of Object.entries(tableAt(document.sources, ['sources'], report))) {
    const path = ['sources', address];
    const parsedAddress = parseSourceAddress(address);
    if (!parsedAddress.ok) report(path, `[sources."${address}"]: ${parsedAddress.problem}`);
    const source = readFields<{ ehlo: string; warmup_start: number; warmup: number[] }>(tableAt(value, path, report), path, {
      ehlo: fromString((text) => (isDomainName(text.toLowerCase()) ? { ok: true, value: text.toLowerCase() } : { ok: false, problem: `"${text}" is not a host name` })),
      warmup_start: (day) => (day instanceof Date ? parseUtcDay(day.toISOString().slice(0, 10)) : fromString(parseUtcDay)(day)),
      warmup: fromString(parseWarmup),
    }, report);
    const raw = tableOrEmpty(value);
    if ((raw.warmup === undefined) !== (raw.warmup_start === undefined)) report(path, 'warmup and warmup_start go together');
    policy.sources.set(parsedAddress.ok ? parsedAddress.value : address, { ehlo: source.ehlo, warmupStart: source.warmup_start, warmup: source.warmup });
  }

  for (const [name, value] of Object.entries(tableAt(document.users, ['users'], report))) {
    const path = ['users', name];
    const table = tableAt(value, path, report);
    const user = readFields<{ quota: QuotaWindow[]; max_bounce_rate: number; bounce_window: number; pool: string }>(table, path, {
      quota: fromString(parseQuota),
      max_bounce_rate: fromString(parsePercent),
      bounce_window: asCount,
      pool: asString,
    }, report, ['senders']);
    const senders = table.senders === undefined ? undefined : stringList(table.senders, parseSenderEntry, [...path, 'senders'], report);
    policy.users.set(name, { senders, quota: user.quota, maxBounceRate: user.max_bounce_rate, bounceWindow: user.bounce_window, pool: user.pool });
  }

  for (const [domain, value] of Object.entries(tableAt(document.senders, ['senders'], report))) {
    const path = ['senders', domain];
    if (!isDomainName(domain)) report(path, `"${domain}" is not a domain name (lower-case A-labels)`);
    const sender = readFields<{ pool: string }>(tableAt(value, path, report), path, { pool: asString }, report);
    if (sender.pool === undefined) report(path, `[senders."${domain}"] needs pool`);
    else policy.senders.set(domain, { pool: sender.pool });
  }
}


/** Cross-references that only the whole policy can check: every pool named exists, every source is in a pool. */
function checkReferences(policy: Policy, document: Table, report: Report): void {
  for (const [name, user] of policy.users) {
    if (user.pool !== undefined && !policy.pools.has(user.pool)) report(['users', name, 'pool'], `pool "${user.pool}" is not defined in [pools]`);
  }
  for (const [domain, sender] of policy.senders) {
    if (!policy.pools.has(sender.pool)) report(['senders', domain, 'pool'], `pool "${sender.pool}" is not defined in [pools]`);
  }
  const pooled = new Set([...policy.pools.values()].flat());
  for (const address of Object.keys(tableOrEmpty(document.sources))) {
    if (!pooled.has(address.toLowerCase())) report(['sources', address], `source ${address} is in no pool`);
  }
}

function emptyPolicy(): Policy {
  return { default: {}, providers: [], domains: new Map(), rules: [], pools: new Map(), sources: new Map(), users: new Map(), senders: new Map() };
}

function parseDocument(source: string, file: string): Table {
  try {
    return parse(source) as Table;
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const message = error.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
    throw new PolicyError(file, [{ line: error.line, message }]);
  }
}

function merged(policy: Policy, source: string, file: string, origin: string): void {
  const document = parseDocument(source, file);
  const lines = new PolicyLines(source);
  const problems: PolicyProblem[] = [];
  mergeDocument(policy, document, origin, (path, message) => problems.push({ line: lines.lineOf(path), message }));
  checkReferences(policy, document, (path, message) => problems.push({ line: lines.lineOf(path), message }));
  if (problems.length > 0) throw new PolicyError(file, problems.sort((a, b) => a.line - b.line));
}

/**
 * The built-in policy alone (no `--policy` file, or the default file absent), with `flags` over its
 * [shaping.default]: `--max-connections-per-destination` sets connection_limit unless a file says otherwise.
 */
export function builtInPolicy(flags: ShapingSettings = {}): Policy {
  const policy = emptyPolicy();
  merged(policy, BUILT_IN_POLICY, 'built-in policy', 'built-in');
  Object.assign(policy.default, flags);
  return policy;
}

/** The built-in policy (and `flags`) with `source` (the text of `file`) added over it; PolicyError lists every problem. */
export function parsePolicy(source: string, file: string, flags: ShapingSettings = {}): Policy {
  const policy = builtInPolicy(flags);
  merged(policy, source, file, 'file');
  return policy;
}

export const DEFAULT_POLICY_FILE = '/etc/mta-relay/policy.toml';

/**
 * `--policy FILE`: a missing default file means the built-in policy alone; a named file that is missing or
 * unreadable is a ConfigError, as an invalid one is a PolicyError (exit 2 at start, `policy-invalid` on reload).
 */
export async function readPolicyFile(file: string | undefined, flags: ShapingSettings = {}): Promise<{ policy: Policy; file: string | null }> {
  const path = file ?? DEFAULT_POLICY_FILE;
  let source: string;
  try {
    source = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (file === undefined && code === 'ENOENT') return { policy: builtInPolicy(flags), file: null };
    throw new ConfigError(`--policy: cannot read ${path} (${code})`);
  }
  return { policy: parsePolicy(source, path, flags), file: path };
}

/** Settings in the policy file's own form (rates as written, durations as `Nms`): how a back-off keeps its throttle in the spool. */
export function shapingTable(settings: ShapingSettings): Record<string, string | number> {
  return Object.fromEntries(Object.entries(settings).map(([key, value]) => [key, typeof value === 'object' ? value.text : key === 'connection_failure_delay' ? `${value}ms` : value]));
}

/** The reverse of shapingTable, for a back-off read back from the spool: what does not parse is left out (and reported). */
export function parseShapingTable(table: Record<string, unknown>, report: (message: string) => void): ShapingSettings {
  return readFields<ShapingSettings>(table, [], SHAPING_FIELDS, (_, message) => report(message));
}
