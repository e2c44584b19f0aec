/**
 * Writes the golden files that pin every family's output (packages/tasks/test/golden/*.json).
 *
 *   npm run golden:update
 *
 * It refuses to rewrite a family whose output changed while its `version` did not: peers would
 * then regenerate different tasks from the same spec. Bump the version in the family's file first.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { FAMILIES, type TaskFamily } from '@swarm-node/tasks';

const GOLDEN_DIR = new URL('../packages/tasks/test/golden/', import.meta.url);
const SEEDS = [0, 1, 7, 42, 65_535, 4_294_967_295];

interface Golden {
  family: string;
  generatorVersion: number;
  cases: { seed: number; difficulty: number; prompt: string; answer: string; metadata: unknown }[];
}

function golden(family: TaskFamily): Golden {
  const cases = [];
  for (let difficulty = family.difficulty.min; difficulty <= family.difficulty.max; difficulty++) {
    for (const seed of SEEDS) {
      const { prompt, answer, metadata } = family.generate(seed, difficulty);
      cases.push({ seed, difficulty, prompt, answer, metadata });
    }
  }
  return { family: family.name, generatorVersion: family.version, cases };
}

mkdirSync(GOLDEN_DIR, { recursive: true });
let refused = 0;
for (const family of FAMILIES) {
  const file = new URL(`${family.name}.json`, GOLDEN_DIR);
  const text = `${JSON.stringify(golden(family), null, 2)}\n`;
  const old = existsSync(file) ? readFileSync(file, 'utf8') : null;
  if (old === text) {
    console.log(`${family.name}: unchanged (version ${family.version})`);
    continue;
  }
  if (old !== null && (JSON.parse(old) as Golden).generatorVersion === family.version) {
    console.error(
      `${family.name}: output changed but version is still ${family.version}; bump \`version\` in its family file, then run this again`,
    );
    refused++;
    continue;
  }
  writeFileSync(file, text);
  console.log(`${family.name}: written (version ${family.version})`);
}
if (refused > 0) process.exitCode = 1;
