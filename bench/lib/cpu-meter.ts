import { performance } from 'node:perf_hooks';
import { machineBusyMs, machineBusyPercent, readCpuMs, readMachineCpu, type CpuSnapshot } from './proc.js';

export interface CpuUse {
  /** The server under test: mta-server, or Postfix's master and every daemon it runs. */
  serverCpuMs: number;
  /** The load generator: this process (bench client, nodemailer) and smtp-source. */
  clientCpuMs: number;
  /** All cores together, 100 % = every core busy. */
  machineBusyPercent: number;
  /**
   * CPU used by everything else (other people's tests on a shared machine), as % of one core. Large values
   * mean the figure was taken on a busy machine and is not comparable.
   */
  othersPercentOfCore: number;
}

/** Total CPU milliseconds the server has used so far; must only grow. */
type ServerCpu = () => Promise<number>;

/**
 * Splits the machine's CPU time during a measurement into server, client (this process and smtp-source, which
 * is waited for before the reading) and everything else.
 */
export class CpuMeter {
  private before: { server: number; own: number; machine: CpuSnapshot; at: number } | undefined;

  constructor(private readonly serverCpu: ServerCpu) {}

  async start(): Promise<void> {
    this.before = { server: await this.serverCpu(), own: await ownCpuMs(), machine: await readMachineCpu(), at: performance.now() };
  }

  async stop(): Promise<CpuUse> {
    const before = this.before;
    if (!before) throw new Error('CpuMeter.stop() before start()');
    const [server, own, machine, at] = [await this.serverCpu(), await ownCpuMs(), await readMachineCpu(), performance.now()];
    const serverCpuMs = server - before.server;
    const clientCpuMs = own - before.own;
    const othersMs = machineBusyMs(before.machine, machine) - serverCpuMs - clientCpuMs;
    return {
      serverCpuMs,
      clientCpuMs,
      machineBusyPercent: machineBusyPercent(before.machine, machine),
      othersPercentOfCore: Math.max(0, (othersMs / (at - before.at)) * 100),
    };
  }
}

async function ownCpuMs(): Promise<number> {
  return (await readCpuMs('self', true)) ?? NaN;
}
