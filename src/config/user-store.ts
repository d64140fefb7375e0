import { loadUsersFile } from './users-file.js';
import { hashedCredential, verifyPassword, type Credential } from '../shared/password-hash.js';

/**
 * Unknown users are checked against this, so a probe cannot tell "no such user" from "wrong password" by time.
 * Its cost is hashPassword's default, the cost plain lines are hashed with at load.
 */
const DECOY: Credential = {
  kind: 'scrypt',
  cost: 2 ** 14,
  blockSize: 8,
  parallelization: 1,
  salt: Buffer.alloc(16, 7),
  hash: Buffer.alloc(32, 7),
};

/** The users file as loaded last; `reload` swaps it only when the new file parses (SIGHUP). */
export class UserStore {
  private constructor(
    private readonly filePath: string,
    private users: Map<string, Credential>,
  ) {}

  static async load(filePath: string): Promise<UserStore> {
    return new UserStore(filePath, await loadHashed(filePath));
  }

  get size(): number {
    return this.users.size;
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  async reload(): Promise<number> {
    this.users = await loadHashed(this.filePath);
    return this.users.size;
  }

  async verify(user: string, password: string): Promise<boolean> {
    const credential = this.users.get(user);
    const matches = await verifyPassword(credential ?? DECOY, password);
    return credential !== undefined && matches;
  }
}

/** The users file with every plain password hashed (see hashedCredential): each check then costs one scrypt. */
async function loadHashed(filePath: string): Promise<Map<string, Credential>> {
  const users = await loadUsersFile(filePath);
  const hashed = await Promise.all([...users].map(async ([user, credential]) => [user, await hashedCredential(credential)] as const));
  return new Map(hashed);
}
