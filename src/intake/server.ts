import type { AddressInfo, Socket } from 'node:net';
import type { SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import { Registry } from 'prom-client';
import type { ServerConfig } from '../config/server-config.js';
import { systemClock, type Clock } from '../shared/clock.js';
import { hasSmtpReply, toSmtpServerError, type RelayError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { isLoopback, startMetricsServer } from '../shared/metrics.js';
import { ensureSpool, spoolLayout } from '../spool/layout.js';
import type { SpoolFs } from '../spool/spool-fs.js';
import { MessageWriter } from '../spool/message-writer.js';
import { AuthThrottle, DEFAULT_AUTH_THROTTLE, type AuthThrottlePolicy } from '../shared/auth-throttle.js';
import { IntakeMetrics } from './intake-metrics.js';
import { receiveMessage } from './receive-message.js';
import { ConnectionSlots } from './connection-slots.js';
import { ConnectionLog, DEFAULT_CONNECTION_LOG, type ConnectionLogPolicy } from './connection-log.js';
import { TooManyErrorsError } from './refusals.js';
import { RelaySmtpServer, type RelayConnection } from './relay-smtp-server.js';
import { logStartupWarnings } from './startup-warnings.js';
import { SubmissionPolicy } from './submission-policy.js';
import { loadTlsFiles } from './tls-files.js';
import { UserStore } from '../config/user-store.js';

type SmtpServerError = Error & { code?: string; remoteAddress?: string; meta?: { remoteAddress?: string } };

/** Error replies a session may get before 421 and close: Postfix's smtpd_hard_error_limit default. */
const HARD_ERROR_LIMIT = 20;

export interface ServerDeps {
  logger: Logger;
  clock?: Clock;
  authThrottle?: AuthThrottlePolicy;
  /** Every spool call goes through it (a fault-injecting double in tests); node's file system by default. */
  spoolFs?: SpoolFs;
  /** Where the counters go (shared/metrics createMetricsRegistry); a private registry when absent. Served on --metrics. */
  metrics?: Registry;
  /** How many connection log lines one client may cause per window (tests shorten the window). */
  connectionLog?: ConnectionLogPolicy;
}

export interface RunningServer {
  /** Bound ports (useful when the config asked for port 0). */
  ports: { submission: number; smtps: number | null };
  /** Where /metrics and /healthz are served (`127.0.0.1:9587`, the bound port), null without --metrics. */
  metrics: string | null;
  /** SIGHUP: re-read users and certificates; a broken file keeps the old one and the error is logged. */
  reload(): Promise<void>;
  /** SIGTERM: stop accepting, close idle sessions, let sessions in DATA finish within shutdownTimeout. */
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig, deps: ServerDeps): Promise<RunningServer> {
  const { logger } = deps;
  const clock = deps.clock ?? systemClock;
  const layout = spoolLayout(config.spool, deps.spoolFs);
  const [tlsFiles, users] = await Promise.all([loadTlsFiles(config.certFile, config.keyFile), UserStore.load(config.usersFile), ensureSpool(layout)]);
  const writer = new MessageWriter(layout);
  const connections = new Map<string, RelayConnection>();
  /** Sessions holding a slot (admitted in onConnect), released when they close. */
  const admitted = new Set<string>();
  const slots = new ConnectionSlots({ perAddress: config.maxConnectionsPerIp, total: config.maxConnections, handshakesPerAddress: config.maxHandshakesPerIp });
  const connectionLog = new ConnectionLog(logger, deps.connectionLog ?? DEFAULT_CONNECTION_LOG);
  const inData = new Set<string>();
  let closing = false;
  const registry = deps.metrics ?? new Registry();
  const metrics = new IntakeMetrics(registry, () => connections.size);

  const policy = new SubmissionPolicy({
    users,
    throttle: new AuthThrottle(deps.authThrottle ?? DEFAULT_AUTH_THROTTLE, clock),
    trustedNetworks: config.trustedNetworks,
    maxRecipients: config.maxRecipients,
    slots,
    logger,
  });

  const refuse = (session: SMTPServerSession, stage: string, error: RelayError) => {
    metrics.rejection(error.code).inc();
    const fields = { event: 'rejected', session: session.id, client: session.remoteAddress, stage, reason: error.code, reply: error.smtp?.code };
    // A refusal at connect comes once per connection: a client reconnecting without pause must not flood the log.
    if (stage === 'connect') connectionLog.write('info', fields, error.message);
    else logger.info(fields, error.message);
    return hasSmtpReply(error) ? toSmtpServerError(error) : error;
  };

  /** smtp-server's errors name the client on the error (a session) or in `meta` (a failed implicit-TLS handshake). */
  const logSmtpError = (error: SmtpServerError) => {
    const client = error.remoteAddress ?? error.meta?.remoteAddress;
    if (client === undefined) return void logger.warn({ event: 'smtp-error', err: error }, 'smtp connection error');
    if (error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
      connectionLog.write('info', { event: 'tls-handshake-timeout', client, timeout: config.tlsHandshakeTimeout }, 'TLS handshake not finished in time, connection closed');
    } else {
      connectionLog.write('warn', { event: 'smtp-error', client, err: error }, 'smtp connection error');
    }
  };

  const options: SMTPServerOptions = {
    name: config.hostname,
    key: tlsFiles.key,
    cert: tlsFiles.cert,
    size: config.maxSize,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: true, // SubmissionPolicy decides, so trusted networks can send without AUTH
    hideDSN: false, // RFC 3461 parameters are checked (esmtp-parameters.ts) and kept in the envelope for the DSNs
    hideENHANCEDSTATUSCODES: false,
    disableReverseLookup: true,
    socketTimeout: config.idleTimeout,
    closeTimeout: config.shutdownTimeout,
    logger: false,
    onConnect(session, callback) {
      const refusal = policy.admitConnection(session);
      if (refusal) return callback(refuse(session, 'connect', refusal));
      admitted.add(session.id);
      connectionLog.write('info', { event: 'connect', session: session.id, client: session.remoteAddress, tls: session.secure }, 'connect');
      callback();
    },
    onSecure(_socket, session, callback) {
      policy.secured(session);
      const tls = session.tlsOptions;
      logger.debug({ event: 'tls', session: session.id, client: session.remoteAddress, version: tls && tls.version, cipher: tls && tls.name }, 'tls');
      callback();
    },
    onAuth(auth, session, callback) {
      policy.authenticate(auth, session).then(
        (response) => callback(null, response),
        (error: RelayError) => {
          metrics.authFailures.inc();
          callback(hasSmtpReply(error) ? toSmtpServerError(error) : error);
        },
      );
    },
    onMailFrom(address, session, callback) {
      const refusal = policy.checkSender(address, session);
      callback(refusal && refuse(session, 'mail', refusal));
    },
    onRcptTo(address, session, callback) {
      const refusal = policy.checkRecipient(address, session);
      callback(refusal && refuse(session, 'rcpt', refusal));
    },
    onData(stream, session, callback) {
      inData.add(session.id);
      const started = clock.now();
      receiveMessage(stream, session, { writer, hostname: config.hostname, maxSize: config.maxSize, clock })
        .then(
          ({ queueId, size }) => {
            metrics.accepted.inc();
            connections.get(session.id)?.resetErrors();
            metrics.acceptedBytes.inc(size);
            logger.info(
              { event: 'accepted', queueId, session: session.id, client: session.remoteAddress, user: session.user || null, size, recipients: session.envelope.rcptTo.length, ms: clock.now() - started },
              'accepted',
            );
            // 2.0.0 with Postfix's wording: PHPMailer (Acelle) reads the queue id only from that exact reply.
            callback(null, `2.0.0 Ok: queued as ${queueId}`);
          },
          (error: RelayError) => {
            if (!hasSmtpReply(error) || error.smtp.code !== 452) return callback(refuse(session, 'data', error));
            metrics.rejection(error.code).inc();
            logger.error({ event: 'rejected', session: session.id, client: session.remoteAddress, stage: 'data', reason: error.code, err: error.cause }, error.message);
            callback(toSmtpServerError(error));
          },
        )
        .finally(() => {
          inData.delete(session.id);
          // After the reply to this DATA, a closing server hangs up instead of waiting for the client's QUIT.
          if (closing) setImmediate(() => connections.get(session.id)?.send(421, '4.3.2 Server shutting down'));
        });
    },
    onClose(session) {
      connectionLog.write('debug', { event: 'disconnect', session: session.id, client: session.remoteAddress }, 'disconnect');
    },
  };

  const hooks = {
    onOpen(connection: RelayConnection) {
      const address = connection.remoteAddress;
      metrics.connections.inc();
      connections.set(connection.id, connection);
      const deadline = setTimeout(() => {
        logger.warn({ event: 'session-timeout', session: connection.id, client: address }, 'session time limit reached, closing');
        connection.send(421, `4.4.2 ${config.hostname} Session time limit exceeded, closing connection`);
      }, config.sessionTimeLimit);
      deadline.unref();
      return () => {
        clearTimeout(deadline);
        connections.delete(connection.id);
        if (admitted.delete(connection.id)) slots.release(address);
      };
    },
    errorLimit: {
      errors: HARD_ERROR_LIMIT,
      reached(connection: RelayConnection) {
        const error = new TooManyErrorsError('Error: too many errors');
        logger.warn({ event: 'too-many-errors', session: connection.id, client: connection.remoteAddress, errors: HARD_ERROR_LIMIT }, 'too many errors in one session, closing');
        return error;
      },
    },
    startHandshake(socket: Socket) {
      const client = socket.remoteAddress ?? '';
      const refusal = slots.startHandshake(client);
      if (!refusal) return () => slots.endHandshake(client);
      metrics.rejection(refusal.code).inc();
      connectionLog.write('info', { event: 'rejected', client, stage: 'tls-handshake', reason: refusal.code }, refusal.message);
      return undefined;
    },
    handshakeTimeout: config.tlsHandshakeTimeout,
  };

  const submission = new RelaySmtpServer({ ...options }, hooks);
  const smtps = config.smtpsPort === null ? null : new RelaySmtpServer({ ...options, secure: true }, hooks);
  const servers = smtps ? [submission, smtps] : [submission];
  for (const server of servers) server.on('error', (error: SmtpServerError) => logSmtpError(error));

  const listen = (server: RelaySmtpServer, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(port, config.host, () => {
        server.server.removeListener('error', reject);
        resolve((server.server.address() as AddressInfo).port);
      });
    });
  // Before the SMTP ports: a taken metrics port fails the start before any mail is accepted.
  const metricsServer = config.metrics
    ? await startMetricsServer(registry, config.metrics, {
        healthy: () => !closing,
        onError: (error) => logger.warn({ event: 'metrics-error', err: error }, 'metrics endpoint error'),
      })
    : null;
  if (config.metrics && !isLoopback(config.metrics.host)) logger.warn({ event: 'metrics-exposed', metrics: metricsServer!.address }, 'metrics served beyond loopback, without authentication');
  await logStartupWarnings(config, logger);
  let ports: RunningServer['ports'];
  try {
    ports = { submission: await listen(submission, config.port), smtps: smtps ? await listen(smtps, config.smtpsPort!) : null };
  } catch (error) {
    await metricsServer?.close();
    throw error;
  }
  logger.info({ event: 'listening', host: config.host, ...ports, metrics: metricsServer?.address ?? null, spool: layout.root, users: users.size }, 'mta-server listening');

  return {
    ports,
    metrics: metricsServer?.address ?? null,
    async reload() {
      const [tlsResult, usersResult] = await Promise.allSettled([loadTlsFiles(config.certFile, config.keyFile), users.reload()]);
      if (tlsResult.status === 'fulfilled') for (const server of servers) server.updateSecureContext(tlsResult.value);
      for (const [what, result] of [['certificates', tlsResult], ['users', usersResult]] as const) {
        if (result.status === 'fulfilled') logger.info({ event: 'reload', what }, `reloaded ${what}`);
        else logger.error({ event: 'reload-failed', what, err: result.reason }, `reload of ${what} failed, keeping the previous ones: ${(result.reason as Error).message}`);
      }
    },
    async close() {
      closing = true;
      logger.info({ event: 'stopping', sessions: connections.size, inData: inData.size }, 'stopping: no new connections');
      const stopped = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      for (const connection of connections.values()) if (!inData.has(connection.id)) connection.send(421, '4.3.2 Server shutting down');
      await Promise.all(stopped);
      await metricsServer?.close();
      connectionLog.flush();
      logger.info({ event: 'stopped' }, 'mta-server stopped');
    },
  };
}
