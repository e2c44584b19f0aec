import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { saveCheckpoint } from '../src/checkpoint.js';
import { CheckpointError } from '../src/errors.js';
import { Policy, type PolicyConfig } from '../src/model.js';
import { generateText } from '../src/sample.js';
import { type RolloutGroup, SapoLearner } from '../src/sapo.js';
import { EMBEDDED_CONFIG, EMBEDDED_MODEL_PATH, learnerCheckpoint, restoreLearner } from '../src/state.js';
import { ByteTokenizer, type Tokenizer } from '../src/tokenizer.js';

const TINY: PolicyConfig = { vocabSize: 259, contextLength: 16, layers: 1, dModel: 16, heads: 2, mlpRatio: 2 };
const tokenizer = new ByteTokenizer();
const groups: RolloutGroup[] = [
  { prompt: 'ab', completions: ['1', '22', '3', '4'], rewards: [1, 0, 0, 1] },
  { prompt: 'c', completions: ['x', 'yy'], rewards: [0, 1] },
];
const weightsOf = (learner: SapoLearner) => [...learner.policy.params.values()].map((p) => Array.from(p.dataSync()));

beforeAll(async () => {
  await tf.setBackend('wasm');
});

async function savedLearner(): Promise<{ learner: SapoLearner; file: string }> {
  const learner = new SapoLearner(Policy.create(TINY, { seed: 4 }), tokenizer, { learningRate: 1e-2, passes: 2 });
  learner.step(groups, []);
  learner.step(groups, []);
  const state = await learnerCheckpoint(learner, { note: 'test' });
  const file = await saveCheckpoint(await mkdtemp(join(tmpdir(), 'sapo-state-')), state);
  state.release();
  return { learner, file };
}

describe('learner state in a checkpoint', () => {
  it('resumes with the same weights, step count and Adam state: the next update is bit-identical', async () => {
    const { learner, file } = await savedLearner();
    const resumed = await restoreLearner(file, tokenizer, { learningRate: 1e-2, passes: 2 }, TINY);
    expect(resumed.steps).toBe(2);
    expect(weightsOf(resumed)).toEqual(weightsOf(learner));
    learner.step(groups, []);
    resumed.step(groups, []);
    expect(weightsOf(resumed)).toEqual(weightsOf(learner));
    for (const l of [learner, resumed]) {
      l.dispose();
      l.policy.dispose();
    }
  });

  it('restores a learner saved before its first update (no Adam moments yet)', async () => {
    const fresh = new SapoLearner(Policy.create(TINY, { seed: 8 }), tokenizer);
    const state = await learnerCheckpoint(fresh);
    const file = await saveCheckpoint(await mkdtemp(join(tmpdir(), 'sapo-state-')), state);
    state.release();
    const resumed = await restoreLearner(file, tokenizer, {}, TINY);
    expect(resumed.steps).toBe(0);
    expect(weightsOf(resumed)).toEqual(weightsOf(fresh));
    for (const l of [fresh, resumed]) {
      l.dispose();
      l.policy.dispose();
    }
  });

  it('refuses a checkpoint made with another tokenizer or config, and a truncated one, rather than start fresh', async () => {
    const { learner, file } = await savedLearner();
    learner.dispose();
    learner.policy.dispose();
    const other: Tokenizer = Object.assign(Object.create(tokenizer), { id: 'bytes-v2' });
    await expect(restoreLearner(file, other)).rejects.toMatchObject({ code: 'CHECKPOINT_MISMATCH' });
    await expect(restoreLearner(file, tokenizer, {}, { ...TINY, dModel: 32 })).rejects.toMatchObject({
      code: 'CHECKPOINT_MISMATCH',
    });
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 100));
    const error = await restoreLearner(file, tokenizer).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as CheckpointError).code).toBe('CHECKPOINT_TRUNCATED');
    expect((error as Error).message).toMatch(/refusing to start from a fresh model/);
  });

  it('ships the embedded base model: it loads as the embedded config, untrained by SAPO, and answers', async () => {
    const learner = await restoreLearner(EMBEDDED_MODEL_PATH, tokenizer, {}, { ...EMBEDDED_CONFIG });
    expect(learner.steps).toBe(0);
    expect(learner.policy.parameterCount()).toBe(483_584);
    const [completion] = generateText(learner.policy, tokenizer, ['Count a in abaab'], {
      maxNewTokens: 8,
      seed: 1,
      temperature: 0,
    });
    expect(completion?.finished).toBe(true);
    expect(completion?.text).toMatch(/^\d+$/);
    learner.dispose();
    learner.policy.dispose();
  });
});
