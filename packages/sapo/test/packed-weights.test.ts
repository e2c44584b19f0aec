/**
 * What keepPackedWeights buys on wasm: XNNPACK keeps a packed copy of every matrix a product
 * multiplies by, so a pre-trained base is held twice unless the policy multiplies by transient
 * copies. Measured on the wasm heap, which only grows: this file runs in a process of its own
 * (vitest isolates files), the transient model first, so the heap's size after each says what it
 * needed at its peak ('sampling', which keeps the copies while sampling only, has a file of its
 * own: packed-while-sampling.test.ts). Here too: every mode samples and steps to the same results.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openModelFolder } from '../src/hf/folder.js';
import { HfTokenizer } from '../src/hf/tokenizer.js';
import { type KeepPackedWeights, PretrainedPolicy } from '../src/pretrained.js';
import { generate } from '../src/sample.js';
import { SapoLearner } from '../src/sapo.js';
import { LARGE_BASE, logProbGradient, readLargeBase, wasmHeapBytes } from './fixtures/large-base.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

/** A training step's products with the base (the log-probs' gradient), then what the heap grew to. */
async function exercise(keepPackedWeights: boolean): Promise<{ baseBytes: number; heapBytes: number }> {
  const policy = await PretrainedPolicy.load(LARGE_BASE, readLargeBase, {
    contextLength: 32,
    lora: { rank: 4, seed: 1 },
    keepPackedWeights,
  });
  logProbGradient(policy);
  const baseBytes = policy.baseParameterCount() * 4;
  policy.dispose();
  return { baseBytes, heapBytes: wasmHeapBytes() };
}

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('keepPackedWeights on wasm', () => {
  it('false holds the base once; true holds it twice (XNNPACK keeps a packed copy of each matrix)', async () => {
    const start = wasmHeapBytes();
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

describe("keepPackedWeights: 'sampling' on wasm", () => {
  let dir = '';
  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it("samples the same tokens and takes the same steps, to the same adapters, as true, false and 'head'", async () => {
    dir = await mkdtemp(join(tmpdir(), 'packed-while-sampling-'));
    const model = await writeTinyModel(dir, { architecture: 'qwen2', seed: 3 });
    const folder = await openModelFolder(model.dir);
    const tokenizer = await HfTokenizer.fromFolder(model.dir);
    const prompts = ['Say something.', 'Another one.'].map((p) => tokenizer.encodePrompt(p));
    /** Two rounds of a node's cycle, sampling then a SAPO step on what it sampled: everything a mode could change. */
    const rounds = async (keepPackedWeights: KeepPackedWeights) => {
      const policy = await PretrainedPolicy.load(folder.config, (name) => folder.readTensor(name), {
        contextLength: 64,
        lora: { rank: 4, seed: 7 },
        keepPackedWeights,
      });
      const learner = new SapoLearner(policy, tokenizer, { localGroups: 1, externalGroups: 0, microBatchRows: 2 });
      const sampled: number[][] = [];
      const losses: number[] = [];
      for (const seed of [11, 12]) {
        const completions = generate(policy, [prompts[0], prompts[0], prompts[1], prompts[1]] as number[][], {
          seed,
          maxNewTokens: 6,
        });
        const tokens = completions.map((c) => c.tokens);
        sampled.push(...tokens);
        const report = learner.step(
          [
            {
              prompt: 'Say something.',
              completions: tokens.map(() => ''),
              completionTokens: tokens,
              rewards: tokens.map((_, i) => i % 2),
            },
          ],
          [],
        );
        expect(report.updated).toBe(true);
        losses.push(...report.losses, ...report.gradNorms);
      }
      const adapters = [...policy.params.values()].map((p) => [...p.dataSync()]);
      learner.dispose();
      policy.dispose();
      return { sampled, losses, adapters };
    };
    const whileSampling = await rounds('sampling');
    expect(whileSampling).toEqual(await rounds(false));
    expect(whileSampling).toEqual(await rounds(true));
    expect(whileSampling).toEqual(await rounds('head'));
    await folder.close();
  });
});
