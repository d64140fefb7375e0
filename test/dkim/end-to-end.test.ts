import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { makeCertificate } from '../helpers/certs.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { verifyWithDkimpy, type TestKey } from '../helpers/dkim-keys.js';
import { toolAvailable, TOOLS } from '../helpers/external-clients.js';
import { tempDir } from '../helpers/temp.js';

const run = promisify(execFile);

/**
 * What an operator does, end to end: `mta-queue dkim keygen`, publish the printed record, `dkim activate`, then mail
 * submitted by swaks goes mta-server → spool → mta-queue (signing) → MX, where dkimpy verifies it against the
 * record that is in DNS.
 */
describe('DKIM end to end: keygen, publish, activate, submit, verify at the MX', () => {
  let f: DeliveryFixture;
  let dir: string;
  let cleanup: () => Promise<void>;
  const daemons: DaemonProcess[] = [];

  before(async () => {
    f = await startDeliveryFixture([{ name: 'mx.ok.test' }], (hosts) => ({
      'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
      'mx.ok.test': { a: [hosts[0]!] },
    }));
    ({ dir, cleanup } = await tempDir('mta-dkim-e2e-'));
  });
  after(async () => {
    for (const daemon of daemons) daemon.signal('SIGTERM');
    await Promise.all(daemons.map((daemon) => daemon.exit()));
    await f.close();
    await cleanup();
  });

  const dkim = (...args: string[]) => run(process.execPath, ['dist/cli/mta-queue.js', 'dkim', ...args, '--dkim-dir', path.join(dir, 'dkim'), '--dns-servers', f.dns.address]);

  test('a key made and activated with the CLI signs what swaks submits, and dkimpy verifies it with the published record', async (t) => {
    if (!(await toolAvailable(t, TOOLS.swaks)) || !(await toolAvailable(t, TOOLS.dkimpy))) return;
    const line = (await dkim('keygen', 'shop.example', '--selector', 'news2026', '--type', 'rsa')).stdout.trim();
    const zone = /^(\S+)\. IN TXT \( ((?:"[^"]*" )+)\)$/.exec(line);
    assert.ok(zone, line);
    const strings = [...zone[2]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
    await assert.rejects(dkim('activate', 'shop.example', 'news2026'), 'refused while the record is not published');
    f.dns.setZone(zone[1]!, { txt: [strings] });
    await dkim('activate', 'shop.example', 'news2026');

    const certificate = await makeCertificate(dir, 'localhost', 'e2e-');
    const usersFile = path.join(dir, 'users.txt');
    await writeFile(usersFile, 'app:app-password\n', { mode: 0o600 });
    const server = DaemonProcess.start('mta-server', ['--host', '127.0.0.1', '--port', '0', '--spool', f.layout.root, '--users', usersFile, '--cert', certificate.certFile, '--key', certificate.keyFile, '--hostname', 'relay.test']);
    daemons.push(server);
    const port = (await server.waitForEvent('listening')).submission as number;
    const queue = DaemonProcess.start('mta-queue', ['--spool', f.layout.root, '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--dkim-dir', path.join(dir, 'dkim')]);
    daemons.push(queue);
    const loaded = await queue.waitForEvent('dkim-keys-loaded');
    assert.equal(loaded.active, 1);

    const swaks = await run('swaks', ['--server', '127.0.0.1', '--port', String(port), '--tls', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'app-password', '--from', 'news@shop.example', '--to', 'reader@ok.test', '--header', 'X-Seq: dkim-e2e', '--header', 'Subject: signed end to end', '--body', 'signed on its way out'], { timeout: 30_000 });
    assert.match(swaks.stdout, /250 2\.0\.0 Ok: queued as/);
    const deadline = Date.now() + 15_000;
    let mail = f.mx.mxes[0]!.messages.find((m) => m.raw.includes('X-Seq: dkim-e2e'));
    while (!mail && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      mail = f.mx.mxes[0]!.messages.find((m) => m.raw.includes('X-Seq: dkim-e2e'));
    }
    assert.ok(mail, 'delivered');
    const published = { recordName: zone[1]!, record: strings.join('') } as TestKey;
    assert.deepEqual((await verifyWithDkimpy(mail.raw, [published])).map((r) => [r.d, r.s, r.ok]), [['shop.example', 'news2026', true]]);
    const altered = Buffer.from(mail.raw.toString('latin1').replace('signed on its way out', 'changed on its way'), 'latin1');
    assert.deepEqual((await verifyWithDkimpy(altered, [published])).map((r) => r.ok), [false], 'the check can fail');
  });
});
