/**
 * Text that came from the network or from a message (remote replies, addresses, EHLO names, headers), made safe to
 * print on an operator's terminal. A raw ESC starts a CSI (`\x1b[2J` clears the screen) or an OSC (`\x1b]0;…\x07`
 * sets the window title, `\x1b]52;c;…\x07` writes the clipboard, which the next paste runs); C1 controls do the same
 * on terminals that take 8-bit controls (U+009B is CSI, U+009D is OSC); a bare CR or a backspace rewrites what is
 * already on the line; bidi controls reorder it. Each such character is shown as a visible escape instead, in
 * JavaScript's notation: `\x1b`, `\r`, `\n`, `\x7f`, `\x9b`, `\u202e`. Printable text (UTF-8 included) is unchanged.
 * `--json` output never goes through this: JSON.stringify already escapes C0 controls and DEL stays exact.
 */

export interface TerminalEscapeOptions {
  /** Keep tabs as they are: header continuation lines start with one. Off for tab-separated columns. */
  keepTabs?: boolean;
}

const NAMED: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

// Bidi embeddings and overrides (U+202A–202E), isolates (U+2066–2069) and the marks LRM, RLM and ALM (U+200E,
// U+200F, U+061C): each reorders the text shown around it, so `report\u202efdp.exe` reads as `reportexe.pdf`
// (also Trojan Source, CVE-2021-42574).
const BIDI = '\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069';
// C0 controls, DEL, C1 controls; line and paragraph separators; bidi controls.
const UNSAFE = new RegExp(`[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029${BIDI}]`, 'g');
const BIDI_CONTROLS = new RegExp(`[${BIDI}]`, 'g');

function visibleEscape(char: string): string {
  const named = NAMED[char];
  if (named) return named;
  const code = char.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

export function escapeForTerminal(text: string, options: TerminalEscapeOptions = {}): string {
  return text.replace(UNSAFE, (char) => (char === '\t' && options.keepTabs ? char : visibleEscape(char)));
}

/**
 * Only the bidi controls, as the same visible escapes: for the web UI, where HTML escaping has made the text
 * inert, a header block keeps its line breaks, and what remains to deceive the eye is reordering.
 */
export function escapeBidiControls(text: string): string {
  return text.replace(BIDI_CONTROLS, visibleEscape);
}
