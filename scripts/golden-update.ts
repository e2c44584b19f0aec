/**
 * Writes the golden files that pin every family's generator and verifier
 * (packages/tasks/test/golden/*.json; contents in packages/tasks/test/golden-cases.ts).
 *
 *   npm run golden:update
 *
 * It refuses to rewrite a family whose pinned output changed while its `version` did not: a
 * prompt, answer or metadata generated differently, or a pinned completion scored differently.
 * Peers would then regenerate different tasks, or re-score the same completions differently and
 * call each other liars, from the same spec. Bump the version in the family's file first. Adding
 * cases or completions without changing what is already pinned needs no bump.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
// The source, not the build: it pins the code in the tree, built or not.
import { FAMILIES } from '../packages/tasks/src/index.js';
import { type Golden, goldenDifferences, goldenOf, goldenText } from '../packages/tasks/test/golden-cases.js';

const GOLDEN_DIR = new URL('../packages/tasks/test/golden/', import.meta.url);

mkdirSync(GOLDEN_DIR, { recursive: true });
let refused = 0;
for (const family of FAMILIES) {
  const file = new URL(`${family.name}.json`, GOLDEN_DIR);
  const text = goldenText(goldenOf(family));
  const old = existsSync(file) ? readFileSync(file, 'utf8') : null;
  if (old === text) {
    console.log(`${family.name}: unchanged (version ${family.version})`);
    continue;
  }
  const pinned = old === null ? null : (JSON.parse(old) as Golden);
  if (pinned !== null && pinned.generatorVersion === family.version) {
    const differences = goldenDifferences(family, pinned);
    if (differences.length > 0) {
      console.error(
        `${family.name}: pinned output changed but version is still ${family.version}; bump \`version\` in its family file, then run this again:`,
      );
      for (const line of differences.slice(0, 10)) console.error(`  ${line}`);
      if (differences.length > 10) console.error(`  … and ${differences.length - 10} more`);
      refused++;
      continue;
    }
  }
  writeFileSync(file, text);
  console.log(`${family.name}: written (version ${family.version})`);
}
if (refused > 0) process.exitCode = 1;
