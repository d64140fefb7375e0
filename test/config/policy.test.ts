import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { effectiveShaping, providerForMxHosts } from '../../src/config/effective-shaping.js';
import { builtInPolicy, parsePolicy, PolicyError, readPolicyFile } from '../../src/config/policy.js';
import { PolicyLines } from '../../src/config/policy-lines.js';
import { parsePercent, parseQuota, parseRate, parseSenderEntry, parseUtcDay, parseWarmup } from '../../src/config/policy-values.js';
import { ConfigError } from '../../src/shared/errors.js';
import { runMtaQueue } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/temp.js';

const value = <T>(parsed: { ok: true; value: T } | { ok: false; problem: string }): T => {
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.problem);
  return parsed.value;
};

test('rates: N per sec, min, hour or day with an optional burst (default 1); anything else is a problem', () => {
  for (const [text, count, periodMs, burst] of [
    ['100/min', 100, 60_000, 1],
    ['1/sec', 1, 1000, 1],
    ['20000/day', 20_000, 86_400_000, 1],
    ['1000/hour, max_burst=10', 1000, 3_600_000, 10],
    [' 5 / min ,max_burst = 2 ', 5, 60_000, 2],
  ] as const) {
    const rate = value(parseRate(text));
    assert.deepEqual([rate.count, rate.periodMs, rate.burst], [count, periodMs, burst], text);
  }
  for (const bad of ['10/fortnight', '0/min', '100', '/min', '1.5/min', '10/min, max_burst=0', '10/min, burst=2', '10/m', '-1/sec']) {
    assert.equal(parseRate(bad).ok, false, bad);
  }
});

test('quotas, percentages, days, warm-up schedules and sender entries', () => {
  assert.deepEqual(value(parseQuota('1000/hour, 20000/day')), [{ count: 1000, windowMs: 3_600_000 }, { count: 20_000, windowMs: 86_400_000 }]);
  for (const bad of ['1000/min', '1000/hour, 5/hour', '', '0/day', '10/hour,']) assert.equal(parseQuota(bad).ok, false, bad);
  assert.equal(value(parsePercent('8%')), 0.08);
  assert.equal(value(parsePercent('0.5%')), 0.005);
  for (const bad of ['8', '0%', '101%', 'x%', '-2%']) assert.equal(parsePercent(bad).ok, false, bad);
  assert.equal(value(parseUtcDay('2026-12-01')), Date.UTC(2026, 11, 1));
  for (const bad of ['2026-02-31', '2026-1-1', 'today']) assert.equal(parseUtcDay(bad).ok, false, bad);
  assert.deepEqual(value(parseWarmup('50, 100,500')), [50, 100, 500]);
  for (const bad of ['50,,100', '0,10', 'a']) assert.equal(parseWarmup(bad).ok, false, bad);
  assert.equal(value(parseSenderEntry('Example.COM')), 'example.com');
  assert.equal(value(parseSenderEntry('bounces@mail.example.org')), 'bounces@mail.example.org');
  for (const bad of ['bad@', 'localhost', '@example.com', 'a b@example.com']) assert.equal(parseSenderEntry(bad).ok, false, bad);
});

test('the built-in policy is valid and names the big providers', () => {
  const policy = builtInPolicy();
  for (const name of ['google', 'yahoo', 'outlook', 'office365', 'apple', 'orange', 'united-internet']) {
    assert.ok(policy.providers.some((provider) => provider.name === name), name);
  }
  assert.equal(policy.default.connection_limit, 10);
});

test('providers: every MX host of the site must end with one of the suffixes', () => {
  const policy = builtInPolicy();
  for (const [hosts, expected] of [
    [['gmail-smtp-in.l.google.com', 'alt1.gmail-smtp-in.l.google.com.'], 'google'],
    [['ASPMX.L.GOOGLE.COM'], 'google'],
    [['mta5.am0.yahoodns.net', 'mta6.am0.yahoodns.net'], 'yahoo'],
    [['hotmail-com.olc.protection.outlook.com'], 'outlook'],
    [['example-com.mail.protection.outlook.com'], 'office365'],
    [['mx01.mail.icloud.com'], 'apple'],
    [['mx-ha03.web.de', 'mx00.gmx.net'], 'united-internet'],
    [['aspmx.l.google.com', 'mx.example.com'], null],
    [['mx.evilgoogle.com'], null],
    [['google.com'], null],
    [[], null],
  ] as const) {
    assert.equal(providerForMxHosts(policy, hosts)?.name ?? null, expected, hosts.join(' '));
  }
});

test('a file adds to and overrides the built-in policy: default, then provider, then domain, per key', () => {
  const policy = parsePolicy(`
[shaping.default]
connection_limit = 4

[shaping.provider.google]
max_deliveries_per_connection = 10

[shaping.provider.acme]
match = [".mx.acme.example"]
connection_limit = 2

[shaping.domain."example.com"]
max_message_rate = "100/min, max_burst=10"

[[shaping.rule]]
match = "slow down"
action = "throttle"
max_message_rate = "1/min"
duration = "1h"
trigger = "3/hour"
`, 'policy.toml');
  const google = policy.providers.find((provider) => provider.name === 'google')!;
  assert.deepEqual(google.match, ['.google.com', '.googlemail.com'], 'an override without match keeps the built-in one');
  const shaping = effectiveShaping(policy, google, 'example.com');
  assert.equal(shaping.connection_limit, 4);
  assert.equal(shaping.max_deliveries_per_connection, 10);
  assert.equal(shaping.provider_connection_limit, 5);
  assert.equal(shaping.max_message_rate?.text, '100/min, max_burst=10');
  assert.equal(providerForMxHosts(policy, ['a.mx.acme.example'])?.name, 'acme');
  assert.equal(policy.rules[0]!.name, 'file rule 1', "the file's rules are tried first");
  assert.deepEqual(policy.rules[0]!.trigger, { kind: 'threshold', count: 3, periodMs: 3_600_000 });
  assert.ok(policy.rules[0]!.match.test('421 4.7.0 Please SLOW DOWN'), 'rules match case-insensitively');
  assert.ok(policy.rules.some((rule) => rule.action === 'suspend' && rule.match.test('421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred')));
});

test('every problem of a file is reported with its line: unknown keys, bad values, bad regexes, dangling pools', () => {
  const source = `# a policy with one problem per numbered line
[shaping.default]
connection_limit = 0
max_message_rate = "10/fortnight"

[shaping.provider.google]
colour = "red"

[shaping.provider.newcomer]
connection_limit = 3

[[shaping.rule]]
match = "(unclosed"
action = "suspend"
duration = "2h"

[[shaping.rule]]
match = "x"
action = "throttle"
duration = "1h"

[users.acelle]
senders = ["example.com", "bad@"]
pool = "nope"

[sources."203.0.113.9"]
ehlo = "mta.example.com"

[shapes]
`;
  const error = (() => {
    try {
      parsePolicy(source, 'policy.toml');
    } catch (caught) {
      return caught;
    }
    assert.fail('an invalid policy was accepted');
  })();
  assert.ok(error instanceof PolicyError && error instanceof ConfigError);
  const byLine = error.problems.map((problem) => [problem.line, problem.message.split(' ').slice(0, 3).join(' ')]);
  assert.deepEqual(byLine, [
    [3, 'connection_limit must be'],
    [4, 'max_message_rate = "10/fortnight"'],
    [7, 'unknown key "colour"'],
    [9, 'provider "newcomer" needs'],
    [13, 'match = "(unclosed"'],
    [17, 'a throttle rule'],
    [23, 'senders: "bad@" is'],
    [24, 'pool "nope" is'],
    [26, 'source 203.0.113.9 is'],
    [29, 'unknown section [shapes]'],
  ]);
  assert.match(error.message, /^policy\.toml:3: connection_limit must be a whole number of at least 1 \(and 9 more: mta-queue policy check policy\.toml\)$/);
});

test('a TOML syntax error names its line', () => {
  assert.throws(() => parsePolicy('[shaping.default]\nconnection_limit = 1\nconnection_limit = 2\n', 'p.toml'), (error: unknown) => {
    assert.ok(error instanceof PolicyError);
    assert.equal(error.problems[0]!.line, 3);
    assert.doesNotMatch(error.message, /\n/);
    return true;
  });
});

test('line locator: quoted and dotted keys, arrays of tables, nearest parent as a fallback', () => {
  const lines = new PolicyLines('[a]\nx = 1\n[[r]]\ny = 2\n[[r]]\ny = 3\n[d."e.f"]\nk.l = 4\n');
  assert.equal(lines.lineOf(['a', 'x']), 2);
  assert.equal(lines.lineOf(['r', 1, 'y']), 6);
  assert.equal(lines.lineOf(['d', 'e.f', 'k', 'l']), 8);
  assert.equal(lines.lineOf(['d', 'e.f', 'missing']), 7);
  assert.equal(lines.lineOf(['nowhere']), 1);
});

test('--policy: a missing default file is the built-in policy; a named missing file is a ConfigError', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await assert.rejects(readPolicyFile(path.join(dir, 'absent.toml')), (error: unknown) => error instanceof ConfigError && /cannot read .*absent\.toml \(ENOENT\)/.test(error.message));
  } finally {
    await cleanup();
  }
});

test('mta-queue policy check and show, as an operator runs them', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const good = path.join(dir, 'good.toml');
    const bad = path.join(dir, 'bad.toml');
    await writeFile(good, '[shaping.domain."example.com"]\nmax_message_rate = "100/min"\n\n[pools.bulk]\nsources = ["127.0.0.2"]\n\n[users.acelle]\npool = "bulk"\n');
    await writeFile(bad, '[shaping.default]\nmax_message_rate = "10/fortnight"\nconection_limit = 3\n');

    const valid = await runMtaQueue(['policy', 'check', good]);
    assert.equal(valid.code, 0, valid.stderr);
    assert.equal(valid.stdout, `${good}: valid\n`);

    const invalid = await runMtaQueue(['policy', 'check', bad]);
    assert.equal(invalid.code, 2);
    assert.deepEqual(invalid.errors, [
      `${bad}:2: max_message_rate = "10/fortnight" is not a rate ("N/sec", "N/min", "N/hour" or "N/day", optionally ", max_burst=N")`,
      `${bad}:3: unknown key "conection_limit" (one of: connection_limit, max_deliveries_per_connection, max_message_rate, max_connection_rate, consecutive_connection_failures_before_delay, connection_failure_delay)`,
    ]);

    const fromEnv = await runMtaQueue(['policy', 'show', '--json'], { MTA_POLICY: good });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    const shown = JSON.parse(fromEnv.stdout);
    assert.equal(shown.file, good);
    assert.deepEqual(shown.domains, [{ domain: 'example.com', shaping: { ...shown.default, max_message_rate: '100/min' } }]);
    assert.deepEqual(shown.pools, { bulk: ['127.0.0.2'] });
    assert.equal(shown.users.acelle.pool, 'bulk');

    const human = await runMtaQueue(['policy', 'show', '--policy', good]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^  google \(\.google\.com \.googlemail\.com\): .*provider_connection_limit=5/m);
    assert.match(human.stdout, /built-in rule 1: \/\\\[TSS\?04\\\]\/ → suspend 2h/);

    const refused = await runMtaQueue(['policy', 'show', '--policy', bad]);
    assert.equal(refused.code, 2);
    assert.equal(refused.errors.length, 1, 'one line, no stack trace');
    assert.match(refused.errors[0]!, /^mta-queue: .*bad\.toml:2: .* \(and 1 more: mta-queue policy check .*bad\.toml\)$/);
  } finally {
    await cleanup();
  }
});
