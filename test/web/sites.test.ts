import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SitesReport, SiteStatus } from '../../src/shared/site-status.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { eventually } from '../helpers/queue-harness.js';
import { tempDir } from '../helpers/temp.js';
import { WEB_USER, WebClient, writeWebUsers } from '../helpers/web-client.js';

/**
 * The overview's Sites table and `GET /api/sites` from a running mta-queue (the web UI's thread asks the delivery
 * thread), against real MXes on loopback: a slow site busy on its one connection with two transactions waiting, a
 * site named by a hostile MX record (its second MX: the first takes the transaction and sits on it), and a site
 * suspended by the connection breaker because its MX greets with markup.
 */
const EVIL_REPLY = '<script>alert(1)</script> busy';
const EVIL_MX = '<img src=x onerror=alert(1)>.evil.test';
// The site: its MX names sorted, the hostile one as the resolver hands it back (c-ares escapes the parentheses).
const EVIL_SITE = '<img src=x onerror=alert\\(1\\)>.evil.test,mx.tarpit.test';

describe('Sites: the overview table and /api/sites from a running mta-queue', () => {
  let f: DeliveryFixture;
  let daemon: DaemonProcess;
  let temp: { dir: string; cleanup: () => Promise<void> };
  let client: WebClient;
  const basic = { basic: WEB_USER, cookies: false };
  const sites = async (): Promise<SitesReport> => {
    const reply = await client.get('/api/sites', basic);
    assert.equal(reply.status, 200, reply.text);
    return reply.json();
  };
  const row = (report: SitesReport, site: string): SiteStatus | undefined => report.sites.find((entry) => entry.site === site);

  before(async () => {
    temp = await tempDir('mta-web-sites-');
    // Far longer than the tests take: the table they read stays as it is.
    const slow = { dataDelayMs: 12_000 };
    f = await startDeliveryFixture([{ name: 'mx.slow.test', ...slow }, { name: 'mx.busy.test', greeting: { code: 421, message: EVIL_REPLY } }, { name: 'mx.tarpit.test', ...slow }], (hosts) => ({
      'slow.test': { mx: [{ preference: 10, exchange: 'mx.slow.test' }] },
      'mx.slow.test': { a: [hosts[0]!] },
      'busy.test': { mx: [{ preference: 10, exchange: 'mx.busy.test' }] },
      'mx.busy.test': { a: [hosts[1]!] },
      'evil.test': { mx: [{ preference: 10, exchange: 'mx.tarpit.test' }, { preference: 20, exchange: EVIL_MX }] },
      'mx.tarpit.test': { a: [hosts[2]!] },
    }));
    const policyFile = path.join(temp.dir, 'policy.toml');
    // One failed transaction suspends a site, so the breaker's back-offs come at once.
    await writeFile(policyFile, '[shaping.default]\nconsecutive_connection_failures_before_delay = 1\n');
    for (let i = 0; i < 3; i++) await f.enqueue('app@shop.example', [`r${i}@slow.test`], 'Subject: slow\n\nbody\n');
    await f.enqueue('app@shop.example', ['x@busy.test'], 'Subject: busy\n\nbody\n');
    await f.enqueue('app@shop.example', ['x@evil.test'], 'Subject: evil\n\nbody\n');
    daemon = DaemonProcess.start('mta-queue', [
      '--spool', f.layout.root, '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s',
      '--retry-schedule', '1h', '--poll-interval', '100ms', '--max-connections-per-destination', '1', '--policy', policyFile,
      '--web', '127.0.0.1:0', '--web-users', await writeWebUsers(temp.dir),
    ]);
    client = new WebClient(String((await daemon.waitForEvent('web-listening')).url));
    assert.equal((await client.login(WEB_USER.user, WEB_USER.password)).status, 303);
    await eventually(async () => {
      const report = await sites();
      return report.backoffs.count === 1 && row(report, 'mx.slow.test')?.waiting === 2 && row(report, EVIL_SITE)?.connections === 1;
    }, 'the back-off in force while the slow sites hold their connections');
  });
  after(async () => {
    await daemon?.stop();
    await f?.close();
    await temp?.cleanup();
  });

  test('GET /api/sites: busiest first, then the back-offs, times in epoch ms', async () => {
    const report = await sites();
    assert.deepEqual(report.backoffs, { count: 1, suspend: 1, throttle: 0 });
    assert.equal(report.total, 3);
    assert.deepEqual(report.sites.map((entry) => entry.site), ['mx.slow.test', EVIL_SITE, 'mx.busy.test']);
    assert.deepEqual(report.sites[0], { site: 'mx.slow.test', source: 'default', provider: null, connections: 1, connectionLimit: 1, messageRate: null, waiting: 2, backoff: null });
    const busy = report.sites[2]!;
    assert.deepEqual({ ...busy, backoff: { ...busy.backoff!, until: 0 } }, {
      site: 'mx.busy.test',
      source: 'default',
      provider: null,
      connections: 0,
      connectionLimit: 1,
      messageRate: null,
      waiting: 0,
      backoff: { action: 'suspend', rule: 'connection-failures', until: 0, reply: `421 ${EVIL_REPLY}` },
    });
    // connection_failure_delay: 5 minutes from the failure.
    assert.ok(busy.backoff!.until > Date.now() && busy.backoff!.until <= Date.now() + 5 * 60_000, String(busy.backoff!.until));
  });

  test('an unknown query parameter is 400, and without credentials 401', async () => {
    const refused = await client.get('/api/sites?limit=5', basic);
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.json().error, 'unknown query parameter "limit" in the query string');
    assert.equal((await new WebClient(client.origin).get('/api/sites')).status, 401);
  });

  test('the overview shows the Sites table and the back-offs in force, escaped', async () => {
    const page = await client.get('/');
    assert.equal(page.status, 200);
    const table = page.text.slice(page.text.indexOf('<h2>Sites</h2>'));
    assert.match(table, /Back-offs in force: 1 \(1 suspend, 0 throttle\)/);
    assert.match(table, /<tr><td class="site">mx\.slow\.test<\/td><td>default<\/td><td>-<\/td><td>1 \/ 1<\/td><td>-<\/td><td>2<\/td><td>-<\/td><\/tr>/);
    assert.match(table, /<td class="site">&lt;img src=x onerror=alert\\\(1\\\)&gt;\.evil\.test,mx\.tarpit\.test<\/td><td>default<\/td><td>-<\/td><td>1 \/ 1<\/td>/, 'the hostile MX name, escaped');
    assert.match(table, /suspend<\/span> by connection-failures until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+m\d*s?\)/);
    assert.match(table, /421 &lt;script&gt;alert\(1\)&lt;\/script&gt; busy/, 'the hostile reply, escaped');
    assert.doesNotMatch(page.text, /<img src=x|<script>alert/);
    const live = await client.get('/', { headers: { 'hx-request': 'true' } });
    assert.match(live.text, /<h2>Sites<\/h2>/, 'the self-refresh carries the table');
  });
});
