/**
 * Learner speed for the reference config (2 layers, d_model 128, 4 heads, context 64), batch 32:
 * SAPO train-step time and tokens/s with our graph against tfjs's default ("naive") graph, and
 * batched generation tokens/s with and without the KV cache, on every backend present. Ratios
 * are measured within one run.
 *
 *   npm run bench:learner                     (add -- --backends wasm to skip the slow pure-JS cpu)
 */
import { parseArgs } from 'node:util';
import {
  BACKEND_NAMES,
  type BackendName,
  ByteTokenizer,
  describeBackend,
  type GraphKind,
  generate,
  Policy,
  REFERENCE_CONFIG,
  type RolloutGroup,
  SapoLearner,
  selectBackend,
} from '@swarm-node/sapo';
import * as tf from '@tensorflow/tfjs-core';

const { values } = parseArgs({ options: { backends: { type: 'string', default: BACKEND_NAMES.join(',') } } });
const BATCH = 32;
const GROUP = 8;
const tokenizer = new ByteTokenizer();

/** 4 groups of 8 completions whose prompt + completion fill the 64-token context: 32 rows of 63 (input, target) pairs. */
function fullBatch(): RolloutGroup[] {
  return Array.from({ length: BATCH / GROUP }, (_, g) => ({
    prompt: `prompt ${g} ${'p'.repeat(20)}`,
    completions: Array.from({ length: GROUP }, (_, i) => `${i}`.padEnd(REFERENCE_CONFIG.contextLength - 32, 'x')),
    rewards: Array.from({ length: GROUP }, (_, i) => i % 2),
  }));
}

function timeSteps(graph: GraphKind, steps: number): { seconds: number; tokens: number } {
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 1, graph });
  const learner = new SapoLearner(policy, tokenizer, { localGroups: BATCH / GROUP, externalGroups: 0 });
  const groups = fullBatch();
  learner.step(groups, []); // warm-up: kernels compiled, Adam moments created
  const start = performance.now();
  for (let i = 0; i < steps; i++) learner.step(groups, []);
  const seconds = (performance.now() - start) / 1000 / steps;
  learner.dispose();
  policy.dispose();
  // Tokens the model reads per step: every (input, target) pair of the batch, prompt included.
  const rows = groups.flatMap((g) =>
    g.completions.map((c) => tokenizer.encodePrompt(g.prompt).length + tokenizer.encodeCompletion(c).length - 1),
  );
  return { seconds, tokens: rows.reduce((a, b) => a + b, 0) };
}

function timeGeneration(kvCache: boolean): number {
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 2 });
  const prompts = Array.from({ length: BATCH }, (_, i) => tokenizer.encodePrompt(`p${i}`.padEnd(14, '.')));
  const options = { maxNewTokens: REFERENCE_CONFIG.contextLength - 16, seed: 3, kvCache };
  generate(policy, prompts.slice(0, 2), { ...options, maxNewTokens: 4 }); // warm-up
  const start = performance.now();
  const generated = generate(policy, prompts, options).reduce((a, c) => a + c.tokens.length, 0);
  const seconds = (performance.now() - start) / 1000;
  policy.dispose();
  return generated / seconds;
}

console.log(`reference config ${JSON.stringify(REFERENCE_CONFIG)}, batch ${BATCH}, node ${process.version}\n`);
for (const name of values.backends.split(',') as BackendName[]) {
  let info: Awaited<ReturnType<typeof selectBackend>>;
  try {
    info = await selectBackend({ backend: name });
  } catch (error) {
    console.log(`${name}: not available: ${(error as { reason?: string }).reason ?? (error as Error).message}\n`);
    continue;
  }
  const steps = name === 'cpu' ? 1 : 5;
  const fast = timeSteps('fast', steps);
  const naive = timeSteps('naive', steps);
  const cached = timeGeneration(true);
  const uncached = timeGeneration(false);
  console.log(describeBackend(info));
  console.log(
    `  train step  ours ${fast.seconds.toFixed(2)} s (${Math.round(fast.tokens / fast.seconds)} tokens/s)   naive ${naive.seconds.toFixed(2)} s (${Math.round(naive.tokens / naive.seconds)} tokens/s)   ${(naive.seconds / fast.seconds).toFixed(1)}x`,
  );
  console.log(
    `  generation  KV cache ${Math.round(cached)} tokens/s   no cache ${Math.round(uncached)} tokens/s   ${(cached / uncached).toFixed(1)}x`,
  );
  console.log(`  (${steps} timed steps each; tf.memory ${tf.memory().numTensors} tensors after)\n`);
}
