import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type { TestContext } from 'node:test';

/**
 * SMTP clients nobody on the team wrote (swaks, Python's smtplib, PHPMailer), run as separate programs so the
 * server meets their real command order, dot-stuffing and TLS stacks. CI installs them from Debian (.ci/run).
 */

/** Debian's interpreter: the `python3` on PATH can be a separate build without Debian's modules. */
const PYTHON = '/usr/bin/python3';
/** Debian's browser, driven by playwright-core (which downloads nothing when given the executable). */
export const CHROMIUM = '/usr/bin/chromium';
/** Root in a container needs --no-sandbox; the rest keeps Chromium from calling home during a test. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const PHPMAILER_AUTOLOAD = '/usr/share/php/libphp-phpmailer/autoload.php';
const CLIENT_TIMEOUT_MS = 30_000;

export interface RunResult {
  /** Exit code, null when the program could not start (see `error`) or was killed (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  error?: Error;
}

/** Runs a program to completion; never rejects, so a failing client still hands back its transcript. */
export function run(command: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { timeout: CLIENT_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, signal: error?.signal ?? null, stdout, stderr, ...(error && { error }) });
    });
    // An EPIPE here means the program died before reading its input; the callback above reports why.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

/** Everything a client printed, for assertion messages: its SMTP transcript is the first thing to read. */
export function transcript(result: RunResult): string {
  const how =
    result.code !== null ? `exit ${result.code}` : result.signal ? `killed by ${result.signal} (time limit ${CLIENT_TIMEOUT_MS} ms)` : `did not start: ${result.error?.message}`;
  return `${how}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

/** Something a test runs that the repository does not ship: a client nobody on the team wrote, a system tool. */
export interface ExternalTool {
  /** What is missing, for the skip message. */
  what: string;
  /** The Debian packages that provide it (.ci/run installs them all). */
  packages: readonly string[];
  /** True when the tool runs the way the tests use it. */
  probe: () => Promise<boolean>;
}

/** Under this variable (set by .ci/run) a missing tool fails its test instead of skipping it. */
export const REQUIRE_EXTERNAL = 'MTA_TEST_REQUIRE_EXTERNAL';

/** Each probe runs the tool the way the tests do, so "installed" also means, for swaks, "can do STARTTLS". */
export const TOOLS = {
  swaks: {
    what: 'swaks with TLS support',
    packages: ['swaks', 'libnet-ssleay-perl', 'libio-socket-ssl-perl'],
    probe: async () => /^=== TLS supported/m.test((await run('swaks', ['--support'])).stdout),
  },
  smtplib: {
    what: `${PYTHON} with smtplib and ssl`,
    packages: ['python3'],
    probe: async () => (await run(PYTHON, ['-c', 'import smtplib, ssl'])).code === 0,
  },
  phpmailer: {
    what: 'PHPMailer on php-cli with openssl',
    packages: ['php-cli', 'libphp-phpmailer'],
    probe: async () => {
      const check = `require '${PHPMAILER_AUTOLOAD}'; exit(class_exists('PHPMailer\\PHPMailer\\PHPMailer') && extension_loaded('openssl') ? 0 : 1);`;
      return (await run('php', ['-r', check])).code === 0;
    },
  },
  dkimpy: {
    what: `dkimpy with Ed25519 support under ${PYTHON}`,
    packages: ['python3-dkim', 'python3-nacl'],
    probe: async () => (await run(PYTHON, ['-c', 'import dkim, nacl.signing'])).code === 0,
  },
  chromium: {
    what: `Chromium at ${CHROMIUM}`,
    packages: ['chromium'],
    probe: () => commandRuns(CHROMIUM, ['--version']),
  },
  systemdAnalyze: {
    what: 'systemd-analyze',
    packages: ['systemd'],
    probe: async () => (await run('systemd-analyze', ['--version'])).code === 0,
  },
} satisfies Record<string, ExternalTool>;

const probes = new Map<ExternalTool, Promise<boolean>>();

/**
 * The one gate for every test that needs an external tool: true when it runs. Otherwise the test is skipped with a
 * message naming the Debian packages, so `npm test` passes on a fresh machine; but with MTA_TEST_REQUIRE_EXTERNAL=1
 * (what .ci/run exports after installing them) it fails, so a broken CI install never passes as green.
 */
export async function toolAvailable(t: Pick<TestContext, 'skip'>, tool: ExternalTool, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  let probe = probes.get(tool);
  if (!probe) probes.set(tool, (probe = tool.probe().catch(() => false)));
  if (await probe) return true;
  const missing = `${tool.what} not installed (Debian: apt-get install ${tool.packages.join(' ')}; .ci/run installs it)`;
  if (requiresExternal(env)) assert.fail(`${missing}, and ${REQUIRE_EXTERNAL}=${env[REQUIRE_EXTERNAL]} makes that a failure`);
  t.skip(missing);
  return false;
}

function requiresExternal(env: NodeJS.ProcessEnv): boolean {
  const value = env[REQUIRE_EXTERNAL];
  return value !== undefined && value !== '' && value !== '0';
}

/** True when `command args` starts and exits 0: a probe for a plain binary. */
export async function commandRuns(command: string, args: string[]): Promise<boolean> {
  return (await run(command, args)).code === 0;
}

export function swaks(port: number, args: string[]): Promise<RunResult> {
  return run('swaks', ['--server', '127.0.0.1', '--port', String(port), ...args]);
}

export interface SmtplibSubmission {
  port: number;
  /** Loopback source address: AUTH failures count per client address, so a test can keep its own. */
  source: string;
  helo: string;
  user: string;
  password: string;
  from: string;
  to: string[];
  message: string;
}

export type SmtplibOutcome = { refused: Record<string, unknown> } | { authError: { code: number; message: string } };

/** The plain smtplib recipe from the Python docs; debug level 1 puts the SMTP dialogue on stderr. */
const SMTPLIB_SCRIPT = `
import json, smtplib, ssl, sys
p = json.load(sys.stdin)
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with smtplib.SMTP('127.0.0.1', p['port'], local_hostname=p['helo'], source_address=(p['source'], 0), timeout=20) as smtp:
    smtp.set_debuglevel(1)
    smtp.starttls(context=context)
    try:
        smtp.login(p['user'], p['password'])
    except smtplib.SMTPAuthenticationError as error:
        print(json.dumps({'authError': {'code': error.smtp_code, 'message': error.smtp_error.decode()}}))
        sys.exit(0)
    print(json.dumps({'refused': smtp.sendmail(p['from'], p['to'], p['message'])}))
`;

export async function smtplib(submission: SmtplibSubmission): Promise<{ result: RunResult; outcome: SmtplibOutcome }> {
  const result = await run(PYTHON, ['-c', SMTPLIB_SCRIPT], JSON.stringify(submission));
  return { result, outcome: parseJsonOutput(result) as SmtplibOutcome };
}

export interface HalfOpenTlsProbe {
  smtpsPort: number;
  submissionPort: number;
  /** Loopback address that opens `sockets` connections to the implicit-TLS port and never sends a ClientHello. */
  attacker: string;
  sockets: number;
  /** How many of them the server should keep (its per-address handshake cap): the rest are waited for, closed. */
  kept: number;
  /** Longest wait for that, in seconds: shorter than the handshake deadline, so the deadline closes none of them. */
  settle: number;
  /** Another loopback address that then asks for a banner on both ports. */
  prober: string;
  /** Longest wait for the kept sockets to be closed, in seconds. */
  closeWithin: number;
}

export interface HalfOpenTlsOutcome {
  /** Attacker sockets the server closed before the probe. */
  closedAtOnce: number;
  /** The prober's first reply line on the submission port, and on the implicit-TLS port after its handshake. */
  plainBanner: string;
  tlsBanner: string;
  tlsVersion: string;
  /** Attacker sockets still open once the probe was answered. */
  openAfterProbe: number;
  /** Attacker sockets still open after `closeWithin` seconds. */
  openAtEnd: number;
}

/** Half-open implicit-TLS sockets from one address (issue 17), then an ordinary client from another. */
const HALF_OPEN_TLS_SCRIPT = `
import json, select, socket, ssl, sys, time
p = json.load(sys.stdin)
def is_closed(sock):
    # Before a ClientHello the server sends nothing, so a readable socket is one the server closed.
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1) == b''
    except OSError:
        return True
def count_open(socks):
    return sum(1 for s in socks if not is_closed(s))
def wait_until_open_at_most(socks, limit, seconds):
    end = time.monotonic() + seconds
    while count_open(socks) > limit and time.monotonic() < end:
        time.sleep(0.05)
    return count_open(socks)
held = [socket.create_connection(('127.0.0.1', p['smtpsPort']), timeout=10, source_address=(p['attacker'], 0)) for _ in range(p['sockets'])]
closed_at_once = len(held) - wait_until_open_at_most(held, p['kept'], p['settle'])
with socket.create_connection(('127.0.0.1', p['submissionPort']), timeout=10, source_address=(p['prober'], 0)) as plain:
    plain_banner = plain.makefile('rb').readline().decode().strip()
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with socket.create_connection(('127.0.0.1', p['smtpsPort']), timeout=10, source_address=(p['prober'], 0)) as raw:
    with context.wrap_socket(raw, server_hostname='localhost') as tls:
        tls_banner = tls.makefile('rb').readline().decode().strip()
        tls_version = tls.version()
open_after_probe = count_open(held)
open_at_end = wait_until_open_at_most(held, 0, p['closeWithin'])
print(json.dumps({'closedAtOnce': closed_at_once, 'plainBanner': plain_banner, 'tlsBanner': tls_banner, 'tlsVersion': tls_version, 'openAfterProbe': open_after_probe, 'openAtEnd': open_at_end}))
`;

export async function halfOpenTlsFlood(probe: HalfOpenTlsProbe): Promise<{ result: RunResult; outcome: HalfOpenTlsOutcome }> {
  const result = await run(PYTHON, ['-c', HALF_OPEN_TLS_SCRIPT], JSON.stringify(probe));
  return { result, outcome: parseJsonOutput(result) as HalfOpenTlsOutcome };
}

export interface PhpMailerSubmission {
  port: number;
  user: string;
  password: string;
  from: string;
  to: string;
  subject: string;
  html: string;
  text: string;
  acelleMessageId: string;
}

/**
 * PHPMailer configured as Acelle Mail's SMTP sending server does it: STARTTLS, AUTH, certificate checks off for a
 * self-signed relay, an HTML campaign with a text alternative and Acelle's tracking header. Prints the exact MIME
 * message it sent (base64, it may hold 8-bit bytes) so the test can compare the spool with it byte for byte.
 */
const PHPMAILER_SCRIPT = `
require '${PHPMAILER_AUTOLOAD}';
use PHPMailer\\PHPMailer\\PHPMailer;
use PHPMailer\\PHPMailer\\SMTP;
$p = json_decode(stream_get_contents(STDIN), true);
$mail = new PHPMailer(true);
$mail->isSMTP();
$mail->Host = '127.0.0.1';
$mail->Port = $p['port'];
$mail->SMTPSecure = 'tls';
$mail->SMTPAuth = true;
$mail->Username = $p['user'];
$mail->Password = $p['password'];
$mail->SMTPOptions = ['ssl' => ['verify_peer' => false, 'verify_peer_name' => false, 'allow_self_signed' => true]];
$mail->SMTPDebug = SMTP::DEBUG_SERVER;
$mail->Debugoutput = function ($line) { fwrite(STDERR, rtrim($line) . "\\n"); };
$mail->CharSet = 'UTF-8';
$mail->setFrom($p['from']);
$mail->addAddress($p['to']);
$mail->Subject = $p['subject'];
$mail->isHTML(true);
$mail->Body = $p['html'];
$mail->AltBody = $p['text'];
$mail->addCustomHeader('X-Acelle-Message-Id', $p['acelleMessageId']);
$mail->send();
echo json_encode(['sent' => base64_encode($mail->getSentMIMEMessage())]), "\\n";
`;

export async function phpMailer(submission: PhpMailerSubmission): Promise<{ result: RunResult; sent: Buffer }> {
  const result = await run('php', ['-r', PHPMAILER_SCRIPT], JSON.stringify(submission));
  const { sent } = parseJsonOutput(result) as { sent: string };
  return { result, sent: Buffer.from(sent, 'base64') };
}

function parseJsonOutput(result: RunResult): unknown {
  assert.equal(result.code, 0, transcript(result));
  const last = result.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last);
  } catch {
    assert.fail(`no JSON result line\n${transcript(result)}`);
  }
}

/** The queue id from the client's copy of the `250 … queued as <id>` reply to DATA. */
export function queueIdIn(result: RunResult): string {
  const match = /queued as ([0-9a-z]{20})\b/.exec(`${result.stdout}\n${result.stderr}`);
  assert.ok(match, `no "queued as" reply in the client's transcript\n${transcript(result)}`);
  return match[1]!;
}

