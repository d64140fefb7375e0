import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeCertificate } from '../helpers/certs.js';
import { DaemonProcess } from '../helpers/daemon-process.js';
import { halfOpenTlsFlood, toolAvailable, TOOLS, transcript } from '../helpers/external-clients.js';
import { tempDir } from '../helpers/temp.js';

const ATTACKER = '127.0.9.1';
const HANDSHAKES_PER_IP = 5;

describe('half-open implicit-TLS sockets from one address (issue 17)', () => {
  let daemon: DaemonProcess;
  let ports: { submission: number; smtps: number };
  let cleanup: () => Promise<void>;

  before(async () => {
    const temp = await tempDir('mta-handshakes-');
    cleanup = temp.cleanup;
    const certificate = await makeCertificate(temp.dir);
    const usersFile = path.join(temp.dir, 'users.txt');
    await writeFile(usersFile, 'alice:alice-password\n', { mode: 0o600 });
    // A total cap of 20 stands for the default 1000: before the fix, 30 silent sockets from one address took it all.
    const args = ['--host', '127.0.0.1', '--port', '0', '--smtps-port', '0', '--spool', path.join(temp.dir, 'spool'), '--users', usersFile];
    args.push('--cert', certificate.certFile, '--key', certificate.keyFile, '--hostname', 'relay.test', '--max-connections', '20');
    args.push('--max-handshakes-per-ip', String(HANDSHAKES_PER_IP));
    daemon = DaemonProcess.start('mta-server', args, { env: { MTA_TLS_HANDSHAKE_TIMEOUT: '5s' } });
    const listening = await daemon.waitForEvent('listening');
    ports = { submission: listening.submission as number, smtps: listening.smtps as number };
  });
  after(async () => {
    await daemon.stop();
    await cleanup();
  });

  test('the excess is closed at once, another address still gets 220 on both ports and a TLS session, the rest go at the handshake deadline', async (t) => {
    if (!(await toolAvailable(t, TOOLS.smtplib))) return;
    const { result, outcome } = await halfOpenTlsFlood({
      smtpsPort: ports.smtps,
      submissionPort: ports.submission,
      attacker: ATTACKER,
      sockets: 30,
      kept: HANDSHAKES_PER_IP,
      settle: 2,
      prober: '127.0.9.2',
      closeWithin: 15,
    });
    const context = `${JSON.stringify(outcome)}\n${transcript(result)}`;
    assert.equal(outcome.closedAtOnce, 30 - HANDSHAKES_PER_IP, context);
    assert.match(outcome.plainBanner, /^220 relay\.test /, context);
    assert.match(outcome.tlsBanner, /^220 relay\.test /, context);
    assert.match(outcome.tlsVersion, /^TLSv1\.[23]$/, context);
    assert.equal(outcome.openAfterProbe, HANDSHAKES_PER_IP, 'the probe was answered while the address held its whole share');
    assert.equal(outcome.openAtEnd, 0, 'the kept sockets were closed by --tls-handshake-timeout 5s, not the 5 minute idle timeout');

    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
    const fromAttacker = daemon.logs.filter((line) => line.client === ATTACKER);
    const refused = fromAttacker.filter((line) => line.event === 'rejected' && line.stage === 'tls-handshake' && line.reason === 'ETOOMANYHANDSHAKES');
    const timedOut = fromAttacker.filter((line) => line.event === 'tls-handshake-timeout');
    const suppressed = fromAttacker.find((line) => line.event === 'connection-log-suppressed');
    const summarized = suppressed ? Object.values(suppressed.events as Record<string, number>).reduce((sum, count) => sum + count, 0) : 0;
    assert.equal(refused.length + timedOut.length + summarized, 30, 'every socket is either a log line of its own or counted in the summary');
    assert.ok(refused.length + timedOut.length <= 20, `${refused.length + timedOut.length} lines from one address`);
  });
});
