import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapeBidiControls, escapeForTerminal } from '../../src/shared/terminal-escape.js';

test('escapeForTerminal: every control a terminal acts on becomes a visible escape; printable text is unchanged', () => {
  const cases: [input: string, shown: string, what: string][] = [
    ['451 4.3.0 Try again later', '451 4.3.0 Try again later', 'plain ASCII'],
    ['Grüße, 日本語, café', 'Grüße, 日本語, café', 'UTF-8 text'],
    ['back\\slash and "quotes"', 'back\\slash and "quotes"', 'printable punctuation'],
    ['\x1b[2J\x1b[H', '\\x1b[2J\\x1b[H', 'CSI: clear the screen, cursor home'],
    ['\x1b[31mred\x1b[0m', '\\x1b[31mred\\x1b[0m', 'CSI: colours'],
    ['\x1b]52;c;ZXZpbA==\x07', '\\x1b]52;c;ZXZpbA==\\x07', 'OSC 52 clipboard write, BEL-terminated'],
    ['\x1b]0;owned\x1b\\', '\\x1b]0;owned\\x1b\\', 'OSC 0 window title, ST-terminated'],
    ['\x1bP+q544e\x1b\\', '\\x1bP+q544e\\x1b\\', 'DCS'],
    ['\u009b2J', '\\x9b2J', 'C1 CSI'],
    ['\u009d52;c;x\u009c', '\\x9d52;c;x\\x9c', 'C1 OSC and ST'],
    ['\u0080\u0085\u009f', '\\x80\\x85\\x9f', 'C1 range ends and NEL'],
    ['ok\rFAKE', 'ok\\rFAKE', 'bare CR overwrites the line'],
    ['two\r\nlines\n', 'two\\r\\nlines\\n', 'line breaks inside one field'],
    ['a\tb', 'a\\tb', 'tab (a column separator)'],
    ['\x00\x01\x07\x08\x0b\x0c\x1f', '\\x00\\x01\\x07\\x08\\x0b\\x0c\\x1f', 'NUL, BEL, BS, VT, FF, US'],
    ['del\x7f', 'del\\x7f', 'DEL'],
    ['\u202eevil\u202c \u2066x\u2069', '\\u202eevil\\u202c \\u2066x\\u2069', 'bidi override and isolate'],
    ['a\u2028b\u2029c', 'a\\u2028b\\u2029c', 'line and paragraph separators'],
    ['\u202a\u202b\u202d\u2067\u2068', '\\u202a\\u202b\\u202d\\u2067\\u2068', 'the other embeddings, overrides and isolates'],
    ['a\u200eb\u200fc\u061cd', 'a\\u200eb\\u200fc\\u061cd', 'bidi marks LRM, RLM and ALM'],
    [' ~\u00a0\u00ff', ' ~\u00a0\u00ff', 'space, tilde, NBSP and ÿ stay'],
  ];
  for (const [input, shown, what] of cases) assert.equal(escapeForTerminal(input), shown, what);
});

test('escapeForTerminal keepTabs: a header continuation line keeps its tab, nothing else changes', () => {
  assert.equal(escapeForTerminal('\tfolded\x1b[2J', { keepTabs: true }), '\tfolded\\x1b[2J');
  assert.equal(escapeForTerminal(' \t\r', { keepTabs: true }), ' \t\\r');
});

test('escapeBidiControls (the web UI): only the bidi controls become escapes; line breaks, tabs and other text stay', () => {
  assert.equal(escapeBidiControls('Subject: invoice\u202efdp.exe\r\n\tfolded \u2066x\u2069 \u200e\u200f\u061c'), 'Subject: invoice\\u202efdp.exe\r\n\tfolded \\u2066x\\u2069 \\u200e\\u200f\\u061c');
  assert.equal(escapeBidiControls('Grüße, 日本語, עברית, العربية'), 'Grüße, 日本語, עברית, العربية', 'right-to-left text itself is not a control');
});
