import { isAlive } from './proc.js';
import { PrivatePostfix } from './private-postfix.js';

export { detectPostfix, type PostfixAvailability } from './private-postfix.js';

/**
 * The intake benchmark's private Postfix: durable intake with delivery on hold, nothing is ever delivered.
 * No pickup (nothing uses sendmail here).
 */
export class PostfixInstance extends PrivatePostfix {
  static async start(port: number, processLimit: number): Promise<PostfixInstance> {
    const { root, masterPid } = await PrivatePostfix.launch({ port, processLimit, tmpPrefix: 'mta-bench-postfix-', writtenBy: 'bench/intake.ts', isLive: isAlive });
    return new PostfixInstance(root, port, masterPid, isAlive);
  }
}
