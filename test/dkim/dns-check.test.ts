import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, test } from 'node:test';
import { checkDkimRecord } from '../../src/dkim/dns-check.js';
import { dkimTxtRecord, splitTxtRecord } from '../../src/dkim/dkim-record.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

const key = (selector: string) => ({ domain: 'shop.example', selector, type: 'rsa' as const, privateKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey });

describe('the DKIM record look-up, through a real resolver', () => {
  const ours = key('s1');
  const other = key('s2');
  let dns: DnsServer;
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  before(async () => {
    dns = await startDnsServer({
      // Published the way the zone-file line says: several character-strings, joined by the verifier.
      's1._domainkey.shop.example': { txt: [splitTxtRecord(dkimTxtRecord(ours))] },
      'wrong._domainkey.shop.example': { txt: [dkimTxtRecord(other).match(/.{1,255}/g)!] },
      'junk._domainkey.shop.example': { txt: ['hello world'] },
      'nodata._domainkey.shop.example': { a: ['192.0.2.1'] },
      'broken._domainkey.shop.example': { rcode: 'SERVFAIL' },
    });
    resolver.setServers([dns.address]);
  });
  after(() => dns.close());

  const cases: [string, string, RegExp][] = [
    ['s1', 'published', /published and matching/],
    ['wrong', 'different', /another key/],
    ['junk', 'unparseable', /not a tag=value list/],
    ['absent', 'missing', /NXDOMAIN/],
    ['nodata', 'missing', /NODATA/],
    ['broken', 'lookup-failed', /ESERVFAIL/],
  ];
  for (const [selector, status, detail] of cases) {
    test(`${selector}._domainkey.shop.example → ${status}`, async () => {
      const check = await checkDkimRecord(resolver, { ...ours, selector });
      assert.equal(check.name, `${selector}._domainkey.shop.example`);
      assert.equal(check.status, status, check.detail);
      assert.match(check.detail, detail);
    });
  }

  test('a TXT record of several strings reaches the check as those strings (the test server serves them so)', async () => {
    const txt = await resolver.resolveTxt('s1._domainkey.shop.example');
    assert.equal(txt.length, 1);
    assert.ok(txt[0]!.length >= 2, 'split into strings');
    assert.equal(txt[0]!.join(''), dkimTxtRecord(ours));
  });
});
