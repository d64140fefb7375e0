import net from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerError, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { makeCertificate, type TestCa } from './certs.js';
import { tempDir } from './temp.js';

/**
 * Fake remote MXes: real SMTP servers (smtp-server) on loopback addresses, each with a scripted behaviour, that
 * keep what they receive in memory. An MTA reaches every MX on one port, so a group shares a port across
 * 127.0.0.2, .3, …
 */

export interface SmtpReply {
  code: number;
  /** Reply text; smtp-server puts the enhanced status code of `code` before it (451 4.3.0, 550 5.1.1, 452 4.2.2…). */
  message: string;
}

export interface RcptRule extends SmtpReply {
  /** Recipients the rule applies to, case-insensitive; every recipient when absent. */
  recipients?: string[];
  /** Only the first `times` RCPTs of each matching recipient (over the server's life) get the reply, later ones
   *  fall through to the next rule or are accepted; every RCPT when absent. */
  times?: number;
}

export interface MxBehaviour {
  /** 'starttls' (default): offered, with a certificate made now; 'none': neither offered nor accepted;
   *  'broken': offered and answered 220, but every handshake fails. */
  tls?: 'starttls' | 'none' | 'broken';
  /** Refuse the session with this reply (e.g. 421) instead of greeting; 'silent': accept the connection and
   *  never greet, for connect/greeting timeouts. */
  greeting?: SmtpReply | 'silent';
  /** RCPT replies, first matching rule wins; recipients no rule matches are accepted. */
  rcpt?: RcptRule[];
  /** Reply to the end of DATA with this instead of accepting the message. */
  data?: SmtpReply;
  /** Advertise SMTPUTF8 in EHLO (default true). Either way a non-ASCII address without the SMTPUTF8 parameter
   *  gets 553, and without the advertisement the parameter itself gets 555. */
  smtpUtf8?: boolean;
  /** Advertise 8BITMIME in EHLO (default true). smtp-server takes BODY=8BITMIME either way, so a test reads
   *  ReceivedMail.mailParams to see what the client sent. */
  eightBitMime?: boolean;
  /** Advertise DSN in EHLO and take NOTIFY/ORCPT/RET/ENVID (default true). */
  dsn?: boolean;
  /** Announce SIZE with this maximum; a larger SIZE= on MAIL gets 552, and so does a larger body at end of DATA. */
  size?: number;
  /** Wait this long before answering the end of DATA (a slow MX, so a test can race its queue). */
  dataDelayMs?: number;
  /** Nothing listens on the address: connecting gets ECONNREFUSED at once. */
  dead?: boolean;
  /** Host name in the banner and the certificate; default mx.test. */
  name?: string;
  /** Sign the certificate with this CA (default: self-signed), for `name` and the MX's own address (an IP SAN). */
  ca?: TestCa;
  /** Require AUTH with these credentials before MAIL (530 without, 535 for others), in clear text too (so a test
   *  sees a client that would send it there); default: AUTH optional, as before. */
  auth?: { user: string; pass: string; methods?: ('PLAIN' | 'LOGIN')[] };
}

export interface ReceivedMail {
  /** MAIL FROM address, '' for the null sender. */
  from: string;
  /** The recipients that were accepted. */
  to: string[];
  raw: Buffer;
  tls: { version: string; cipher: string } | null;
  ehloName: string;
  /** The client's address: the source the relay bound. */
  peer: string;
  smtpUtf8: boolean;
  /** MAIL FROM parameters as smtp-server parsed them (BODY, SIZE, SMTPUTF8, RET, ENVID, …), names upper-case. */
  mailParams: Record<string, string | boolean>;
  /** RCPT TO parameters of each accepted recipient (NOTIFY, ORCPT, …). */
  rcptParams: Record<string, Record<string, string | boolean>>;
  /** When the MX accepted it (Date.now()). */
  at: number;
  /** The connection it came on (smtp-server's session id). */
  session: string;
}

export interface RcptAttempt {
  address: string;
  /** The reply code the MX gave (250 when accepted). */
  code: number;
}

export interface FakeMx {
  host: string;
  port: number;
  name: string;
  /** Messages accepted, in order; a message is here before the client reads the 250. */
  messages: ReceivedMail[];
  /** Every RCPT TO, with the code it got. */
  rcptAttempts: RcptAttempt[];
  /** Every MAIL FROM that reached the handler, with its parameters (a MAIL refused by smtp-server itself, e.g.
   *  a SIZE= over the maximum, is not here). */
  mailAttempts: { address: string; params: Record<string, string | boolean> }[];
  /** Every AUTH that reached the handler (only with behaviour.auth), with whether it was over TLS. */
  authAttempts: { method: string; username: string; tls: boolean; accepted: boolean }[];
  /** Errors of connections, e.g. the failed handshakes of tls: 'broken'. */
  errors: (Error & { code?: string })[];
  /** Connections that reached the SMTP layer, refused ones included. */
  readonly sessions: number;
  /** The most connections open at once. */
  readonly peakSessions: number;
  /** Resolves with the messages once there are at least `count`; rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  close(): Promise<void>;
}

export interface MxGroup {
  port: number;
  mxes: FakeMx[];
  close(): Promise<void>;
}

// A client still connected at close() gets smtp-server's 421 after this long rather than the default 30 s.
const CLOSE_TIMEOUT_MS = 500;
// The port a group's first MX was given may be taken on a later address; starting over is bounded.
const GROUP_ATTEMPTS = 5;
// The certificate is EC, so a server that only has RSA-authenticated suites shares no cipher with any client
// and aborts the handshake with a handshake_failure alert, after having answered STARTTLS with 220.
const BROKEN_TLS: Partial<SMTPServerOptions> = { ciphers: 'ECDHE-RSA-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' };

function smtpError(reply: SmtpReply): SMTPServerError {
  return Object.assign(new Error(reply.message), { responseCode: reply.code });
}

/** A port nothing listens on at `host` right now: bound, read and released. */
async function closedPort(host: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * smtp-server takes a non-ASCII address without SMTPUTF8, and the SMTPUTF8 parameter while not advertising it.
 * A real MX refuses both (RFC 6531 section 3.4; RFC 5321 section 4.1.1.11 for an unknown parameter), and an MTA
 * that relies on that leniency has to fail here rather than in production.
 */
function smtpUtf8Violation(address: SMTPServerAddress, session: SMTPServerSession, advertised: boolean): SmtpReply | null {
  if (!advertised && address.args && address.args.SMTPUTF8) return { code: 555, message: 'SMTPUTF8 not supported' };
  if (!session.envelope.smtpUtf8 && /[^\x00-\x7f]/.test(address.address)) return { code: 553, message: 'Non-ASCII address without SMTPUTF8' };
  return null;
}

/** The reply for one RCPT: the first rule that matches and still has attempts left, else acceptance. */
function rcptRuling(rules: RcptRule[], hits: Map<string, number>[], address: string): SmtpReply | null {
  const key = address.toLowerCase();
  for (const [index, rule] of rules.entries()) {
    if (rule.recipients && !rule.recipients.some((recipient) => recipient.toLowerCase() === key)) continue;
    const used = hits[index]!.get(key) ?? 0;
    if (rule.times !== undefined && used >= rule.times) continue;
    hits[index]!.set(key, used + 1);
    return rule;
  }
  return null;
}

function readAll(stream: SMTPServerDataStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve, reject) => {
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

function receivedMail(session: SMTPServerSession, raw: Buffer): ReceivedMail {
  const { envelope, tlsOptions } = session;
  return {
    from: envelope.mailFrom ? envelope.mailFrom.address : '',
    to: envelope.rcptTo.map((rcpt) => rcpt.address),
    raw,
    tls: tlsOptions ? { version: tlsOptions.version, cipher: tlsOptions.name } : null,
    ehloName: session.hostNameAppearsAs,
    peer: session.remoteAddress.replace(/^::ffff:/, ''),
    smtpUtf8: envelope.smtpUtf8 === true,
    mailParams: envelope.mailFrom ? { ...(envelope.mailFrom.args || {}) } : {},
    rcptParams: Object.fromEntries(envelope.rcptTo.map((rcpt) => [rcpt.address, { ...(rcpt.args || {}) }])),
    at: Date.now(),
    session: session.id,
  };
}

/** One fake MX on `host`:`port` (port 0 picks one; read it back from the result). */
export async function startMx(options: { host: string; port?: number; behaviour?: MxBehaviour }): Promise<FakeMx> {
  const { host, behaviour = {} } = options;
  const name = behaviour.name ?? 'mx.test';
  const messages: ReceivedMail[] = [];
  const rcptAttempts: RcptAttempt[] = [];
  const mailAttempts: FakeMx['mailAttempts'] = [];
  const authAttempts: FakeMx['authAttempts'] = [];
  const errors: FakeMx['errors'] = [];
  const waiters = new Set<() => void>();
  const unanswered = new Set<(error: SMTPServerError) => void>();
  let sessions = 0;
  let open = 0;
  let peakSessions = 0;

  const waitForMessages = (count: number, timeoutMs = 5_000): Promise<ReceivedMail[]> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (messages.length < count) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(messages);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${name} at ${host}: ${messages.length} of ${count} messages within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  // Not spread from a shared object: that would copy `sessions` once instead of keeping the getter.
  const fakeMx = (port: number, close: () => Promise<void>): FakeMx => ({
    host, port, name, messages, rcptAttempts, mailAttempts, authAttempts, errors, waitForMessages, close,
    get sessions() {
      return sessions;
    },
    get peakSessions() {
      return peakSessions;
    },
  });
  if (behaviour.dead) return fakeMx(options.port || (await closedPort(host)), async () => {});

  const tlsMode = behaviour.tls ?? 'starttls';
  const certificateDir = tlsMode === 'none' ? undefined : await tempDir('mta-fake-mx-');
  const certificate = certificateDir ? await makeCertificate(certificateDir.dir, name, '', behaviour.ca && { ca: behaviour.ca, alsoFor: [host] }) : undefined;
  const smtpUtf8 = behaviour.smtpUtf8 ?? true;
  const hits = (behaviour.rcpt ?? []).map(() => new Map<string, number>());

  const auth = behaviour.auth;
  const server = new SMTPServer({
    name,
    logger: false,
    disableReverseLookup: true,
    authOptional: !auth,
    ...(auth && {
      allowInsecureAuth: true,
      authMethods: auth.methods ?? ['PLAIN', 'LOGIN'],
      onAuth(request, session, callback) {
        const accepted = request.username === auth.user && request.password === auth.pass;
        authAttempts.push({ method: request.method, username: request.username ?? '', tls: session.secure, accepted });
        if (accepted) callback(null, { user: request.username });
        else callback(smtpError({ code: 535, message: 'Authentication credentials invalid' }));
      },
    } satisfies Partial<SMTPServerOptions>),
    hideENHANCEDSTATUSCODES: false,
    hideSMTPUTF8: !smtpUtf8,
    hide8BITMIME: behaviour.eightBitMime === false,
    hideDSN: behaviour.dsn === false,
    ...(behaviour.size !== undefined && { size: behaviour.size }),
    closeTimeout: CLOSE_TIMEOUT_MS,
    // Disabled rather than hidden: a client that sends STARTTLS anyway gets a refusal, as from a plain MX.
    disabledCommands: tlsMode === 'none' ? ['STARTTLS'] : [],
    ...(certificate && { key: certificate.key, cert: certificate.cert }),
    ...(tlsMode === 'broken' && BROKEN_TLS),
    onConnect(_session, callback) {
      sessions++;
      peakSessions = Math.max(peakSessions, ++open);
      if (behaviour.greeting === 'silent') unanswered.add(callback);
      else callback(behaviour.greeting ? smtpError(behaviour.greeting) : undefined);
    },
    onClose() {
      open--;
    },
    onMailFrom(address, session, callback) {
      mailAttempts.push({ address: address.address, params: { ...(address.args || {}) } });
      const violation = smtpUtf8Violation(address, session, smtpUtf8);
      // smtp-server applied the parameters before asking; a refused MAIL must not leave SMTPUTF8 set for the next.
      if (violation) session.envelope.smtpUtf8 = false;
      callback(violation ? smtpError(violation) : undefined);
    },
    onRcptTo(address, session, callback) {
      const reply = smtpUtf8Violation(address, session, smtpUtf8) ?? rcptRuling(behaviour.rcpt ?? [], hits, address.address);
      rcptAttempts.push({ address: address.address, code: reply?.code ?? 250 });
      callback(reply ? smtpError(reply) : undefined);
    },
    onData(stream, session, callback) {
      readAll(stream).then(async (raw) => {
        if (behaviour.dataDelayMs) await new Promise((resolve) => setTimeout(resolve, behaviour.dataDelayMs));
        if (behaviour.data) return callback(smtpError(behaviour.data));
        if (stream.sizeExceeded) return callback(smtpError({ code: 552, message: `message exceeds fixed maximum message size ${behaviour.size}` }));
        messages.push(receivedMail(session, raw));
        for (const check of [...waiters]) check();
        callback(null, `OK: queued as ${messages.length}`);
      }, callback);
    },
  });
  // smtp-server emits connection errors on the server; unheard, they would crash the test process.
  server.on('error', (error) => errors.push(error));
  try {
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(options.port ?? 0, host, () => (server.server.off('error', reject), resolve()));
    });
  } catch (error) {
    await certificateDir?.cleanup();
    throw error;
  }

  return fakeMx((server.server.address() as net.AddressInfo).port, async () => {
    // A silent session is waiting for onConnect; refusing it lets smtp-server close it now.
    for (const callback of unanswered) callback(smtpError({ code: 421, message: `${name} shutting down` }));
    unanswered.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await certificateDir?.cleanup();
  });
}

/**
 * One fake MX per behaviour, all on the same port, at consecutive addresses from `firstHost` (127.0.0.2, .3, …),
 * the way an MTA configured with one SMTP port sees the MXes of a domain.
 */
export async function startMxGroup(behaviours: MxBehaviour[], options: { firstHost?: string } = {}): Promise<MxGroup> {
  const [a, b, c, d] = (options.firstHost ?? '127.0.0.2').split('.').map(Number) as [number, number, number, number];
  const hosts = behaviours.map((_, index) => `${a}.${b}.${c}.${d + index}`);
  for (let attempt = 1; ; attempt++) {
    const mxes: FakeMx[] = [];
    try {
      // Live MXes first so the port comes from a real bind; dead ones then share it with nothing listening.
      const order = behaviours.map((_, index) => index).sort((x, y) => Number(behaviours[x]!.dead ?? false) - Number(behaviours[y]!.dead ?? false));
      let port = 0;
      for (const index of order) {
        const mx = await startMx({ host: hosts[index]!, port, behaviour: behaviours[index]! });
        mxes[index] = mx;
        port = mx.port;
      }
      return { port, mxes, close: async () => void (await Promise.all(mxes.map((mx) => mx.close()))) };
    } catch (error) {
      await Promise.all(mxes.filter(Boolean).map((mx) => mx.close()));
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= GROUP_ATTEMPTS) throw error;
    }
  }
}
