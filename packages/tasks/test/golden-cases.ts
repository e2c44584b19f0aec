/**
 * The golden files' contents (packages/tasks/test/golden/<family>.json), shared by golden.test.ts,
 * which checks the current code against them, and scripts/golden-update.ts, which writes them.
 *
 * A golden file pins a family's whole contract for fixed seeds at every difficulty: the generator
 * (prompt, answer, metadata) and the verifier (the reward of a fixed set of completions per case).
 * Peers regenerate and re-score each other's tasks, so a change to either without a `version` bump
 * makes honest peers call each other liars.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Task, TaskFamily } from '@swarm-node/tasks';

export const GOLDEN_SEEDS: readonly number[] = [0, 1, 7, 42, 65_535, 4_294_967_295];

export interface Scored {
  completion: string;
  reward: number;
}

export interface GoldenCase {
  seed: number;
  difficulty: number;
  prompt: string;
  answer: string;
  metadata: unknown;
  /** Completions of this case's task with the reward the verifier gives each. */
  scored: Scored[];
}

export interface Golden {
  family: string;
  generatorVersion: number;
  cases: GoldenCase[];
}

/**
 * The completions pinned per case, from its answer `a` and a wrong answer `w` in the same form:
 * right in tags, bare, with reasoning and padding, wrong, empty, near misses of the format (an
 * unclosed tag, a prefix, the last pair wrong) and variants that only some families accept (case,
 * a leading zero, a trailing dot, a bracketed list), each once. Append new ones at the end: changing or
 * removing one re-pins it, which the updater allows, but it loses what the old one pinned.
 */
export function completionsFor(a: string, w: string): string[] {
  return [
    `<answer>${a}</answer>`,
    a,
    `Let me work it out.\n<answer> ${a} </answer>\n`,
    `<answer>${w}</answer>`,
    '',
    '<answer></answer>',
    `<answer>${a}`,
    `<answer>${a}</answer>\n<answer>${w}</answer>`,
    `<answer>${w}</answer> then <answer>${a}</answer>`,
    `Answer: ${a}`,
    `<answer>${a}.</answer>`,
    `<answer>${a.toUpperCase()}</answer>`,
    `<answer>${a.toLowerCase()}</answer>`,
    `<answer>0${a}</answer>`,
    `<answer>[${a.split(/\s+/).join(', ')}]</answer>`,
  ];
}

/**
 * A wrong answer in the task's own form: the first answer of another golden seed at the same
 * difficulty that the verifier scores 0, else the answer with a digit appended.
 */
function wrongAnswer(family: TaskFamily, task: Task): string {
  const start = GOLDEN_SEEDS.indexOf(task.seed);
  const others = GOLDEN_SEEDS.map((_, i) => GOLDEN_SEEDS[(start + 1 + i) % GOLDEN_SEEDS.length] as number);
  const candidates = [...others.map((seed) => family.generate(seed, task.difficulty).answer), `${task.answer}0`, '?'];
  return candidates.find((w) => family.score(task, `<answer>${w}</answer>`) === 0) ?? '?';
}

/** A golden file's text: JSON indented by 2, one line per scored completion. */
export function goldenText(golden: Golden): string {
  const text = JSON.stringify(golden, null, 2).replace(
    /\{\n\s*("completion": .*),\n\s*("reward": .*)\n\s*\}/g,
    '{ $1, $2 }',
  );
  return `${text}\n`;
}

/** What the current code says a family's golden file should hold. */
export function goldenOf(family: TaskFamily): Golden {
  const cases: GoldenCase[] = [];
  for (let difficulty = family.difficulty.min; difficulty <= family.difficulty.max; difficulty++) {
    for (const seed of GOLDEN_SEEDS) {
      const task = family.generate(seed, difficulty);
      const { prompt, answer, metadata } = task;
      const scored = [...new Set(completionsFor(answer, wrongAnswer(family, task)))].map((completion) => ({
        completion,
        reward: family.score(task, completion),
      }));
      cases.push({ seed, difficulty, prompt, answer, metadata, scored });
    }
  }
  return { family: family.name, generatorVersion: family.version, cases };
}

/**
 * What the current code no longer reproduces of a golden file, one line each: a prompt, answer or
 * metadata it generates differently, or a pinned completion it scores differently. Empty when
 * everything pinned still holds (new cases or completions may have been added since).
 */
export function goldenDifferences(family: TaskFamily, golden: Golden): string[] {
  const differences: string[] = [];
  for (const { seed, difficulty, scored = [], ...expected } of golden.cases) {
    const where = `seed ${seed} difficulty ${difficulty}`;
    let task: Task;
    try {
      task = family.generate(seed, difficulty);
    } catch (error) {
      differences.push(`${where}: no longer generates (${(error as Error).message})`);
      continue;
    }
    for (const key of ['prompt', 'answer', 'metadata'] as const) {
      if (!isDeepStrictEqual(JSON.parse(JSON.stringify(task[key])), expected[key]))
        differences.push(`${where}: ${key} changed`);
    }
    for (const { completion, reward } of scored) {
      const now = family.score(task, completion);
      if (now !== reward) differences.push(`${where}: ${JSON.stringify(completion)} scores ${now}, pinned ${reward}`);
    }
  }
  return differences;
}
