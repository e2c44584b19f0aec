/**
 * What keepPackedWeights buys on wasm: XNNPACK keeps a packed copy of every matrix a product
 * multiplies by, so a pre-trained base is held twice unless the policy multiplies by transient
 * copies. Measured on the wasm heap, which only grows: this file runs in a process of its own
 * (vitest isolates files), the transient model first, so the heap's size after each says what it
 * needed at its peak.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PretrainedConfig } from '../src/hf/config.js';
import { baseShapes, PretrainedPolicy } from '../src/pretrained.js';

/** About 260 MB of fp32 base weights: far above the heap's growth step (at most 96 MiB). */
const CONFIG: PretrainedConfig = {
  architecture: 'llama',
  vocabSize: 1000,
  hiddenSize: 1024,
  intermediateSize: 2816,
  layers: 5,
  heads: 8,
  kvHeads: 8,
  headDim: 128,
  ropeTheta: 10_000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: true,
  attentionBias: false,
  maxPositions: 64,
};

const heap = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;

/** Small deterministic values: the products' results do not matter here, only what they hold. */
const read = async (name: string) => {
  const size = (baseShapes(CONFIG).get(name) as number[]).reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: size }, (_, i) => ((i * 7919) % 1009) / 1009 - 0.5).map((v) => v * 0.02);
};

/** A forward pass, the log-probs' gradient and greedy sampling: every product with the base. */
async function exercise(keepPackedWeights: boolean): Promise<{ baseBytes: number; heapBytes: number }> {
  const policy = await PretrainedPolicy.load(CONFIG, read, {
    contextLength: 32,
    lora: { rank: 4, seed: 1 },
    keepPackedWeights,
  });
  const tokens = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], undefined, 'int32');
  const targets = tf.tensor2d([[2, 3, 4, 5, 6, 7, 8, 9]], undefined, 'int32');
  const { value, grads } = tf.variableGrads(
    () => tf.mean(policy.tokenLogProbs(tokens, targets)) as tf.Scalar,
    [...policy.params.values()],
  );
  tf.dispose([tokens, targets, value, ...Object.values(grads)]);
  const baseBytes = policy.baseParameterCount() * 4;
  policy.dispose();
  return { baseBytes, heapBytes: heap() };
}

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('keepPackedWeights on wasm', () => {
  it('false holds the base once; true holds it twice (XNNPACK keeps a packed copy of each matrix)', async () => {
    const start = heap();
    const transient = await exercise(false);
    // The base once, one layer's activations, one transient block and its packed copy, and the
    // heap's overgrowth: well under a second copy of the base.
    expect(transient.heapBytes - start).toBeLessThan(1.5 * transient.baseBytes);
    // The heap never shrinks: the kept model reuses what the transient one freed, then needs a
    // packed copy of every matrix on top.
    const kept = await exercise(true);
    expect(kept.heapBytes - start).toBeGreaterThan(1.8 * kept.baseBytes);
  });
});
