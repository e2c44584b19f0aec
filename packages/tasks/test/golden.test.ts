import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FAMILIES } from '../src/index.js';

// Checked-in outputs for fixed seeds. A generator change that alters any of them must bump the
// family's `version` (peers on the old version would otherwise disagree about a task), and then
// `npm run golden:update` rewrites the file.
describe.each(FAMILIES.map((family) => [family.name, family] as const))('%s golden outputs', (name, family) => {
  const golden = JSON.parse(readFileSync(new URL(`golden/${name}.json`, import.meta.url), 'utf8')) as {
    generatorVersion: number;
    cases: { seed: number; difficulty: number; prompt: string; answer: string; metadata: unknown }[];
  };

  it('were recorded for the current generator version (else run `npm run golden:update`)', () => {
    expect(golden.generatorVersion).toBe(family.version);
  });

  it('cover every difficulty', () => {
    const levels = new Set(golden.cases.map((c) => c.difficulty));
    expect(levels.size).toBe(family.difficulty.max - family.difficulty.min + 1);
  });

  it('are regenerated exactly from their seeds', () => {
    for (const { seed, difficulty, ...expected } of golden.cases) {
      const { prompt, answer, metadata } = family.generate(seed, difficulty);
      expect({ prompt, answer, metadata }, `seed ${seed} difficulty ${difficulty}`).toEqual(expected);
    }
  });
});
