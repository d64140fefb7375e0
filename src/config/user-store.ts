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

/** One user's line: as written in the file, and as checked (plain passwords hashed). */
interface UserEntry {
  written: Credential;
  hashed: Credential;
}

/** The users file as loaded last; `reload` swaps it only when the new file parses (SIGHUP). */
export class UserStore {
  private constructor(
    private readonly filePath: string,
    private users: Map<string, UserEntry>,
  ) {}

  static async load(filePath: string): Promise<UserStore> {
    return new UserStore(filePath, await loadHashed(filePath, new Map()));
  }

  get size(): number {
    return this.users.size;
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  /**
   * An opaque value that stays the same across reloads while the user's line does, and changes with its password:
   * what a web session remembers, so that a changed password ends the sessions opened with the old one.
   * undefined for an unknown user.
   */
  passwordVersion(user: string): object | undefined {
    return this.users.get(user);
  }

  async reload(): Promise<number> {
    this.users = await loadHashed(this.filePath, this.users);
    return this.users.size;
  }

  async verify(user: string, password: string): Promise<boolean> {
    const entry = this.users.get(user);
    const matches = await verifyPassword(entry?.hashed ?? DECOY, password);
    return entry !== undefined && matches;
  }
}

/**
 * The users file with every plain password hashed (see hashedCredential): each check then costs one scrypt. A line
 * unchanged since `previous` keeps its entry (and its hash: a plain password is not hashed again with a new salt).
 */
async function loadHashed(filePath: string, previous: Map<string, UserEntry>): Promise<Map<string, UserEntry>> {
  const users = await loadUsersFile(filePath);
  const entries = await Promise.all(
    [...users].map(async ([user, written]) => {
      const known = previous.get(user);
      return [user, known && sameCredential(known.written, written) ? known : { written, hashed: await hashedCredential(written) }] as const;
    }),
  );
  return new Map(entries);
}

function sameCredential(a: Credential, b: Credential): boolean {
  if (a.kind === 'plain' || b.kind === 'plain') return a.kind === 'plain' && b.kind === 'plain' && a.password === b.password;
  return a.cost === b.cost && a.blockSize === b.blockSize && a.parallelization === b.parallelization && a.salt.equals(b.salt) && a.hash.equals(b.hash);
}
