/**
 * Text that came from the network or from a message (remote replies, addresses, EHLO names, headers), made safe to
 * print on an operator's terminal. A raw ESC starts a CSI (`\x1b[2J` clears the screen) or an OSC (`\x1b]0;…\x07`
 * sets the window title, `\x1b]52;c;…\x07` writes the clipboard, which the next paste runs); C1 controls do the same
 * on terminals that take 8-bit controls (U+009B is CSI, U+009D is OSC); a bare CR or a backspace rewrites what is
 * already on the line; bidi overrides reorder it. Each such character is shown as a visible escape instead, in
 * JavaScript's notation: `\x1b`, `\r`, `\n`, `\x7f`, `\x9b`, `\u202e`. Printable text (UTF-8 included) is unchanged.
 * `--json` output never goes through this: JSON.stringify already escapes C0 controls and DEL stays exact.
 */

export interface TerminalEscapeOptions {
  /** Keep tabs as they are: header continuation lines start with one. Off for tab-separated columns. */
  keepTabs?: boolean;
}

const NAMED: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

// C0 controls, DEL, C1 controls; line and paragraph separators; bidi embeddings, overrides and isolates.
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

export function escapeForTerminal(text: string, options: TerminalEscapeOptions = {}): string {
  return text.replace(UNSAFE, (char) => {
    if (char === '\t' && options.keepTabs) return char;
    const named = NAMED[char];
    if (named) return named;
    const code = char.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
