import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import { escapeBidiControls } from '../shared/terminal-escape.js';

/**
 * Templates (web/views) and assets (web/assets, plus htmx and uPlot from their packages): everything the pages
 * load comes from this server, never from a CDN, so the UI works offline and the CSP can say 'self'.
 */
const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
export const ASSETS_DIR = path.join(WEB_DIR, 'assets');
const require = createRequire(import.meta.url);
const packageDir = (name: string) => path.dirname(require.resolve(`${name}/package.json`));

/** The only files /assets/NAME serves: an allow-list, so no path in a URL reaches the file system. */
const ASSET_FILES: Readonly<Record<string, { root: string; file: string }>> = {
  'app.js': { root: ASSETS_DIR, file: 'app.js' },
  'app.css': { root: ASSETS_DIR, file: 'app.css' },
  'htmx.min.js': { root: path.join(packageDir('htmx.org'), 'dist'), file: 'htmx.min.js' },
  'uPlot.iife.min.js': { root: path.join(packageDir('uplot'), 'dist'), file: 'uPlot.iife.min.js' },
  'uPlot.min.css': { root: path.join(packageDir('uplot'), 'dist'), file: 'uPlot.min.css' },
};

/**
 * The asset a URL names, or undefined. An own-property lookup: indexing the table with the URL segment found
 * `__proto__`, `constructor` or `toString` on Object.prototype, and an unauthenticated client turned each into a 500
 * with an error-level stack trace in the log.
 */
export function assetFile(name: string): { root: string; file: string } | undefined {
  return Object.hasOwn(ASSET_FILES, name) ? ASSET_FILES[name] : undefined;
}

const HTML_ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** A value as `<%= %>` prints it: HTML-escaped, and bidi controls shown as `\u202e` as the CLI shows them. */
function escapeForPage(value: unknown): string {
  return escapeBidiControls(String(value).replace(/[&<>"']/g, (char) => HTML_ENTITIES[char]!));
}

// autoEscape: `<%= %>` escapes every value; nothing a client, a remote MTA or a message sent is printed raw.
const eta = new Eta({ views: path.join(WEB_DIR, 'views'), cache: true, autoEscape: true, autoTrim: false, escapeFunction: escapeForPage });

export function renderView(name: string, data: object): string {
  return eta.render(`./${name}`, data);
}

export const isoTime = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));
