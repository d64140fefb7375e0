import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { resolveServerConfig, type ServerConfig } from '../../src/config/server-config.js';
import { startServer, type RunningServer, type ServerDeps } from '../../src/intake/server.js';
import { makeCertificate, type TestCertificate } from './certs.js';
import { LogCapture } from './log-capture.js';
import { tempDir } from './temp.js';

export const TEST_USER = { name: 'acelle', password: 'correct horse battery staple' };

export interface IntakeFixture {
  server: RunningServer;
  port: number;
  config: ServerConfig;
  dir: string;
  spool: string;
  usersFile: string;
  certificate: TestCertificate;
  logs: LogCapture;
  close(): Promise<void>;
}

/** mta-server in this process on loopback port 0, with a temp spool, a fresh certificate and one user. */
export async function startIntake(overrides: Partial<ServerConfig> = {}, deps: Partial<ServerDeps> = {}): Promise<IntakeFixture> {
  const { dir, cleanup } = await tempDir('mta-intake-');
  const certificate = await makeCertificate(dir);
  const usersFile = path.join(dir, 'users.txt');
  await writeFile(usersFile, `# test users\n${TEST_USER.name}:${TEST_USER.password}\n`, { mode: 0o600 });
  const config: ServerConfig = {
    ...resolveServerConfig({ host: '127.0.0.1', port: '0', spool: path.join(dir, 'spool'), users: usersFile, cert: certificate.certFile, key: certificate.keyFile }, 'relay.test'),
    ...overrides,
  };
  const logs = new LogCapture();
  const server = await startServer(config, { logger: logs.logger, ...deps });
  return {
    server,
    port: server.ports.submission,
    config,
    dir,
    spool: config.spool,
    usersFile,
    certificate,
    logs,
    async close() {
      await server.close();
      await cleanup();
    },
  };
}
