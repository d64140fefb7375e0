/**
 * Where in a policy file a key was written, so a problem found after parsing (an unknown key, a bad rate) names
 * `FILE:LINE` as a syntax error does. smol-toml gives positions for syntax errors only; this reads the table
 * headers and `key =` lines of a file that smol-toml already accepted. It only locates: a path it cannot place
 * falls back to its nearest placed parent, then to line 1.
 */
export type PolicyPath = readonly (string | number)[];

const KEY_PART = /^\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*/;

/** `a."b.c".d` → ['a', 'b.c', 'd'], or null when the text is not a dotted key. */
function splitDottedKey(text: string): string[] | null {
  const parts: string[] = [];
  let rest = text;
  for (;;) {
    const match = KEY_PART.exec(rest);
    if (!match) return null;
    parts.push(match[1] !== undefined ? JSON.parse(`"${match[1]}"`) as string : match[2] ?? match[3]!);
    rest = rest.slice(match[0].length);
    if (rest === '') return parts;
    if (!rest.startsWith('.')) return null;
    rest = rest.slice(1);
  }
}

const pathKey = (path: PolicyPath) => path.join('\u0000');

export class PolicyLines {
  private readonly lines = new Map<string, number>();

  constructor(source: string) {
    let table: PolicyPath = [];
    const arrayCounts = new Map<string, number>();
    source.split('\n').forEach((text, index) => {
      const line = index + 1;
      const header = /^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$/.exec(text);
      if (header) {
        const path = splitDottedKey(header[2]!);
        if (!path) return;
        if (header[1] === '[[') {
          const count = arrayCounts.get(pathKey(path)) ?? 0;
          arrayCounts.set(pathKey(path), count + 1);
          table = [...path, count];
        } else {
          table = path;
        }
        this.remember(table, line);
        return;
      }
      const assignment = /^\s*([^=#[]+?)\s*=/.exec(text);
      const key = assignment ? splitDottedKey(assignment[1]!) : null;
      if (key) this.remember([...table, ...key], line);
    });
  }

  /** The line of `path`, or of its nearest parent that has one; 1 when none has. */
  lineOf(path: PolicyPath): number {
    for (let length = path.length; length > 0; length--) {
      const line = this.lines.get(pathKey(path.slice(0, length)));
      if (line !== undefined) return line;
    }
    return 1;
  }

  private remember(path: PolicyPath, line: number): void {
    // Parents first seen through a dotted header ([a.b.c]) are located at that header; the first mention wins.
    for (let length = 1; length <= path.length; length++) {
      const key = pathKey(path.slice(0, length));
      if (!this.lines.has(key)) this.lines.set(key, line);
    }
  }
}
