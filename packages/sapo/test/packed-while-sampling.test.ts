/**
 * keepPackedWeights: 'sampling' on wasm: sampling multiplies by the base itself, so XNNPACK keeps
 * a packed copy of every matrix (the base held twice), and the first step after it re-creates the
 * base's tensors but the vocabulary head, which drops those copies (held once, and the head's
 * packed copy), before multiplying by transient copies.
 * Measured on the wasm heap, which only grows: this file runs in a process of its own (vitest
 * isolates files), so the heap's size says what was needed at the peak, and a second base that
 * fits without the heap growing shows the room the packed copies left.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { PretrainedPolicy } from '../src/pretrained.js';
import { generate } from '../src/sample.js';
import { LARGE_BASE, logProbGradient, readLargeBase, wasmHeapBytes } from './fixtures/large-base.js';

const load = (keepPackedWeights: 'sampling' | false) =>
  PretrainedPolicy.load(LARGE_BASE, readLargeBase, {
    contextLength: 32,
    lora: { rank: 4, seed: 1 },
    keepPackedWeights,
  });

/** Greedy sampling of a few tokens: every product with the base, as sampling runs them. */
const sample = (policy: PretrainedPolicy) =>
  generate(policy, [[1, 2, 3, 4, 5, 6, 7, 8]], { seed: 1, maxNewTokens: 3, temperature: 0 }).map((c) => c.tokens);

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe("keepPackedWeights: 'sampling' on wasm", () => {
  it('holds the base twice after sampling, once after the step re-created it, and packs it again to sample again', async () => {
    const start = wasmHeapBytes();
    const policy = await load('sampling');
    const baseBytes = policy.baseParameterCount() * 4;
    const tokens = tf.memory().numTensors;
    const first = sample(policy);
    const sampled = wasmHeapBytes();
    expect(sampled - start).toBeGreaterThan(1.8 * baseBytes);

    logProbGradient(policy);
    // Re-created one tensor at a time through JavaScript: the heap did not grow for it, nor for
    // the step, which reuses the space the packed copies left; no tensor is left behind.
    expect(wasmHeapBytes() - sampled).toBeLessThan(0.1 * baseBytes);
    expect(tf.memory().numTensors).toBe(tokens);
    // Held once (but the head, 1.5% of this base, which stays packed): a second base fits in that
    // space (were the packed copies still held, the heap would grow by a whole base for it).
    const second = await load(false);
    expect(wasmHeapBytes() - sampled).toBeLessThan(0.25 * baseBytes);
    second.dispose();

    // Sampling again packs the base again, in the room it had: the same tokens.
    expect(sample(policy)).toEqual(first);
    expect(wasmHeapBytes() - sampled).toBeLessThan(0.25 * baseBytes);
    logProbGradient(policy);
    expect(tf.memory().numTensors).toBe(tokens);
    policy.dispose();
  });
});
