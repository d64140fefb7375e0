import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { DaemonProcess, runCli, runMtaQueue } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/temp.js';

/** `mta-queue --policy`: refused at start naming the line; on SIGHUP a bad file is logged and the policy in force stays. */

test('mta-queue --policy FILE with a problem stops at start: exit 2, one line naming FILE:LINE', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bad = path.join(dir, 'policy.toml');
    await writeFile(bad, '[shaping.default]\nconnection_limit = 4\nmax_message_rate = "10/fortnight"\n');
    const result = await runMtaQueue(['--once', '--spool', path.join(dir, 'spool'), '--policy', bad]);
    assert.equal(result.code, 2);
    assert.deepEqual(result.errors, [`mta-queue: ${bad}:3: max_message_rate = "10/fortnight" is not a rate ("N/sec", "N/min", "N/hour" or "N/day", optionally ", max_burst=N")`]);
    const missing = await runMtaQueue(['--once', '--spool', path.join(dir, 'spool')], { MTA_POLICY: path.join(dir, 'absent.toml') });
    assert.equal(missing.code, 2);
    assert.deepEqual(missing.errors, [`mta-queue: --policy: cannot read ${path.join(dir, 'absent.toml')} (ENOENT)`]);
  } finally {
    await cleanup();
  }
});

test('SIGHUP re-reads the policy: a bad file is logged (policy-invalid) and the one in force stays; a good one takes over', async () => {
  const { dir, cleanup } = await tempDir();
  const file = path.join(dir, 'policy.toml');
  await writeFile(file, '[shaping.domain."example.com"]\nconnection_limit = 2\n');
  const daemon = DaemonProcess.start('mta-queue', ['--spool', path.join(dir, 'spool'), '--policy', file, '--hostname', 'relay.test', '--smtp-port', '2525']);
  try {
    const loaded = await daemon.waitForEvent('policy-loaded');
    assert.deepEqual([loaded.file, loaded.domains], [file, 1]);
    await daemon.waitForEvent('started');
    await writeFile(file, '[shaping.domain."example.com"]\nconection_limit = 2\n');
    daemon.signal('SIGHUP');
    const invalid = await daemon.waitForEvent('policy-invalid');
    assert.match(String((invalid.err as { message: string }).message), new RegExp(`^${file.replace(/[.]/g, '\\.')}:2: unknown key "conection_limit"`));
    await writeFile(file, '[shaping.domain."example.com"]\nconnection_limit = 3\n\n[shaping.domain."example.org"]\nconnection_limit = 3\n');
    daemon.signal('SIGHUP');
    const reloaded = await daemon.waitForLog((line) => line.event === 'policy-loaded' && line.reason === 'sighup');
    assert.equal(reloaded.domains, 2);
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  } finally {
    await daemon.stop();
    await cleanup();
  }
});

test('mta-server reads the same file: refused at start naming FILE:LINE, re-read on SIGHUP', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bad = path.join(dir, 'policy.toml');
    await writeFile(bad, '[users.acelle]\nquota = "1000/fortnight"\n');
    const refused = await runCli('mta-server', ['--spool', path.join(dir, 'spool'), '--policy', bad, '--port', '0']);
    assert.equal(refused.code, 2);
    assert.equal(refused.stderr.trim(), `mta-server: ${bad}:2: quota = "1000/fortnight" is not a quota ("N/hour", "N/day" or both, comma-separated, N ≥ 1)`);
  } finally {
    await cleanup();
  }
});
