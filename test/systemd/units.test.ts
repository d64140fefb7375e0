import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { REPO_ROOT } from '../helpers/daemon-process.js';
import { run, toolAvailable, TOOLS, transcript, type RunResult } from '../helpers/external-clients.js';
import { tempDir } from '../helpers/temp.js';

/**
 * The systemd units as systemd itself reads them: `systemd-analyze security --offline` scores their sandboxing,
 * `systemd-analyze verify` checks every directive. Debian's `systemd` package (252 on bookworm, which already
 * has --offline, --root and --threshold) ships systemd-analyze; none of this needs systemd running as PID 1.
 */

const UNITS = ['mta-server.service', 'mta-queue.service'] as const;
const UNIT_DIR = path.join(REPO_ROOT, 'systemd');
/** systemd-analyze's "OK" band: exposure 2.0 and below. --threshold counts in tenths. */
const MAX_EXPOSURE = 2.0;
/** True when systemd-analyze runs (the one gate of test/helpers/external-clients.ts: skip, or fail under MTA_TEST_REQUIRE_EXTERNAL=1). */
function systemdAnalyzeAvailable(t: TestContext): Promise<boolean> {
  return toolAvailable(t, TOOLS.systemdAnalyze);
}

function systemdAnalyze(args: string[]): Promise<RunResult> {
  // No pager, no colours, no emoji-only changes in the text we parse.
  return run('env', ['SYSTEMD_PAGER=cat', 'SYSTEMD_COLORS=0', 'systemd-analyze', ...args]);
}

/**
 * A file-system root for --root: the units byte for byte under /etc/systemd/system, the host's targets they
 * name (network-online.target, multi-user.target and what those pull in), and stub executables where
 * `npm install -g` and Debian put the real ones. verify checks that ExecStart= and ExecReload= name executable
 * files, and ExecStart=mta-server is resolved through systemd's fixed search path (/usr/local/bin, /usr/bin…):
 * the daemons are not installed globally on a test machine, so without the stubs verify could only complain
 * about that. Inside --root it checks the unchanged unit files, search-path lookup included.
 */
async function makeRoot(root: string): Promise<void> {
  const hostUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((dir) => existsSync(path.join(dir, 'multi-user.target')));
  assert.ok(hostUnits, 'no systemd unit directory with multi-user.target on this machine');
  const units = path.join(root, 'usr/lib/systemd/system');
  await mkdir(units, { recursive: true });
  for (const name of (await readdir(hostUnits)).filter((entry) => entry.endsWith('.target'))) {
    await copyFile(path.join(hostUnits, name), path.join(units, name)); // follows aliases such as default.target
  }
  await mkdir(path.join(root, 'etc/systemd/system'), { recursive: true });
  for (const unit of UNITS) await copyFile(path.join(UNIT_DIR, unit), path.join(root, 'etc/systemd/system', unit));
  for (const stub of ['usr/local/bin/mta-server', 'usr/local/bin/mta-queue', 'bin/kill']) {
    await mkdir(path.dirname(path.join(root, stub)), { recursive: true });
    await writeFile(path.join(root, stub), '#!/bin/sh\nexit 0\n');
    await chmod(path.join(root, stub), 0o755);
  }
}

/** `KEY=value` lines of a unit file, every value of a key in order (later lines add to or reset earlier ones). */
function directives(text: string): Map<string, string[]> {
  const result = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match) result.set(match[1]!, [...(result.get(match[1]!) ?? []), match[2]!]);
  }
  return result;
}

describe('systemd units', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => {
    ({ dir: root, cleanup } = await tempDir('mta-systemd-root-'));
    await makeRoot(root);
  });
  after(() => cleanup());

  for (const unit of UNITS) {
    test(`${unit}: systemd-analyze security --offline scores its exposure at most ${MAX_EXPOSURE.toFixed(1)} (OK)`, async (t) => {
      if (!(await systemdAnalyzeAvailable(t))) return;
      // --root: the unit as shipped, without drop-ins an operator may have on this machine.
      const result = await systemdAnalyze(['security', '--offline=true', `--root=${root}`, `--threshold=${MAX_EXPOSURE * 10}`, `/etc/systemd/system/${unit}`]);
      const overall = /Overall exposure level for (\S+): (\d+\.\d) (\w+)/.exec(result.stdout);
      assert.ok(overall, transcript(result));
      const open = result.stdout.split('\n').filter((line) => line.startsWith('✗')).map((line) => line.replace(/\s{2,}/g, '  ').trim());
      const exposure = Number(overall[2]);
      console.log(`# ${unit}: exposure ${overall[2]} ${overall[3]}`);
      assert.equal(overall[1], unit);
      assert.ok(exposure <= MAX_EXPOSURE, `${unit} exposure ${overall[2]} > ${MAX_EXPOSURE.toFixed(1)}; open items:\n${open.join('\n')}`);
      assert.ok(['PERFECT', 'SAFE', 'OK'].includes(overall[3]!), overall[0]);
      assert.equal(result.code, 0, `--threshold=${MAX_EXPOSURE * 10} exceeded\n${transcript(result)}`);
    });
  }

  test('systemd-analyze verify: both units are clean (stub executables in a --root)', async (t) => {
    if (!(await systemdAnalyzeAvailable(t))) return;
    const result = await systemdAnalyze(['verify', `--root=${root}`, ...UNITS.map((unit) => `/etc/systemd/system/${unit}`)]);
    // verify reports unknown keys, bad values and missing units on stderr but still exits 0: both must be quiet.
    assert.equal(result.code, 0, transcript(result));
    assert.equal(`${result.stdout}${result.stderr}`.trim(), '', transcript(result));
  });

  test('systemd-analyze verify without the stubs: nothing wrong but the commands a test machine lacks', async (t) => {
    if (!(await systemdAnalyzeAvailable(t))) return;
    // The files as they are in the repo, against this machine: shows that verify does look at ExecStart=, and
    // that nothing else in the units depends on the temporary root above.
    const result = await systemdAnalyze(['verify', ...UNITS.map((unit) => path.join(UNIT_DIR, unit))]);
    const complaints = result.stderr.split('\n').filter(Boolean);
    const other = complaints.filter((line) => !/^mta-(server|queue)\.service: Command mta-(server|queue) is not executable: No such file or directory$/.test(line));
    assert.deepEqual(other, [], transcript(result));
  });

  test('the units run as mta-relay, write only the spool, and read their options from /etc/mta-relay/env', async () => {
    for (const unit of UNITS) {
      const d = directives(await readFile(path.join(UNIT_DIR, unit), 'utf8'));
      const one = (key: string) => d.get(key)?.at(-1);
      assert.equal(one('User'), 'mta-relay', unit);
      assert.equal(one('Group'), 'mta-relay', unit);
      assert.equal(one('UMask'), '0077', unit);
      assert.equal(one('ProtectSystem'), 'strict', unit);
      assert.deepEqual(d.get('ReadWritePaths'), ['/var/mailqueue'], unit);
      assert.deepEqual(d.get('ReadOnlyPaths'), ['/etc/mta-relay'], unit);
      assert.deepEqual(d.get('EnvironmentFile'), ['/etc/mta-relay/env'], unit);
      assert.equal(one('Type'), 'simple', unit);
      assert.equal(one('Restart'), 'on-failure', unit);
      assert.equal(one('StateDirectory'), undefined, `${unit}: the spool path is configurable, not a StateDirectory`);
      assert.equal(one('MemoryDenyWriteExecute'), 'no', `${unit}: V8's JIT needs it off`);
      assert.equal(one('WantedBy'), 'multi-user.target', unit);
    }
    const server = directives(await readFile(path.join(UNIT_DIR, 'mta-server.service'), 'utf8'));
    assert.deepEqual(server.get('CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE'], 'binds 587/465 and nothing more');
    assert.deepEqual(server.get('AmbientCapabilities'), ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(server.get('ExecReload'), ['/bin/kill -HUP $MAINPID'], 'systemctl reload re-reads users and certificate');
    const queue = directives(await readFile(path.join(UNIT_DIR, 'mta-queue.service'), 'utf8'));
    assert.deepEqual(queue.get('CapabilityBoundingSet'), [''], 'no capability at all');
    assert.equal(queue.get('PrivateUsers')?.at(-1), 'yes');
  });

  test('env.example names every MTA_* variable of both daemons, and no other', async () => {
    const documented = new Set([...(await readFile(path.join(UNIT_DIR, 'env.example'), 'utf8')).matchAll(/^#?(MTA_[A-Z0-9_]+)=/gm)].map((match) => match[1]!));
    const read = new Set<string>();
    for (const cli of ['mta-server', 'mta-queue']) {
      const help = await run(process.execPath, [path.join(REPO_ROOT, 'dist/cli', `${cli}.js`), '--help']);
      assert.equal(help.code, 0, transcript(help));
      for (const match of help.stdout.matchAll(/[(,]\s*env:\s+(MTA_[A-Z0-9_]+)\)/g)) read.add(match[1]!);
    }
    assert.ok(read.size > 20, `the --help output lists the variables: ${[...read].join(' ')}`);
    assert.deepEqual([...read].filter((name) => !documented.has(name)).sort(), [], 'variables missing from systemd/env.example');
    assert.deepEqual([...documented].filter((name) => !read.has(name)).sort(), [], 'variables in systemd/env.example that no daemon reads');
  });
});
