import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import net from 'node:net';
import { promisify } from 'node:util';
import { after, afterEach, before, describe, test } from 'node:test';
import { DaemonProcess, runCli } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { eventually } from '../helpers/queue-harness.js';
import { tempDir } from '../helpers/temp.js';
import { basicHeader, WEB_USER, writeWebUsers } from '../helpers/web-client.js';

/**
 * The web UI's limits as `mta-queue --web` applies them, in the built daemon delivering to a loopback MX: the new
 * flags (bad values exit 2), the Host names and trusted proxies reaching the UI's thread, and issue 17's flood of
 * idle connections, which must not take the descriptors delivery needs.
 */

const run = promisify(execFile);

/** GET with the Host and headers given (fetch sets Host itself). */
function get(port: number, pathname: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(`GET ${pathname} HTTP/1.1\r\n${Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')}connection: close\r\n\r\n`));
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('error', reject).on('close', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)));
  });
}

describe('mta-queue --web limits', { timeout: 90_000 }, () => {
  let f: DeliveryFixture;
  let temp: { dir: string; cleanup: () => Promise<void> };
  let usersFile: string;
  const daemons: DaemonProcess[] = [];
  const sockets: net.Socket[] = [];

  before(async () => {
    temp = await tempDir('mta-web-limits-');
    usersFile = await writeWebUsers(temp.dir);
    f = await startDeliveryFixture([{ name: 'mx.ok.test' }], (hosts) => ({ 'ok.test': { a: [hosts[0]!] } }));
  });
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await Promise.all(daemons.splice(0).map((daemon) => daemon.stop()));
  });
  after(async () => {
    await f.close();
    await temp.cleanup();
  });

  const start = (extra: string[]) => {
    const daemon = DaemonProcess.start('mta-queue', ['--spool', f.layout.root, '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s', '--web', '127.0.0.1:0', '--web-users', usersFile, ...extra]);
    daemons.push(daemon);
    return daemon;
  };

  test('bad values of the new flags: one line, exit 2', async () => {
    for (const [flag, value] of [['--web-trusted-proxies', '10.0.0.0/33'], ['--web-trusted-proxies', 'proxy.example'], ['--web-hostnames', 'relay test'], ['--web-hostnames', 'a,,b'], ['--web-max-connections', '0'], ['--web-idle-timeout', '0s'], ['--web-idle-timeout', 'soon']] as const) {
      const result = await runCli('mta-queue', ['--spool', f.layout.root, '--web', '127.0.0.1:0', '--web-users', usersFile, flag, value]);
      assert.equal(result.code, 2, `${flag} ${value}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`^mta-queue: ${flag}[: ].*\\n$`), `${flag} ${value}`);
    }
  });

  test('Host: by default the address, localhost and --hostname; --web-trusted-proxies names the client in the log', async () => {
    const daemon = start(['--web-trusted-proxies', '127.0.0.0/8']);
    const port = Number(new URL(String((await daemon.waitForEvent('web-listening')).url)).port);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'relay.test']) assert.equal(await get(port, '/login', { host }), 200, host);
    assert.equal(await get(port, '/login', { host: 'rebound.attacker.example' }), 421);
    assert.equal((await daemon.waitForEvent('web-host-refused')).host, 'rebound.attacker.example');
    assert.equal(await get(port, '/api/stats', { host: 'relay.test', authorization: basicHeader(WEB_USER.user, 'wrong'), 'x-forwarded-for': '203.0.113.9' }), 401);
    assert.equal((await daemon.waitForEvent('web-auth-failed')).client, '203.0.113.9');
  });

  test('300 idle connections to the UI under a small descriptor limit: the excess is closed, and delivery goes on', async () => {
    const daemon = start(['--web-max-connections', '40']);
    const port = Number(new URL(String((await daemon.waitForEvent('web-listening')).url)).port);
    // Issue 17 saw 1,100 sockets exhaust a limit of 1,024; here the same with room for 60 more descriptors.
    const open = (await readdir(`/proc/${daemon.pid}/fd`)).length;
    await run('prlimit', ['--pid', String(daemon.pid), `--nofile=${open + 60}:${open + 60}`]);
    let closedByServer = 0;
    for (let i = 0; i < 300; i++) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('close', () => closedByServer++).on('error', () => {});
      sockets.push(socket);
    }
    await eventually(() => closedByServer >= 260, 'connections beyond the cap closed', 20_000);
    assert.equal(closedByServer, 260, 'the 40 within the cap stay open (idle for less than 60 s)');
    assert.ok(daemon.logs.some((line) => line.event === 'web-connections-full' && line.max === 40));
    const id = await f.enqueue('app@shop.example', ['user@ok.test'], 'Subject: during the flood\n\nbody\n');
    await daemon.waitForLog((line) => line.event === 'delivered' && line.queueId === id, 20_000);
    assert.equal(f.mx.mxes[0]!.messages.at(-1)?.to[0], 'user@ok.test');
  });
});
