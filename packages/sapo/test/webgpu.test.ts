/**
 * The webgpu backend against wasm, on whatever adapter Dawn finds: here and in CI, Mesa's llvmpipe
 * through Dawn's OpenGL ES backend (.ci/run installs Mesa). One SAPO step and 16 greedy tokens on
 * the same seed and inputs, for the embedded model and a tiny pre-trained Qwen2 with LoRA.
 *
 * Tolerances. Both backends compute in float32 but sum in different orders (and wasm runs the
 * embedded model's 'fast' graph, webgpu the 'naive' one: the same function, other roundings), so
 * values agree to float32 rounding accumulated over the model, not bit for bit:
 * - log-probabilities of the greedy tokens before the step, and the step's loss, gradient norm
 *   and statistics: within 1e-4 (absolute for log-probs of a few nats, relative to values above
 *   1 otherwise), 15x or more above the differences measured (up to 6e-6 and 1.2e-6);
 * - weights after the step: Adam's first update is −lr·g/(|g| + 1e-8), ±lr for every gradient
 *   element well above 1e-8 whatever its size, so a weight moves by the same ±lr on both backends
 *   unless its gradient is so small (rounding noise around 0) that its update depends on that
 *   noise; such a weight may differ by up to 2·lr. We allow that, and require that at most 1 in
 *   1000 weights differ by more than 1e-6 (measured: 135 of 483 584 for the embedded model);
 * - after the step, log-probs within 10·lr (measured 3e-5): those few weights shift them a little;
 * - greedy tokens, before and after the step: equal.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BackendName, BackendUnavailableError, selectBackend } from '../src/backend.js';
import { generate } from '../src/sample.js';
import type { RolloutGroup, SapoLearner, StepReport } from '../src/sapo.js';
import { EMBEDDED_MODEL_PATH, openLearnerCheckpoint, openPretrainedLearner } from '../src/state.js';
import { ByteTokenizer } from '../src/tokenizer.js';
import { probeWebGpu, webGpuErrors } from '../src/webgpu.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

const probed = await probeWebGpu().then(
  (adapter) => ({ adapter, reason: '' }),
  (error: Error) => ({ adapter: null, reason: error.message }),
);
// CI (.ci/run installs Mesa for the software adapter) must run these; elsewhere a machine without
// an adapter skips them and says why.
const required = process.env.SWARM_NODE_REQUIRE_WEBGPU === '1';
const available = probed.adapter !== null;

/** Adam's learning rate: the default. */
const LR = 1e-4;
const SAPO = { seed: 7, localGroups: 2, externalGroups: 0, learningRate: LR };
const GROUPS: RolloutGroup[] = [
  { prompt: 'What is 2+3?', completions: ['5', '6', '7', '5 apples'], rewards: [1, 0, 0, 1] },
  { prompt: 'Say something.', completions: ['hello', 'e', 'xyz', 'a b c'], rewards: [1, 1, 0, 0] },
];

interface Decoded {
  /** 16 greedy tokens per prompt (EOS does not stop them). */
  tokens: number[][];
  /** log π of those tokens, from a training forward pass. */
  logProbs: Float32Array;
}

interface Run {
  before: Decoded;
  report: StepReport;
  /** Every trainable weight after the step. */
  weights: Map<string, Float32Array>;
  after: Decoded;
}

/** Greedy decoding, the step, greedy decoding again. */
async function run(learner: SapoLearner): Promise<Run> {
  const before = await decode(learner);
  const report = learner.step(GROUPS, []);
  const weights = new Map<string, Float32Array>();
  for (const [name, variable] of learner.policy.params) weights.set(name, (await variable.data()) as Float32Array);
  return { before, report, weights, after: await decode(learner) };
}

/** 16 greedy tokens for each group's prompt, and their log-probs. */
async function decode(learner: SapoLearner): Promise<Decoded> {
  const prompts = GROUPS.map((g) => learner.tokenizer.encodePrompt(g.prompt));
  const completions = generate(learner.policy, prompts, { maxNewTokens: 16, seed: 1, temperature: 0, eos: [] });
  const tokens = completions.map((c) => c.tokens);
  const rows = prompts.map((p, i) => [...p, ...(tokens[i] as number[])]);
  const width = Math.max(...rows.map((r) => r.length));
  const padded = rows.map((r) => [...r, ...new Array<number>(width - r.length).fill(0)]);
  const logProbs = tf.tidy(() =>
    learner.policy.tokenLogProbs(
      tf.tensor2d(
        padded.map((r) => r.slice(0, -1)),
        undefined,
        'int32',
      ),
      tf.tensor2d(
        padded.map((r) => r.slice(1)),
        undefined,
        'int32',
      ),
    ),
  );
  const values = (await logProbs.data()) as Float32Array;
  logProbs.dispose();
  return { tokens, logProbs: values };
}

async function embedded(backend: BackendName): Promise<Run> {
  await selectBackend({ backend });
  const { learner } = await openLearnerCheckpoint(EMBEDDED_MODEL_PATH, new ByteTokenizer(), SAPO);
  try {
    return await run(learner);
  } finally {
    learner.dispose();
    learner.policy.dispose();
  }
}

async function pretrained(backend: BackendName, dir: string): Promise<Run> {
  await selectBackend({ backend });
  const { learner } = await openPretrainedLearner(dir, {
    memory: { bytes: 2 ** 32, source: 'the test' },
    lora: { rank: 4, alpha: 8 },
    sapo: SAPO,
  });
  // LoRA's B starts at 0, which leaves A without a gradient: a seeded B (the same values on both
  // backends) sends the step's gradient through both adapters and the base around them.
  for (const [name, variable] of learner.policy.params) {
    if (name.endsWith('lora_B.weight')) variable.assign(tf.randomNormal(variable.shape, 0, 0.05, 'float32', 11));
  }
  try {
    return await run(learner);
  } finally {
    learner.dispose();
    learner.policy.dispose();
  }
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(1, Math.abs(b));

/** Asserts `gpu` equals `wasm` within the tolerances above; returns the measured differences. */
function expectEquivalent(gpu: Run, wasm: Run) {
  expect(gpu.report.updated).toBe(true);
  expect(wasm.report.updated).toBe(true);
  const step = [
    ...gpu.report.losses.map((loss, i) => relative(loss, wasm.report.losses[i] as number)),
    ...gpu.report.gradNorms.map((norm, i) => relative(norm, wasm.report.gradNorms[i] as number)),
    ...Object.entries(gpu.report.stats ?? {}).map(([key, value]) =>
      relative(value, (wasm.report.stats as unknown as Record<string, number>)[key] as number),
    ),
  ];
  const stepDifference = Math.max(...step);

  let weightDifference = 0;
  let beyondRounding = 0;
  let count = 0;
  for (const [name, values] of wasm.weights) {
    const other = gpu.weights.get(name) as Float32Array;
    expect(other.length, name).toBe(values.length);
    values.forEach((value, i) => {
      const difference = Math.abs(value - (other[i] as number));
      weightDifference = Math.max(weightDifference, difference);
      if (difference > 1e-6) beyondRounding++;
    });
    count += values.length;
  }
  const logProbDifference = (a: Decoded, b: Decoded) =>
    a.logProbs.reduce((most, value, i) => Math.max(most, Math.abs(value - (b.logProbs[i] as number))), 0);
  const measured = {
    logProbsBefore: logProbDifference(gpu.before, wasm.before),
    step: stepDifference,
    weights: weightDifference,
    weightsBeyond1e6: `${beyondRounding} of ${count}`,
    logProbsAfter: logProbDifference(gpu.after, wasm.after),
  };
  expect(gpu.before.tokens).toEqual(wasm.before.tokens);
  expect(gpu.before.tokens.every((t) => t.length === 16)).toBe(true);
  expect(measured.logProbsBefore).toBeLessThan(1e-4);
  expect(stepDifference).toBeLessThan(1e-4);
  expect(weightDifference).toBeLessThanOrEqual(2 * LR + 1e-6);
  expect(beyondRounding / count).toBeLessThanOrEqual(1e-3);
  // After the step, the few weights that moved by up to 2·lr on one backend only shift log-probs
  // by a few lr: within 10·lr, and the greedy tokens still agree.
  expect(gpu.after.tokens).toEqual(wasm.after.tokens);
  expect(measured.logProbsAfter).toBeLessThan(10 * LR);
  return measured;
}

describe('webgpu', () => {
  if (!available && required) {
    it('has an adapter (SWARM_NODE_REQUIRE_WEBGPU=1: .ci/run installs Mesa for the software adapter)', () => {
      throw new Error(`no WebGPU here: ${probed.reason}`);
    });
  } else if (!available) {
    it.skip(`is skipped: no WebGPU here (${probed.reason})`, () => {});
  }

  describe.runIf(available)(`on ${probed.adapter?.device || 'its adapter'}`, () => {
    let dir = '';
    let qwen = '';
    let llama = '';

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'webgpu-'));
      qwen = (await writeTinyModel(join(dir, 'qwen'), { architecture: 'qwen2', seed: 3 })).dir;
      llama = (await writeTinyModel(join(dir, 'llama'), { architecture: 'llama', tieWordEmbeddings: true, seed: 4 }))
        .dir;
    });

    afterAll(async () => {
      await selectBackend({ backend: 'wasm' });
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    });

    it('reports the adapter, its kind and limits', async () => {
      const info = await selectBackend({ backend: 'webgpu' });
      expect(info).toMatchObject({ name: 'webgpu', tfBackend: 'webgpu', notes: [] });
      expect(tf.getBackend()).toBe('webgpu');
      const adapter = info.adapter;
      expect(adapter).toBeDefined();
      expect(info.gpu).toBe(!adapter?.software);
      expect(adapter?.limits.maxBufferSize).toBeGreaterThan(0);
      expect(adapter?.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
      console.log(`webgpu adapter: ${JSON.stringify(adapter)}`);
    });

    it('reads GPU results synchronously (dataSync), as sampling and the step do', async () => {
      await selectBackend({ backend: 'webgpu' });
      const product = tf.tidy(() => tf.matMul(tf.ones([32, 16]), tf.fill([16, 8], 0.5)));
      expect(Array.from(product.dataSync())).toEqual(new Array<number>(256).fill(8));
      product.dispose();
    });

    it('adds more tensors than a shader may bind (chunked AddN)', async () => {
      await selectBackend({ backend: 'webgpu' });
      const terms = Array.from({ length: 41 }, (_, i) => tf.fill([3, 5], i + 1));
      const sum = tf.addN(terms);
      expect(Array.from(await sum.data())).toEqual(new Array<number>(15).fill((41 * 42) / 2));
      tf.dispose([...terms, sum]);
      expect(webGpuErrors()).toEqual([]);
    });

    it('the embedded model: one SAPO step and 16 greedy tokens equal wasm’s', async () => {
      const wasm = await embedded('wasm');
      const gpu = await embedded('webgpu');
      console.log(`embedded model, webgpu vs wasm: ${JSON.stringify(expectEquivalent(gpu, wasm))}`);
      expect(webGpuErrors()).toEqual([]);
    }, 120_000);

    it.each([
      ['Qwen2 (q/k/v biases, untied head)', () => qwen],
      ['Llama (tied embeddings)', () => llama],
    ])(
      'a tiny pre-trained %s with LoRA: one SAPO step and 16 greedy tokens equal wasm’s',
      async (name, dir) => {
        const wasm = await pretrained('wasm', dir());
        const gpu = await pretrained('webgpu', dir());
        console.log(`tiny ${name} with LoRA, webgpu vs wasm: ${JSON.stringify(expectEquivalent(gpu, wasm))}`);
        expect(webGpuErrors()).toEqual([]);
      },
      120_000,
    );
  });

  // In a process of its own, where Dawn finds no adapter: neither EGL (no vendor library) nor Vulkan (no driver).
  it.runIf(process.platform === 'linux')(
    '--backend webgpu without an adapter is a clear error, never a silent CPU',
    async () => {
      const script = [
        `const { selectBackend } = await import(${JSON.stringify(new URL('../src/backend.ts', import.meta.url).href)});`,
        'try { await selectBackend({ backend: "webgpu" }); console.log(JSON.stringify({ started: true })); }',
        'catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, backend: e.backend, message: e.message })); }',
      ].join('\n');
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        {
          env: {
            ...process.env,
            __EGL_VENDOR_LIBRARY_FILENAMES: '/nonexistent/egl.json',
            VK_ICD_FILENAMES: '/nonexistent/vk.json',
            VK_DRIVER_FILES: '/nonexistent/vk.json',
          },
        },
      );
      const result = JSON.parse(stdout.trim().split('\n').at(-1) as string);
      expect(result).toMatchObject({
        name: BackendUnavailableError.name,
        code: 'BACKEND_UNAVAILABLE',
        backend: 'webgpu',
      });
      expect(result.message).toMatch(
        /^backend webgpu cannot be used: (no adapter \(|not installed \(|installed but Dawn's binary failed to load).*or use --backend wasm$/,
      );
    },
    60_000,
  );
});
