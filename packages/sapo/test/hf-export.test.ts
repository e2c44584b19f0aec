import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend.js';
import { writeAdapterFolder, writeMergedFolder } from '../src/hf/export.js';
import { openModelFolder } from '../src/hf/folder.js';
import { SafetensorsReader } from '../src/hf/safetensors.js';
import { PretrainedPolicy } from '../src/pretrained.js';
import { openPretrainedLearner } from '../src/state.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

let dir = '';
const MEMORY = { bytes: 2 ** 32, source: 'test' };

beforeAll(async () => {
  await selectBackend({ backend: 'wasm' });
  dir = await mkdtemp(join(tmpdir(), 'hf-export-'));
});
afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

/** Logits of the policy on fixed token ids. */
const logitsOf = (policy: PretrainedPolicy) =>
  tf.tidy(() => {
    const tokens = tf.tensor2d([[3, 17, 42, 5, 99, 7]], undefined, 'int32');
    const positions = tf.tensor2d([[0, 1, 2, 3, 4, 5]], undefined, 'int32');
    return policy.logits(policy.forward(tokens, positions).hidden).dataSync() as Float32Array;
  });

describe('exporting a trained pre-trained model', () => {
  it('merges the adapters into a folder whose model, loaded fresh, computes the adapted logits', async () => {
    const base = (await writeTinyModel(join(dir, 'base'), { architecture: 'llama' })).dir;
    const { learner } = await openPretrainedLearner(base, { memory: MEMORY, lora: { rank: 4 } });
    const policy = learner.policy as PretrainedPolicy;
    // Adapters as training leaves them: B no longer zero.
    for (const [name, variable] of policy.params) {
      if (name.endsWith('lora_B.weight')) variable.assign(tf.randomNormal(variable.shape, 0, 0.05, 'float32', 7));
    }
    const adapted = logitsOf(policy);

    const out = join(dir, 'merged');
    await writeMergedFolder(policy, base, out);
    const merged = await openModelFolder(out);
    const reloaded = await PretrainedPolicy.load(merged.config, (name) => merged.readTensor(name), {
      contextLength: policy.config.contextLength,
      lora: { seed: 0 },
    });
    await merged.close();
    const fresh = logitsOf(reloaded); // its own adapters start at B = 0
    for (let i = 0; i < adapted.length; i++)
      expect(Math.abs((fresh[i] as number) - (adapted[i] as number))).toBeLessThan(1e-4);
    expect(merged.config).toEqual((await openModelFolder(base)).config);
    reloaded.dispose();

    const peft = join(dir, 'adapter');
    await writeAdapterFolder(policy, base, peft);
    const config = JSON.parse(await readFile(join(peft, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 32, task_type: 'CAUSAL_LM' });
    const adapters = await SafetensorsReader.open(join(peft, 'adapter_model.safetensors'));
    expect([...adapters.tensors.keys()]).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(adapters.tensors.size).toBe(policy.params.size);
    await adapters.close();
    learner.dispose();
    policy.dispose();
  });
});
