/**
 * Pre-trains the embedded base model: supervised next-token training on easy instances of the
 * built-in task families, so that RL starts where groups have signal (some right, some wrong).
 *
 *   npm run pretrain                      # writes packages/sapo/models/base.safetensors
 *   npm run pretrain -- --steps 200 --out /tmp/base.safetensors   # a quick try
 *
 * Reproducible: the model init, the task stream and the batch order all come from --seed, and the
 * run uses the wasm backend (or --backend). docs/MODEL.md records the result's pass rates.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import {
  ByteTokenizer,
  buildBatch,
  clipByGlobalNorm,
  EMBEDDED_CONFIG,
  EMBEDDED_MODEL_PATH,
  encodeCheckpoint,
  Policy,
  selectBackend,
} from '@swarm-node/sapo';
import { FAMILIES, Rng } from '@swarm-node/tasks';
import * as tf from '@tensorflow/tfjs-core';

/** How often each difficulty is drawn: mostly easy, some medium. */
const DIFFICULTY_WEIGHTS = [6, 3, 1];
const TOTAL_WEIGHT = DIFFICULTY_WEIGHTS.reduce((a, b) => a + b, 0);

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '4000' },
    batch: { type: 'string', default: '32' },
    'learning-rate': { type: 'string', default: '0.001' },
    seed: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'wasm' },
    out: { type: 'string', default: EMBEDDED_MODEL_PATH },
  },
});
const steps = Number(values.steps);
const batchSize = Number(values.batch);
const learningRate = Number(values['learning-rate']);
const seed = Number(values.seed);

const backend = await selectBackend({ backend: values.backend as 'wasm' });
console.log(`backend ${backend.name}; ${steps} steps of ${batchSize} tasks; seed ${seed}`);

const tokenizer = new ByteTokenizer();
const policy = Policy.create({ ...EMBEDDED_CONFIG }, { seed });
const optimizer = tf.train.adam(learningRate);
const variables = [...policy.params.values()];
const rng = new Rng(seed);
const pickDifficulty = () => {
  let u = rng.int(1, TOTAL_WEIGHT);
  for (const [index, weight] of DIFFICULTY_WEIGHTS.entries()) {
    u -= weight;
    if (u <= 0) return index + 1;
  }
  return DIFFICULTY_WEIGHTS.length;
};

const started = performance.now();
let recent = 0;
for (let step = 1; step <= steps; step++) {
  // One family per batch keeps sequences of similar length together (little padding).
  const family = FAMILIES[(step - 1) % FAMILIES.length] as (typeof FAMILIES)[number];
  const groups = Array.from({ length: batchSize }, () => {
    const task = family.generate(rng.int(0, 0x7fff_ffff), pickDifficulty());
    return { prompt: task.prompt, completions: [task.answer], rewards: [1] };
  });
  const batch = buildBatch(groups, tokenizer, EMBEDDED_CONFIG.contextLength);
  if (batch === null) continue;
  const loss = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => {
      const logProbs = policy.tokenLogProbs(batch.tokens, batch.targets);
      return tf.div(tf.neg(tf.sum(tf.mul(logProbs, batch.mask))), tf.sum(batch.mask)) as tf.Scalar;
    }, variables);
    const { clipped } = clipByGlobalNorm(
      variables.map((v) => grads[v.name] as tf.Tensor),
      1,
    );
    optimizer.applyGradients(variables.map((v, i) => ({ name: v.name, tensor: clipped[i] as tf.Tensor })));
    return value.dataSync()[0] as number;
  });
  tf.dispose([batch.tokens, batch.targets, batch.mask, batch.advantages]);
  recent += loss;
  if (step % 50 === 0) {
    const elapsed = (performance.now() - started) / 1000;
    console.log(`step ${step}  loss ${(recent / 50).toFixed(3)}  ${(elapsed / step).toFixed(2)} s/step`);
    recent = 0;
  }
}

const bytes = await encodeCheckpoint({
  step: 0, // SAPO steps taken: none yet; the pre-training steps are in the metadata
  config: { ...EMBEDDED_CONFIG },
  tokenizer: tokenizer.id,
  weights: new Map(policy.params),
  optimizer: new Map(),
  metadata: { 'created-by': 'scripts/pretrain.ts', seed: String(seed), steps: String(steps), batch: String(batchSize) },
});
mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(values.out, bytes);
console.log(`wrote ${values.out} (${(bytes.length / 1e6).toFixed(2)} MB)`);
