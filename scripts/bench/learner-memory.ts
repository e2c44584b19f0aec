/**
 * Learner memory on wasm against the micro-batch sizes: the embedded model samples 6 task prompts
 * (60-100 bytes) × 8 completions × 48 new tokens, then takes one SAPO step on 8 groups (the 6
 * local ones and 2 external ones of text, re-tokenized), for 3 rounds. Reports process RSS,
 * `process.memoryUsage().external`, tf.memory() and the wasm heap after each phase.
 *
 * A wasm heap grows to its high-water mark and never shrinks, so each configuration runs in a
 * fresh child process; the heap after the last round is that configuration's high-water mark.
 *
 *   npx tsx scripts/bench/learner-memory.ts                   every configuration, one table row each
 *   npx tsx scripts/bench/learner-memory.ts --passes 2 --beta 0.04
 *   npx tsx scripts/bench/learner-memory.ts --train 16 --sample 8     one configuration here, JSON lines
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  ByteTokenizer,
  EMBEDDED_MODEL_PATH,
  generateText,
  type RolloutGroup,
  restoreLearner,
  selectBackend,
} from '@swarm-node/sapo';
import { FAMILIES } from '@swarm-node/tasks';
import * as tf from '@tensorflow/tfjs-core';

const PROMPTS = 6;
const GROUP = 8;
const EXTERNAL = 2;
const NEW_TOKENS = 48;
const ROUNDS = 3;
/** Rows per micro-batch that stands for "the whole batch at once": more than 8 groups × 8 rows. */
const ALL = 1_000_000;

const { values } = parseArgs({
  options: {
    train: { type: 'string' },
    sample: { type: 'string' },
    passes: { type: 'string', default: '1' },
    beta: { type: 'string', default: '0' },
  },
});
/** One phase of one round, as a child prints it. */
interface Line {
  phase: string;
  round: number;
  seconds: number;
  rss: number;
  external: number;
  tfBytes: number;
  heap: number;
  groups?: number;
  tokens?: number;
}

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)}`.padStart(5);

/** Real task prompts of 60-100 bytes, the same every run: seeds 0, 1, … of every family at every difficulty. */
function taskPrompts(count: number): string[] {
  const prompts: string[] = [];
  for (let seed = 0; prompts.length < count; seed++) {
    for (const family of FAMILIES) {
      for (let d = family.difficulty.min; d <= family.difficulty.max && prompts.length < count; d++) {
        const { prompt } = family.generate(seed, d);
        const bytes = Buffer.byteLength(prompt);
        if (bytes >= 60 && bytes <= 100 && !prompts.includes(prompt)) prompts.push(prompt);
      }
    }
  }
  return prompts;
}

function measure(): Record<string, number> {
  const { rss, external } = process.memoryUsage();
  const memory = tf.memory();
  const heap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;
  return { rss, external, tfBytes: memory.numBytes, tensors: memory.numTensors, heap };
}

/** One configuration, in this (fresh) process: prints one JSON line per phase. */
async function child(trainRows: number, sampleRows: number): Promise<void> {
  await selectBackend({ backend: 'wasm' });
  const tokenizer = new ByteTokenizer();
  const learner = await restoreLearner(EMBEDDED_MODEL_PATH, tokenizer, {
    localGroups: PROMPTS,
    externalGroups: EXTERNAL,
    passes: Number(values.passes),
    beta: Number(values.beta),
    microBatchRows: trainRows,
  });
  const prompts = taskPrompts(PROMPTS + EXTERNAL);
  const report = (phase: string, round: number, seconds: number, extra: Record<string, number> = {}) =>
    console.log(JSON.stringify({ phase, round, seconds, ...measure(), ...extra }));
  report('loaded', 0, 0);
  for (let round = 1; round <= ROUNDS; round++) {
    let start = performance.now();
    const rows = prompts.slice(0, PROMPTS).flatMap((prompt) => new Array<string>(GROUP).fill(prompt));
    const sampled = generateText(learner.policy, tokenizer, rows, {
      maxNewTokens: NEW_TOKENS,
      seed: round,
      microBatchRows: sampleRows,
    });
    report('sampled', round, (performance.now() - start) / 1000);
    // Rewards only need signal here (memory depends on shapes): half the completions of each group win.
    const groupOf = (texts: { text: string; finished: boolean }[], prompt: string): RolloutGroup => ({
      prompt,
      completions: texts.map((c) => c.text),
      rewards: texts.map((_, i) => i % 2),
      finished: texts.map((c) => c.finished),
    });
    const local = prompts.slice(0, PROMPTS).map((prompt, g) => ({
      ...groupOf(sampled.slice(g * GROUP, (g + 1) * GROUP), prompt),
      completionTokens: sampled.slice(g * GROUP, (g + 1) * GROUP).map((c) => c.tokens),
    }));
    // Peers' groups: the same model's text for the other prompts, as a peer would send it.
    const external = prompts.slice(PROMPTS).map((prompt, g) => {
      const texts = generateText(learner.policy, tokenizer, new Array<string>(GROUP).fill(prompt), {
        maxNewTokens: NEW_TOKENS,
        seed: 1000 * round + g,
        microBatchRows: sampleRows,
      });
      return groupOf(texts, prompt);
    });
    start = performance.now();
    const step = learner.step(local, external);
    const stats = step.stats ?? { meanCompletionTokens: 0 };
    report('stepped', round, (performance.now() - start) / 1000, {
      groups: step.counts.local + step.counts.external,
      tokens: step.tokens,
      meanCompletionTokens: stats.meanCompletionTokens,
    });
  }
  learner.dispose();
  learner.policy.dispose();
}

function parent(): void {
  const configs = [
    ...[4, 8, 16, 64, ALL].map((train) => ({ train, sample: 8 })),
    ...[4, 16, ALL].map((sample) => ({ train: 8, sample })),
  ];
  const name = (rows: number) => (rows === ALL ? 'all' : String(rows));
  console.log(
    `embedded model, wasm; ${PROMPTS} prompts × ${GROUP} completions × ${NEW_TOKENS} new tokens, then a step on ` +
      `${PROMPTS} local + ${EXTERNAL} external groups; ${ROUNDS} rounds; passes ${values.passes}, beta ${values.beta}; ` +
      `each configuration in a fresh process. MiB; heap = wasm heap, the high-water mark.\n`,
  );
  console.log(
    'train rows  sample rows | heap after round 1: sampling  step | after round 3: heap   rss  external  tf.memory | sample s  step s',
  );
  for (const { train, sample } of configs) {
    const script = fileURLToPath(import.meta.url);
    const args = ['--import', 'tsx', script, '--train', String(train), '--sample', String(sample)];
    const run = spawnSync(process.execPath, [...args, '--passes', values.passes, '--beta', values.beta], {
      encoding: 'utf8',
    });
    if (run.status !== 0) throw new Error(`train ${train} sample ${sample} failed:\n${run.stderr}`);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Line);
    const at = (phase: string, round: number) => lines.find((l) => l.phase === phase && l.round === round) as Line;
    const mean = (phase: string) => lines.filter((l) => l.phase === phase).reduce((a, l) => a + l.seconds, 0) / ROUNDS;
    const end = at('stepped', ROUNDS);
    console.log(
      [
        name(train).padStart(10),
        `${name(sample).padStart(12)} |`,
        MiB(at('sampled', 1).heap).padStart(28),
        `${MiB(at('stepped', 1).heap)} |`,
        MiB(end.heap).padStart(19),
        MiB(end.rss),
        MiB(end.external).padStart(9),
        `${MiB(end.tfBytes).padStart(10)} |`,
        mean('sampled').toFixed(1).padStart(8),
        mean('stepped').toFixed(1).padStart(7),
        `  (last step: ${end.groups} groups, ${end.tokens} completion tokens)`,
      ].join(' '),
    );
  }
}

if (values.train === undefined) parent();
else await child(Number(values.train), Number(values.sample ?? ALL));
