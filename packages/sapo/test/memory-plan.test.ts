import { describe, expect, it } from 'vitest';
import type { PretrainedConfig } from '../src/hf/config.js';
import {
  availableMemory,
  embeddedShape,
  MemoryPlanError,
  planMemory,
  pretrainedShape,
  requireMemoryPlan,
  WASM_HEAP_LIMIT,
} from '../src/memory-plan.js';
import { EMBEDDED_CONFIG } from '../src/state.js';

const QWEN25_05B: PretrainedConfig = {
  architecture: 'qwen2',
  vocabSize: 151_936,
  hiddenSize: 896,
  intermediateSize: 4864,
  layers: 24,
  heads: 14,
  kvHeads: 2,
  headDim: 64,
  ropeTheta: 1_000_000,
  rmsNormEps: 1e-6,
  tieWordEmbeddings: true,
  attentionBias: true,
  maxPositions: 32_768,
};
const SMOLLM2_135M: PretrainedConfig = {
  architecture: 'llama',
  vocabSize: 49_152,
  hiddenSize: 576,
  intermediateSize: 1536,
  layers: 30,
  heads: 9,
  kvHeads: 3,
  headDim: 64,
  ropeTheta: 100_000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: true,
  attentionBias: false,
  maxPositions: 8192,
};
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const RUN = { contextLength: 256, sampleRows: 8, microBatchRows: 4, reference: false, weightCopies: 1 };
const GIB = 2 ** 30;

describe('the memory plan', () => {
  it('counts the parameters of real models exactly as their model cards do', () => {
    // Qwen2.5-0.5B: 494,032,768 parameters; SmolLM2-135M: 134,515,008; PEFT's r = 16 on every
    // projection of Qwen2.5-0.5B trains 8,798,208.
    const qwen = pretrainedShape(QWEN25_05B, { rank: 16, targets: ALL });
    expect(qwen.frozenParameters).toBe(494_032_768);
    expect(qwen.trainableParameters).toBe(8_798_208);
    expect(pretrainedShape(SMOLLM2_135M, { rank: 16, targets: [] }).frozenParameters).toBe(134_515_008);
  });

  it('fits a model with the micro-batches asked for when there is room, and says what it holds', () => {
    const plan = planMemory(pretrainedShape(SMOLLM2_135M, { rank: 16, targets: ALL }), RUN, {
      bytes: 16 * GIB,
      source: 'free system memory',
    });
    expect(plan).toMatchObject({ fits: true, sampleRows: 8, microBatchRows: 4 });
    expect(plan.totalBytes).toBeLessThan(16 * GIB);
    expect(plan.parts.weights).toBe((134_515_008 + plan.parts.optimizer / 8) * 4);
    expect(plan.summary).toMatch(/^memory plan: .* GiB of 16\.00 GiB \(free system memory\)/);
  });

  it('lowers the micro-batches to fit a tighter limit, and refuses with what it needs when one row does not fit', () => {
    const qwen = pretrainedShape(QWEN25_05B, { rank: 16, targets: ALL });
    const limit = { bytes: 8 * GIB, source: 'free system memory' };
    const plan = planMemory(qwen, { ...RUN, sampleRows: 64, microBatchRows: 32 }, limit);
    expect(plan.fits).toBe(true);
    expect(plan.microBatchRows).toBeLessThan(32);
    // The next row up would not fit.
    expect(planMemory(qwen, { ...RUN, microBatchRows: plan.microBatchRows + 1 }, limit).microBatchRows).toBe(
      plan.microBatchRows,
    );
    expect(plan.totalBytes).toBeLessThanOrEqual(limit.bytes);

    const tiny = { bytes: 1 * GIB, source: 'the cgroup memory limit' };
    expect(planMemory(qwen, RUN, tiny)).toMatchObject({ fits: false, sampleRows: 0, microBatchRows: 0 });
    expect(() => requireMemoryPlan(qwen, RUN, tiny)).toThrow(MemoryPlanError);
    expect(() => requireMemoryPlan(qwen, RUN, tiny)).toThrow(
      /does not fit: it needs .* the cgroup memory limit allows 1\.00 GiB/,
    );
  });

  it('on wasm (weights held twice, a 4 GiB heap): keeps SmolLM2-135M packed, of Qwen2.5-0.5B the head only, the rest while sampling only where it fits; refuses what fits no way', () => {
    const wasm = { bytes: WASM_HEAP_LIMIT, source: 'the wasm heap, 4 GiB at most' };
    const run = { ...RUN, contextLength: 160, weightCopies: 2 };
    // Measured (scripts/bench/learner.ts): a 4 × 128-token LoRA step of the SmolLM2-135M shape peaks at 1.6 GiB of heap.
    const smol = planMemory(pretrainedShape(SMOLLM2_135M, { rank: 16, targets: ALL }), run, wasm);
    expect(smol).toMatchObject({ fits: true, keepPackedWeights: true, microBatchRows: 4 });
    expect(smol.totalBytes).toBeGreaterThan(1.6 * GIB);
    expect(smol.totalBytes).toBeLessThan(3 * GIB);
    // Held twice, Qwen2.5-0.5B's 1.84 GiB of weights leave no room (measured: generation reached
    // 3 995 MiB and the step ran out of heap; kept while sampling only, the second sampling, after a
    // step, ran out of heap); held once but its vocabulary head's packed copy, it fits.
    const qwenShape = pretrainedShape(QWEN25_05B, { rank: 16, targets: ALL });
    const qwen = planMemory(qwenShape, run, wasm);
    expect(qwen).toMatchObject({ fits: true, keepPackedWeights: 'head', sampleRows: 8, microBatchRows: 1 });
    expect(qwen.parts.weights).toBeLessThan(2.5 * GIB);
    expect(qwen.summary).toMatch(/held once but the vocabulary head: wasm multiplies by transient copies of the rest/);
    expect(planMemory(qwenShape, run, wasm, 'sampling').fits).toBe(false);
    // At the default context, or in a 3.5 GiB cgroup, not even that: the base held once throughout.
    const cgroup = { bytes: 3.5 * GIB, source: 'the cgroup memory limit' };
    for (const plan of [
      planMemory(qwenShape, { ...run, contextLength: 384 }, wasm),
      planMemory(qwenShape, run, cgroup),
    ]) {
      expect(plan).toMatchObject({ fits: true, keepPackedWeights: false, sampleRows: 8 });
      expect(plan.parts.weights).toBeLessThan(2 * GIB);
      expect(plan.summary).toMatch(/held once: wasm multiplies by transient copies, so sampling is slower/);
    }
    // SmolLM2-135M at 1024 tokens in that cgroup: the packed copies fit sampling, not the step.
    const smolLong = planMemory(
      pretrainedShape(SMOLLM2_135M, { rank: 16, targets: ALL }),
      { ...run, contextLength: 1024 },
      cgroup,
    );
    expect(smolLong).toMatchObject({ fits: true, keepPackedWeights: 'sampling', sampleRows: 8, microBatchRows: 1 });
    expect(smolLong.summary).toMatch(
      /while sampling \(wasm keeps its packed copies\), .* in the step \(re-created before it/,
    );
    const long = planMemory(qwenShape, { ...run, contextLength: 2048 }, wasm);
    expect(long).toMatchObject({ fits: false, keepPackedWeights: false });
    expect(long.summary).toMatch(/Use a shorter context \(now 2048 tokens\).*the heap stops at 4 GiB/);
    // Off wasm there is one copy, packed or not.
    expect(
      planMemory(qwenShape, { ...run, weightCopies: 1 }, { bytes: 16 * GIB, source: 'free system memory' }),
    ).toMatchObject({ fits: true, keepPackedWeights: true });
  });

  it("on webgpu, keeps every tensor within the adapter's largest binding (llvmpipe's 128 MiB)", () => {
    const adapter = { bytes: 16 * GIB, source: 'free system memory', maxTensorBytes: 128 * 2 ** 20 };
    const run = { ...RUN, contextLength: 128, microBatchRows: 8 };
    // SmolLM2-135M: a 108 MiB embedding fits, and the log-probs take 341 tokens at once (64 MiB).
    const smol = planMemory(pretrainedShape(SMOLLM2_135M, { rank: 16, targets: ALL }), run, adapter);
    expect(smol).toMatchObject({ fits: true, microBatchRows: 8, sampleRows: 8 });
    // The embedded model's log-probs are not cut into blocks: its rows are bounded by their logits.
    const embedded = planMemory({ ...embeddedShape(EMBEDDED_CONFIG, 420_000), vocab: 200_000 }, run, adapter);
    expect(embedded.microBatchRows).toBe(Math.floor((128 * 2 ** 20) / (128 * 200_000 * 4)));
    // Qwen2.5-0.5B: its 519 MiB embedding can never be bound.
    const qwen = planMemory(pretrainedShape(QWEN25_05B, { rank: 16, targets: ALL }), run, adapter);
    expect(qwen.fits).toBe(false);
    expect(qwen.summary).toMatch(
      /a single tensor of 519 MiB .* binds at most 128 MiB\. Use a smaller model or another backend/,
    );
  });

  it('plans the embedded model in megabytes, and keeps the KL reference when β > 0', () => {
    const shape = embeddedShape(EMBEDDED_CONFIG, 420_000);
    const limit = { bytes: 4 * GIB, source: 'x' };
    const plain = planMemory(shape, { ...RUN, contextLength: 160 }, limit);
    const withReference = planMemory(shape, { ...RUN, contextLength: 160, reference: true }, limit);
    expect(plain.totalBytes).toBeLessThan(512 * 2 ** 20);
    expect(withReference.parts.trainable).toBe(2 * plain.parts.trainable);
  });

  it('never plans past the wasm heap on wasm, nor past free memory anywhere', () => {
    expect(availableMemory('wasm').bytes).toBeLessThanOrEqual(WASM_HEAP_LIMIT);
    expect(availableMemory('cpu').bytes).toBeGreaterThan(0);
  });
});
