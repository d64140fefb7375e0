/** pino-roll 4 ships no types; this is the part of its API we use (see node_modules/pino-roll/pino-roll.js). */
declare module 'pino-roll' {
  import type { SonicBoom, SonicBoomOpts } from 'sonic-boom';

  export interface PinoRollOptions extends Omit<SonicBoomOpts, 'dest' | 'fd'> {
    /** Base path; the file written is `<base>[.<date>].<n>.<extension>`. */
    file: string;
    /** `123b`, `10k`, `100m`; a bare number means megabytes. */
    size?: string | number;
    frequency?: 'daily' | 'hourly' | number;
    dateFormat?: string;
    extension?: string;
    symlink?: boolean;
    limit?: { count: number; removeOtherLogFiles?: boolean };
  }

  /** sonic-boom's types leave out `file`, the path being written, which pino-roll moves on at each rotation. */
  export type RollingStream = SonicBoom & { readonly file: string };

  export default function pinoRoll(options: PinoRollOptions): Promise<RollingStream>;
}
