import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FAMILIES, type TaskFamily } from '../src/index.js';
import { type Golden, goldenDifferences, goldenOf, goldenText } from './golden-cases.js';

// Checked-in outputs for fixed seeds: each family's generator (prompt, answer, metadata) and its
// verifier (the rewards of fixed completions). A change that alters any of them must bump the
// family's `version` (peers on the old version would otherwise disagree about a task or call each
// other's rewards lies), and then `npm run golden:update` rewrites the file.
describe.each(FAMILIES.map((family) => [family.name, family] as const))('%s golden outputs', (name, family) => {
  const text = readFileSync(new URL(`golden/${name}.json`, import.meta.url), 'utf8');
  const golden = JSON.parse(text) as Golden;

  it('were recorded for the current generator version (else run `npm run golden:update`)', () => {
    expect(golden.generatorVersion).toBe(family.version);
  });

  it('cover every difficulty', () => {
    const levels = new Set(golden.cases.map((c) => c.difficulty));
    expect(levels.size).toBe(family.difficulty.max - family.difficulty.min + 1);
  });

  it('are regenerated exactly from their seeds', () => {
    for (const { seed, difficulty, scored: _, ...expected } of golden.cases) {
      const { prompt, answer, metadata } = family.generate(seed, difficulty);
      expect({ prompt, answer, metadata }, `seed ${seed} difficulty ${difficulty}`).toEqual(expected);
    }
  });

  it('are re-scored exactly: the verifier gives every pinned completion its pinned reward', () => {
    for (const { seed, difficulty, scored } of golden.cases) {
      const task = family.generate(seed, difficulty);
      const now = scored.map(({ completion }) => ({ completion, reward: family.score(task, completion) }));
      expect(now, `seed ${seed} difficulty ${difficulty}`).toEqual(scored);
    }
  });

  it('pin right and wrong completions of every case: the answer in tags scores 1, empty and wrong ones 0', () => {
    for (const { seed, difficulty, answer, scored } of golden.cases) {
      const reward = (completion: string) => scored.find((s) => s.completion === completion)?.reward;
      expect(reward(`<answer>${answer}</answer>`), `seed ${seed} difficulty ${difficulty}`).toBe(1);
      expect(reward(''), `seed ${seed} difficulty ${difficulty}`).toBe(0);
      expect(scored.filter((s) => s.reward === 0).length, `seed ${seed} difficulty ${difficulty}`).toBeGreaterThan(2);
    }
  });

  it('are exactly what `npm run golden:update` writes', () => {
    expect(text).toBe(goldenText(goldenOf(family)));
  });
});

describe('golden:update', () => {
  const family = FAMILIES.find((f) => f.name === 'sort') as TaskFamily;
  const golden = goldenOf(family);

  it('finds nothing changed when the code reproduces the file, including extra cases in the code', () => {
    expect(goldenDifferences(family, golden)).toEqual([]);
    expect(goldenDifferences(family, { ...golden, cases: golden.cases.slice(0, 3) })).toEqual([]);
  });

  it('refuses a verifier that scores a pinned completion differently, as it refuses a changed prompt', () => {
    const lenient: TaskFamily = {
      ...family,
      score: (task, completion) => (completion === '' ? 1 : family.score(task, completion)),
    };
    const differences = goldenDifferences(lenient, golden);
    expect(differences).toHaveLength(golden.cases.length);
    expect(differences[0]).toBe('seed 0 difficulty 1: "" scores 1, pinned 0');
    const renamed: TaskFamily = {
      ...family,
      generate: (seed, difficulty) => ({ ...family.generate(seed, difficulty), prompt: 'changed' }),
    };
    expect(goldenDifferences(renamed, golden)[0]).toBe('seed 0 difficulty 1: prompt changed');
  });
});
