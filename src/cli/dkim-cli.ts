import { generateKeyPair } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { promisify } from 'node:util';
import { Option, type Command } from 'commander';
import { parseDnsServer } from '../config/queue-config.js';
import { checkDkimRecord, type DkimRecordCheck, type TxtResolver } from '../dkim/dns-check.js';
import { dkimRecordName, parseDkimDomain, parseDkimSelector } from '../dkim/dkim-names.js';
import { dkimZoneFileLine } from '../dkim/dkim-record.js';
import { activateKey, removeKey, retireKey, type DkimTransition } from '../dkim/key-states.js';
import {
  createDkimKey,
  DEFAULT_DKIM_DIR,
  DKIM_KEY_TYPES,
  DkimKeyError,
  loadDkimKeys,
  removeDkimKeyFiles,
  writeDkimKeyRecords,
  type DkimKey,
  type DkimKeyRecord,
  type DkimKeyType,
} from '../dkim/key-store.js';
import { ConfigError } from '../shared/errors.js';
import { escapeForTerminal } from '../shared/terminal-escape.js';
import { envOption } from './run-cli.js';

/**
 * `mta-queue dkim keygen | list | check | activate | retire | remove`: the keys the signer uses, and their states
 * (src/dkim/key-states.ts). Safe while mta-queue runs: every change is an atomic file replacement the daemon
 * picks up on its next read of the directory. No command switches the signing key without being asked, and
 * `activate` refuses a key whose record is not published (Postal did switch silently, postal#2591).
 */

interface DirFlags {
  dkimDir?: string;
  dnsServers?: string;
}

const RSA_BITS = [2048, 3072, 4096];
const DNS_TIMEOUT_MS = 5000;
const out = (line: string) => void process.stdout.write(line + '\n');
const note = (line: string) => void process.stderr.write(`mta-queue: ${line}\n`);

function keyDir(flags: DirFlags): string {
  const dir = flags.dkimDir ?? DEFAULT_DKIM_DIR;
  if (dir === '') throw new ConfigError('--dkim-dir must not be empty');
  return dir;
}

function resolverFor(flags: DirFlags): TxtResolver {
  const servers = flags.dnsServers ? flags.dnsServers.split(',').map((server) => parseDnsServer(server.trim())) : null;
  const resolver = new Resolver({ timeout: DNS_TIMEOUT_MS, tries: 2 });
  if (servers) resolver.setServers(servers);
  return resolver;
}

/** The directory's keys; files that did not load get one warning line each and make `strict` callers fail. */
async function loadKeys(dir: string): Promise<{ keys: DkimKey[]; skipped: number }> {
  let skipped = 0;
  const keys = await loadDkimKeys(dir, ({ file, reason }) => {
    skipped++;
    note(`skipped ${file}: ${reason}`);
  });
  return { keys, skipped };
}

function withDirOptions(command: Command): Command {
  return command
    .addOption(envOption('--dkim-dir <dir>', `DKIM keys and their states [${DEFAULT_DKIM_DIR}]`))
    .addOption(envOption('--dns-servers <list>', 'DNS servers for the TXT look-ups, IP[:PORT],… [system resolver]'));
}

const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));
const describeKey = (key: DkimKeyRecord) => `${key.domain} ${key.selector} (${key.type}${key.bits ? `-${key.bits}` : ''}, ${key.state})`;

function applied(transition: DkimTransition): DkimKeyRecord[] {
  if (!transition.ok) throw new DkimKeyError('EDKIMSTATE', transition.reason);
  return transition.changes;
}

export function addDkimCommands(program: Command): void {
  const dkim = program.command('dkim').description('DKIM keys: generate, list, check the DNS records, activate, retire, remove (docs/dkim.md)');

  withDirOptions(
    dkim
      .command('keygen')
      .description('generate a key in state pending (it does not sign yet) and print the TXT record to publish')
      .argument('<domain>', 'the domain it signs for (d=), the From: domain of the mail')
      .requiredOption('--selector <sel>', 'selector (s=), e.g. 2026-01; the record goes to SEL._domainkey.DOMAIN')
      .addOption(new Option('--type <type>', 'key type').choices(DKIM_KEY_TYPES).default('rsa'))
      .addOption(new Option('--bits <n>', `RSA modulus length, ${RSA_BITS.join(', ')} [2048]`)),
  ).action(async (domainArg: string, flags: DirFlags & { selector: string; type: DkimKeyType; bits?: string }) => {
    const domain = parseDkimDomain(domainArg);
    const selector = parseDkimSelector(flags.selector, '--selector');
    const name = dkimRecordName(selector, domain);
    if (flags.type === 'ed25519' && flags.bits !== undefined) throw new ConfigError('--bits applies to rsa keys only (ed25519 keys have one size)');
    const bits = flags.type === 'rsa' ? Number(flags.bits ?? '2048') : null;
    // RFC 8301 §3.2: signers MUST use at least 1024 bits and SHOULD use 2048; below 2048 is refused here.
    if (bits !== null && !RSA_BITS.includes(bits)) throw new ConfigError(`--bits: "${flags.bits}" is not one of ${RSA_BITS.join(', ')}`);
    const dir = keyDir(flags);
    const { privateKey } = bits !== null ? await promisify(generateKeyPair)('rsa', { modulusLength: bits }) : await promisify(generateKeyPair)('ed25519');
    const record: DkimKeyRecord = { domain, selector, type: flags.type, bits, state: 'pending', created: Date.now(), activated: null, retired: null };
    await createDkimKey(dir, record, privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
    out(dkimZoneFileLine(name, { type: flags.type, privateKey }));
    note(`${describeKey(record)} created; publish the record above, then: mta-queue dkim activate ${domain} ${selector}`);
  });

  withDirOptions(dkim.command('list').description('every key: domain, selector, type, bits, state, created, activated').option('--json', 'one JSON array instead of a table')).action(
    async (flags: DirFlags & { json?: boolean }) => {
      const { keys } = await loadKeys(keyDir(flags));
      const records = keys.map(({ privateKey: _, ...record }) => record);
      if (flags.json) return out(JSON.stringify(records, null, 2));
      if (records.length === 0) return out(`no DKIM keys in ${keyDir(flags)}`);
      const rows = [['DOMAIN', 'SELECTOR', 'TYPE', 'BITS', 'STATE', 'CREATED', 'ACTIVATED'], ...records.map((r) => [r.domain, r.selector, r.type, String(r.bits ?? '-'), r.state, iso(r.created), iso(r.activated)])];
      const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
      for (const row of rows) out(row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd());
    },
  );

  withDirOptions(
    dkim
      .command('check')
      .description("look up each key's TXT record: published and matching? exit 0 when every active key's record matches")
      .argument('[domain]', 'only this domain (then it must have an active key)'),
  ).action(async (domainArg: string | undefined, flags: DirFlags) => {
    const domain = domainArg === undefined ? undefined : parseDkimDomain(domainArg);
    const resolver = resolverFor(flags);
    const { keys, skipped } = await loadKeys(keyDir(flags));
    const chosen = keys.filter((key) => domain === undefined || key.domain === domain);
    let failing = skipped;
    if (domain !== undefined && !chosen.some((key) => key.state === 'active')) {
      note(`${domain} has no active key`);
      failing++;
    }
    const checks = await Promise.all(chosen.map((key) => (key.state === 'retired' ? null : checkDkimRecord(resolver, key))));
    chosen.forEach((key, i) => {
      const check = checks[i];
      if (key.state === 'active' && check?.status !== 'published') failing++;
      out(`${describeKey(key)}: ${check ? checkLine(key, check) : 'not checked (retired: its record can be withdrawn)'}`);
    });
    if (chosen.length === 0 && domain === undefined) out(`no DKIM keys in ${keyDir(flags)}`);
    if (failing > 0) process.exitCode = 1;
  });

  withDirOptions(
    dkim
      .command('activate')
      .description('make a key sign for its domain, once its record is published and matches; the active key of the same type becomes retiring')
      .argument('<domain>')
      .argument('<selector>')
      .option('--force', 'skip the DNS check (the record must be published already, or receivers fail every signature)'),
  ).action(async (domainArg: string, selectorArg: string, flags: DirFlags & { force?: boolean }) => {
    const domain = parseDkimDomain(domainArg);
    const selector = parseDkimSelector(selectorArg);
    const dir = keyDir(flags);
    const resolver = flags.force ? null : resolverFor(flags);
    const { keys } = await loadKeys(dir);
    // The state is checked before DNS, so a refusal names the real reason (unknown, already active, retired).
    const changes = applied(activateKey(keys, domain, selector, Date.now()));
    const key = keys.find((k) => k.domain === domain && k.selector === selector)!;
    if (resolver) {
      const check = await checkDkimRecord(resolver, key);
      if (check.status !== 'published') throw new DkimKeyError('EDKIMDNS', `${domain} ${selector} not activated: ${checkLine(key, check)}`);
    } else {
      note(`--force: the DNS record ${dkimRecordName(selector, domain)} was not checked`);
    }
    await writeDkimKeyRecords(dir, changes);
    const retiring = changes.slice(1).map((record) => `; ${record.selector} retiring (keep its record published until mail signed with it has been delivered)`);
    out(`${domain} ${selector} active${retiring.join('')}`);
  });

  withDirOptions(dkim.command('retire').description('stop a key signing for good (active or retiring → retired)').argument('<domain>').argument('<selector>')).action(
    async (domainArg: string, selectorArg: string, flags: DirFlags) => {
      const domain = parseDkimDomain(domainArg);
      const selector = parseDkimSelector(selectorArg);
      const dir = keyDir(flags);
      const { keys } = await loadKeys(dir);
      const [record] = applied(retireKey(keys, domain, selector, Date.now()));
      const wasActive = keys.find((k) => k.domain === domain && k.selector === selector)!.state === 'active';
      await writeDkimKeyRecords(dir, [record!]);
      out(`${domain} ${selector} retired${wasActive ? `; ${domain} has no active ${record!.type} key now` : ''}`);
    },
  );

  withDirOptions(dkim.command('remove').description("delete a retired key's files").argument('<domain>').argument('<selector>')).action(
    async (domainArg: string, selectorArg: string, flags: DirFlags) => {
      const domain = parseDkimDomain(domainArg);
      const selector = parseDkimSelector(selectorArg);
      const dir = keyDir(flags);
      const { keys } = await loadKeys(dir);
      applied(removeKey(keys, domain, selector));
      await removeDkimKeyFiles(dir, domain, selector);
      out(`${domain} ${selector} removed; its TXT record ${dkimRecordName(selector, domain)} can be deleted`);
    },
  );
}

function checkLine(key: DkimKeyRecord, check: DkimRecordCheck): string {
  const advice = check.status === 'published' ? '' : key.state === 'retiring' ? ' (a retiring key must stay published until mail signed with it has been delivered)' : '';
  // The detail quotes the TXT record, whoever controls the zone wrote it: a CR/LF there would forge lines.
  return `${check.status}: ${escapeForTerminal(check.detail)} at ${check.name}${advice}`;
}
