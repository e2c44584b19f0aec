import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// The package's build (as a node uses it): the learner worker runs dist/learner-worker.js.
import {
  CheckpointError,
  type Learner,
  loadCheckpoint,
  MemoryPlanError,
  openLearner,
  type RolloutGroup,
  startLearnerWorker,
} from '@swarm-node/sapo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from './fixtures/tiny-models.js';

let dir = '';
let qwen = '';
let llama = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pretrained-learner-'));
  qwen = (await writeTinyModel(join(dir, 'qwen'), { architecture: 'qwen2', dtype: 'BF16', shards: 2 })).dir;
  llama = (await writeTinyModel(join(dir, 'llama'), { architecture: 'llama', seed: 2 })).dir;
});

afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

/** The trivial task: reward 1 for a completion that contains an "e". */
const reward = (text: string): number => (text.includes('e') ? 1 : 0);
const PROMPTS = ['Say something.', 'Another one.'];

async function round(
  learner: Learner,
  seed: number,
  groupSize = 16,
): Promise<{ groups: RolloutGroup[]; mean: number }> {
  const prompts = PROMPTS.flatMap((p) => new Array<string>(groupSize).fill(p));
  const completions = await learner.sample(prompts, { maxNewTokens: 4, seed });
  const groups = PROMPTS.map((prompt, g) => {
    const group = completions.slice(g * groupSize, (g + 1) * groupSize).map((c) => {
      if (c === null) throw new Error('a prompt did not fit');
      return c;
    });
    return {
      prompt,
      completions: group.map((c) => c.text),
      rewards: group.map((c) => reward(c.text)),
      completionTokens: group.map((c) => c.tokens),
      finished: group.map((c) => c.finished),
    };
  });
  const all = groups.flatMap((g) => g.rewards);
  return { groups, mean: all.reduce((a, b) => a + b, 0) / all.length };
}

describe('a learner on a Hugging Face model folder', () => {
  it('samples through the chat template, and SAPO steps on its LoRA adapters raise the reward of a trivial task', async () => {
    const learner = await openLearner({
      model: qwen,
      backend: 'wasm',
      sapo: { localGroups: 2, externalGroups: 0, learningRate: 3e-2, seed: 1 },
      lora: { rank: 4, alpha: 8 },
    });
    expect(learner.info.memoryPlan?.fits).toBe(true);
    expect(learner.info.config).toMatchObject({ kind: 'lora', architecture: 'qwen2', lora: { rank: 4, alpha: 8 } });
    expect(learner.info.tokenizer).toMatch(/^hf-[0-9a-f]{16}$/);
    const before = (await round(learner, 100)).mean;
    for (let step = 0; step < 12; step++) {
      const { groups } = await round(learner, step);
      const report = await learner.step(groups, []);
      expect(report.losses.every(Number.isFinite)).toBe(true);
    }
    const after = (await round(learner, 100)).mean;
    await learner.close();
    expect(after).toBeGreaterThan(before);
  }, 120_000);

  it('saves adapters only, resumes them exactly on the same base, and refuses another base', async () => {
    const checkpoints = join(dir, 'checkpoints');
    const spec = {
      model: qwen,
      backend: 'wasm' as const,
      sapo: { localGroups: 2, externalGroups: 0, learningRate: 1e-2 },
    };
    const learner = await openLearner(spec);
    const { groups } = await round(learner, 7, 4);
    await learner.step(groups, []);
    const file = await learner.save(checkpoints, { round: '3' });
    const saved = await loadCheckpoint(file);
    expect([...saved.weights.keys()].every((name) => /\.lora_[AB]\.weight$/.test(name))).toBe(true);
    expect(saved.weights.size).toBe(2 * 7 * 2); // A and B of 7 projections in each of 2 layers
    expect(saved.config).toMatchObject({ kind: 'lora', base: expect.stringMatching(/^[0-9a-f]{64}$/) });
    for (const tensor of [...saved.weights.values(), ...saved.optimizer.values()]) tensor.dispose();
    const sampled = await learner.sample(['Again.'], { maxNewTokens: 6, seed: 3, temperature: 0 });
    await learner.close();

    // In a worker, as a node runs it: the same step count, metadata and greedy completion.
    const resumed = await startLearnerWorker({ ...spec, resume: file });
    expect(resumed.steps).toBe(1);
    expect(resumed.info.metadata.round).toBe('3');
    expect(await resumed.sample(['Again.'], { maxNewTokens: 6, seed: 3, temperature: 0 })).toEqual(sampled);
    await resumed.close();

    await expect(openLearner({ ...spec, model: llama, resume: file })).rejects.toThrow(CheckpointError);
    await expect(openLearner({ ...spec, resume: file, lora: { rank: 8 } })).rejects.toThrow(/config differs in lora/);
  }, 120_000);

  it('refuses a folder whose tokenizer has more ids than the model has embeddings', async () => {
    const small = (await writeTinyModel(join(dir, 'small-vocab'), { architecture: 'llama', vocabSize: 300 })).dir;
    await expect(openLearner({ model: small, backend: 'wasm' })).rejects.toThrow(
      /the tokenizer has \d+ ids but the model only 300 embeddings: they are not one model's/,
    );
  });

  it('refuses a model the memory allowed cannot hold, before loading it, saying what it needs', async () => {
    const refused = openLearner({ model: qwen, backend: 'wasm', memoryLimit: 2 ** 20 });
    await expect(refused).rejects.toThrow(MemoryPlanError);
    await expect(refused).rejects.toThrow(/does not fit: it needs .* the memory limit set allows 0\.00 GiB/);
  });
});
