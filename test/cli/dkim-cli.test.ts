import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { runMtaQueue, type MtaQueueResult } from '../helpers/daemon-process.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { run, toolAvailable, TOOLS, transcript } from '../helpers/external-clients.js';
import { tempDir } from '../helpers/temp.js';

/** The character-strings of a zone-file line `NAME. IN TXT ( "…" "…" )`, parsed here, not by our code. */
function zoneLine(line: string): { name: string; strings: string[] } {
  const match = /^(\S+)\. IN TXT \( ((?:"[^"\\]*" )+)\)$/.exec(line.trim());
  assert.ok(match, `not a zone-file TXT line: ${line}`);
  return { name: match[1]!, strings: [...match[2]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!) };
}

/** `p=` of a record (RFC 6376 tag syntax, whitespace removed), decoded as the public key it publishes. */
function publishedKey(record: string, type: 'rsa' | 'ed25519'): KeyObject {
  const tags = Object.fromEntries(record.split(';').filter((spec) => spec.trim()).map((spec) => spec.split('=').map((part) => part.trim()) as [string, string]));
  assert.equal(tags.v, 'DKIM1');
  assert.equal(tags.k, type);
  const data = Buffer.from(tags.p!, 'base64');
  if (type === 'rsa') return createPublicKey({ key: data, format: 'der', type: 'spki' });
  assert.equal(data.length, 32, 'RFC 8463: the bare 32-byte key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: data.toString('base64url') }, format: 'jwk' });
}

/** dkimpy signs a message with the private key file and verifies it against the printed record. */
const DKIMPY_SCRIPT = `
import json, sys, dkim
p = json.load(sys.stdin)
message = b'From: a@' + p['domain'].encode() + b'\\r\\nTo: b@example.org\\r\\nSubject: hi\\r\\n\\r\\nbody\\r\\n'
algorithm = b'ed25519-sha256' if p['type'] == 'ed25519' else b'rsa-sha256'
signature = dkim.sign(message, p['selector'].encode(), p['domain'].encode(), p['privkey'].encode(), signature_algorithm=algorithm)
record = p['record'].encode()
def dnsfunc(name, timeout=5):
    return record if name.decode().rstrip('.') == p['name'] else None
def verifies(signed):
    try:
        return dkim.DKIM(signed).verify(dnsfunc=dnsfunc)
    except dkim.ValidationError:  # a body-hash mismatch raises instead of returning False
        return False
ok = verifies(signature + message)
tampered = verifies(signature + message.replace(b'body', b'BODY'))
print(json.dumps({'ok': ok, 'tampered': tampered}))
`;

describe('mta-queue dkim', () => {
  let dns: DnsServer;
  let dir: string;
  let cleanup: () => Promise<void>;
  const common = () => ['--dkim-dir', dir, '--dns-servers', dns.address];
  const dkim = (...args: string[]) => runMtaQueue(['dkim', ...args, ...common()]);
  const keygen = async (domain: string, selector: string, extra: string[] = []) => {
    const result = await dkim('keygen', domain, '--selector', selector, ...extra);
    assert.equal(result.code, 0, result.stderr);
    return zoneLine(result.stdout);
  };
  /** What an operator does with the printed line: put it in the zone. */
  const publish = (line: { name: string; strings: string[] }) => dns.setZone(line.name, { txt: [line.strings] });
  const states = async () => {
    const result = await dkim('list', '--json');
    assert.equal(result.code, 0, result.stderr);
    return Object.fromEntries((JSON.parse(result.stdout) as { domain: string; selector: string; state: string }[]).map((key) => [`${key.domain}/${key.selector}`, key.state]));
  };
  /** A refusal: exit 1 and exactly one line on stderr. */
  const refused = (result: MtaQueueResult, why: RegExp) => {
    assert.equal(result.code, 1, `${result.stdout}${result.stderr}`);
    assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, why);
  };

  before(async () => {
    dns = await startDnsServer({});
  });
  after(() => dns.close());
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('mta-dkim-cli-'));
    dir = path.join(dir, 'dkim');
  });
  afterEach(() => cleanup());

  for (const type of ['rsa', 'ed25519'] as const) {
    test(`keygen ${type}: a pending key, 0600 in 0700, and a zone-file line whose key is the private key's`, async (t) => {
      const line = await keygen('Shop.Example', 'S2026', ['--type', type]);
      assert.equal(line.name, 's2026._domainkey.shop.example');
      assert.ok(line.strings.every((s) => s.length <= 255));
      assert.equal(line.strings[0], `v=DKIM1; k=${type}; `);
      const record = line.strings.join('');
      const pemFile = path.join(dir, 'shop.example', 's2026.pem');
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      assert.equal((await stat(path.join(dir, 'shop.example'))).mode & 0o777, 0o700);
      assert.equal((await stat(pemFile)).mode & 0o777, 0o600);
      assert.equal((await stat(path.join(dir, 'shop.example', 's2026.json'))).mode & 0o777, 0o600);
      const pem = await readFile(pemFile, 'utf8');
      assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8');
      const privateKey = createPrivateKey(pem);
      assert.equal(privateKey.asymmetricKeyType, type);
      if (type === 'rsa') assert.equal(privateKey.asymmetricKeyDetails?.modulusLength, 2048);
      const data = Buffer.from('what the private key signs');
      assert.ok(verify(type === 'rsa' ? 'sha256' : null, data, publishedKey(record, type), sign(type === 'rsa' ? 'sha256' : null, data, privateKey)), 'the printed key verifies the private key');
      assert.deepEqual(await states(), { 'shop.example/s2026': 'pending' });

      if (!(await toolAvailable(t, TOOLS.dkimpy))) return;
      // dkimpy takes an ed25519 private key as the base64 32-byte seed, an rsa one as PEM.
      const privkey = type === 'rsa' ? pem : Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url').toString('base64');
      const result = await run('/usr/bin/python3', ['-c', DKIMPY_SCRIPT], JSON.stringify({ domain: 'shop.example', selector: 's2026', name: line.name, type, privkey, record }));
      assert.equal(result.code, 0, transcript(result));
      assert.deepEqual(JSON.parse(result.stdout), { ok: true, tampered: false }, transcript(result));
    });
  }

  test('keygen never replaces an existing selector', async () => {
    await keygen('shop.example', 's1');
    const before = await readFile(path.join(dir, 'shop.example', 's1.pem'), 'utf8');
    refused(await dkim('keygen', 'shop.example', '--selector', 's1', '--type', 'ed25519'), /^mta-queue: shop\.example: selector s1 already exists/);
    assert.equal(await readFile(path.join(dir, 'shop.example', 's1.pem'), 'utf8'), before);
    assert.deepEqual((await readdir(path.join(dir, 'shop.example'))).sort(), ['s1.json', 's1.pem']);
  });

  test('activate refuses while the record is missing or different, and succeeds once it is published', async () => {
    const line = await keygen('shop.example', 'fresh');
    refused(await dkim('activate', 'shop.example', 'fresh'), /shop\.example fresh not activated: missing: .* at fresh\._domainkey\.shop\.example/);
    // A record for another key (a stale copy, a typo in p=).
    const other = await keygen('other.example', 'x');
    dns.setZone(line.name, { txt: [other.strings] });
    refused(await dkim('activate', 'shop.example', 'fresh'), /not activated: different: p= is another key/);
    dns.setZone(line.name, { txt: ['v=DKIM1; k=rsa; p='] });
    refused(await dkim('activate', 'shop.example', 'fresh'), /not activated: different: the record is revoked/);
    dns.setZone(line.name, { txt: ['garbage'] });
    refused(await dkim('activate', 'shop.example', 'fresh'), /not activated: unparseable/);
    assert.equal((await states())['shop.example/fresh'], 'pending', 'refusals changed nothing');
    publish(line);
    const result = await dkim('activate', 'shop.example', 'fresh');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'shop.example fresh active\n');
    assert.equal((await states())['shop.example/fresh'], 'active');
    assert.ok(dns.queries.some((q) => q.name === 'fresh._domainkey.shop.example' && q.type === 'TXT'));
  });

  test('activate --force skips the DNS check and says so', async () => {
    await keygen('shop.example', 'blind');
    const queries = dns.queries.length;
    const result = await dkim('activate', 'shop.example', 'blind', '--force');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /--force: the DNS record blind\._domainkey\.shop\.example was not checked/);
    assert.equal(dns.queries.length, queries, 'no look-up');
    assert.equal((await states())['shop.example/blind'], 'active');
  });

  test('rotation: pending → active → retiring → retired → removed, with check along the way', async () => {
    const old = await keygen('shop.example', 'old');
    const ed = await keygen('shop.example', 'ed', ['--type', 'ed25519']);
    publish(old);
    publish(ed);
    assert.equal((await dkim('activate', 'shop.example', 'old')).code, 0);
    assert.equal((await dkim('activate', 'shop.example', 'ed')).code, 0);
    let check = await dkim('check');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /^shop\.example old \(rsa-2048, active\): published: published and matching the private key at old\._domainkey\.shop\.example$/m);

    const next = await keygen('shop.example', 'next');
    assert.deepEqual(await states(), { 'shop.example/ed': 'active', 'shop.example/next': 'pending', 'shop.example/old': 'active' }, 'keygen activates nothing');
    check = await dkim('check', 'shop.example');
    assert.equal(check.code, 0, 'a pending key not yet published does not fail check');
    assert.match(check.stdout, /^shop\.example next \(rsa-2048, pending\): missing/m);

    publish(next);
    const activated = await dkim('activate', 'shop.example', 'next');
    assert.equal(activated.code, 0, activated.stderr);
    assert.match(activated.stdout, /^shop\.example next active; old retiring/);
    assert.deepEqual(await states(), { 'shop.example/ed': 'active', 'shop.example/next': 'active', 'shop.example/old': 'retiring' }, 'the ed25519 key of the same domain keeps signing');

    refused(await dkim('remove', 'shop.example', 'old'), /old is retiring; only a retired key can be removed/);
    const retired = await dkim('retire', 'shop.example', 'old');
    assert.equal(retired.code, 0, retired.stderr);
    assert.equal((await states())['shop.example/old'], 'retired');
    refused(await dkim('activate', 'shop.example', 'old'), /retired; a retired key is never used again/);
    const removed = await dkim('remove', 'shop.example', 'old');
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /old\._domainkey\.shop\.example can be deleted/);
    assert.deepEqual(await states(), { 'shop.example/ed': 'active', 'shop.example/next': 'active' });
    assert.deepEqual((await readdir(path.join(dir, 'shop.example'))).filter((name) => name.startsWith('old')), []);
  });

  test('a hostile TXT record cannot forge lines in check or activate output: CR and LF in k= or v= come out escaped', async () => {
    const line = await keygen('shop.example', 'hostile');
    // The record as published, its first string (`v=DKIM1; k=rsa; `) replaced: each string stays within 255 bytes.
    const [, ...keyData] = line.strings;
    const forged = 'mta-queue: shop.example hostile active';
    for (const [head, shown] of [
      [`v=DKIM1; k=rsa\r\n${forged}; `, /different: k=rsa\\r\\nmta-queue: shop\.example hostile active, the key is rsa/],
      [`v=DKIM1\n${forged}; k=rsa; `, /unparseable: not a DKIM key record: v=DKIM1\\nmta-queue: shop\.example hostile active \(must be/],
    ] as const) {
      dns.setZone(line.name, { txt: [[head, ...keyData]] });
      const check = await dkim('check');
      assert.equal(check.stdout.trimEnd().split('\n').length, 1, check.stdout);
      assert.match(check.stdout, shown);
      assert.doesNotMatch(check.stdout + check.stderr, /\r|^mta-queue: shop\.example hostile active/m);
      const activate = await dkim('activate', 'shop.example', 'hostile');
      refused(activate, shown);
      assert.doesNotMatch(activate.stdout + activate.stderr, /\r|^mta-queue: shop\.example hostile active/m);
    }
    assert.equal((await states())['shop.example/hostile'], 'pending');
  });

  test('check: exit 1 when an active key is not published, or a named domain has no active key', async () => {
    const line = await keygen('shop.example', 'k1');
    assert.equal((await dkim('activate', 'shop.example', 'k1', '--force')).code, 0);
    let check = await dkim('check');
    assert.equal(check.code, 1, check.stdout);
    assert.match(check.stdout, /^shop\.example k1 \(rsa-2048, active\): missing: no TXT record/m);
    publish(line);
    check = await dkim('check');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    check = await dkim('check', 'nokeys.example');
    assert.equal(check.code, 1);
    assert.match(check.stderr, /nokeys\.example has no active key/);
  });

  test('list: a table for people, exact JSON for scripts', async () => {
    assert.equal((await dkim('list')).stdout, `no DKIM keys in ${dir}\n`, 'a missing directory holds no keys');
    await keygen('shop.example', 'a1', ['--type', 'ed25519']);
    const table = await dkim('list');
    assert.equal(table.code, 0);
    assert.match(table.stdout, /^DOMAIN\s+SELECTOR\s+TYPE\s+BITS\s+STATE\s+CREATED\s+ACTIVATED\nshop\.example\s+a1\s+ed25519\s+-\s+pending\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+-\n$/);
    const [key] = JSON.parse((await dkim('list', '--json')).stdout);
    assert.deepEqual(Object.keys(key), ['domain', 'selector', 'type', 'bits', 'state', 'created', 'activated', 'retired']);
    assert.equal(typeof key.created, 'number');
  });

  test('dkim without a subcommand: the list of subcommands, exit 2 (bad usage); --help exits 0', async () => {
    const bare = await runMtaQueue(['dkim']);
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /keygen \[options\] <domain>/);
    assert.equal((await runMtaQueue(['dkim', '--help'])).code, 0);
    assert.equal((await runMtaQueue(['dkim', 'keygen', '--help'])).code, 0);
  });

  const usage: [string, string[], RegExp][] = [
    ['a selector with a path in it', ['keygen', 'shop.example', '--selector', '../../etc/x'], /--selector: "..\/..\/etc\/x" is not a DKIM selector/],
    ['a domain with a path in it', ['keygen', '../shop.example', '--selector', 's1'], /DOMAIN: "..\/shop.example" is not a domain name/],
    ['a selector with a slash (activate)', ['activate', 'shop.example', 'a/b'], /SELECTOR: "a\/b" is not a DKIM selector/],
    ['no --selector', ['keygen', 'shop.example'], /required option '--selector <sel>' not specified/],
    ['an unknown type', ['keygen', 'shop.example', '--selector', 's1', '--type', 'dsa'], /--type/],
    ['1024 bits', ['keygen', 'shop.example', '--selector', 's1', '--bits', '1024'], /--bits: "1024" is not one of 2048, 3072, 4096/],
    ['--bits for ed25519', ['keygen', 'shop.example', '--selector', 's1', '--type', 'ed25519', '--bits', '2048'], /--bits applies to rsa keys only/],
    ['a bad DNS server', ['check', '--dns-servers', 'dns.example'], /--dns-servers: "dns.example" is not IP or IP:PORT/],
    ['an unknown subcommand', ['rotate', 'shop.example'], /unknown command 'rotate'/],
  ];
  for (const [name, args, message] of usage) {
    test(`bad usage, exit 2 and one line: ${name}`, async () => {
      const result = await runMtaQueue(['dkim', ...args, '--dkim-dir', dir]);
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, /^mta-queue: /);
      assert.match(result.stderr, message);
      await assert.rejects(stat(dir), 'nothing written');
    });
  }
});
