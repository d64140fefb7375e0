import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/daemon-process.js';

/**
 * The dependency rule of shared/design/style.md, checked: cli → intake | delivery | web | dkim | inbox → spool →
 * config → shared, nothing sideways, and only cli touches `process`.
 */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  shared: [],
  config: ['shared'],
  spool: ['config', 'shared'],
  intake: ['spool', 'config', 'shared'],
  delivery: ['spool', 'config', 'shared'],
  dkim: ['spool', 'config', 'shared'],
  inbox: ['config', 'shared'],
  web: ['spool', 'config', 'shared'],
  cli: ['intake', 'delivery', 'dkim', 'inbox', 'web', 'spool', 'config', 'shared'],
};

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = await Promise.all(entries.map((entry) => (entry.isDirectory() ? sourceFiles(path.join(dir, entry.name)) : [path.join(dir, entry.name)])));
  return files.flat().filter((file) => file.endsWith('.ts'));
}

test('imports run one way between the layers of src/, and only src/cli touches process', async () => {
  const src = path.join(REPO_ROOT, 'src');
  const layers = (await readdir(src, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  assert.deepEqual(layers.filter((layer) => !(layer in MAY_IMPORT)), [], 'a new layer needs its place in the rule');
  const violations: string[] = [];
  for (const file of await sourceFiles(src)) {
    const layer = path.relative(src, file).split(path.sep)[0]!;
    const text = await readFile(file, 'utf8');
    for (const match of text.matchAll(/(?:from|import) '(\.\.?\/[^']+)'/g)) {
      const target = path.relative(src, path.resolve(path.dirname(file), match[1]!)).split(path.sep)[0]!;
      if (target !== layer && !MAY_IMPORT[layer]!.includes(target)) violations.push(`${path.relative(REPO_ROOT, file)} imports ${match[1]}`);
    }
    if (layer !== 'cli' && /\bprocess\.(env|argv|exit|on|once|stdout|stderr|stdin|cwd|kill|pid|getuid|exitCode)\b/.test(text)) violations.push(`${path.relative(REPO_ROOT, file)} touches process`);
  }
  assert.deepEqual(violations, []);
});
