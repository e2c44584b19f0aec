/**
 * The memory plan: before a model is loaded, what it will hold — weights, adapters, optimizer
 * state, the step's activations and logits, the sampler's KV cache — for the chosen group size,
 * context and micro-batches, against the memory there is. It picks the largest micro-batches that
 * fit, or refuses with what would fit: running out of memory halfway through a round is RL Swarm's
 * most reported failure, and a wasm heap that grew once never shrinks.
 *
 * Estimates are fp32 (tfjs has no float16) and calibrated on wasm (scripts/bench/learner.ts,
 * docs/BENCHMARKS.md), on the high side where unmeasured:
 * - wasm's matrix products (XNNPACK) keep a packed copy of every weight they multiply by, so on
 *   wasm the weights are held twice (`weightCopies`); where that does not fit the step, the plan
 *   keeps them only while sampling (`keepPackedWeights: 'sampling'`: held once during the step,
 *   which multiplies by transient copies), and where sampling has no room for them either, it has
 *   a pre-trained base multiplied by transient copies throughout, all but the vocabulary head
 *   ('head') or all (false): held once, plus one block and its packed copy, for slower sampling;
 * - the slack covers the weights' packed copies too: counted exactly, Qwen2.5-0.5B's fitted one
 *   sampling (3 918 MiB of heap), but not the next one after a step, whose packed copies no longer
 *   found room in a heap the step had fragmented (docs/BENCHMARKS.md);
 * - tfjs's tape keeps about 6× the activations a layer's equations name (it copies what it saves
 *   on wasm); the pre-trained policy checkpoints each layer, keeping ~17 × hidden floats a token a
 *   layer and one layer's full activations during its recomputation;
 * - the log-probs over the vocabulary hold 3 (pre-trained policy, fused) or 4 (embedded model)
 *   [tokens, vocab] tensors at their peak; the KV cache is held twice while a step grows it.
 */
import { readFileSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import { SapoError } from './errors.js';
import type { PretrainedConfig } from './hf/config.js';
import type { PolicyConfig } from './model.js';
import { type KeepPackedWeights, projectionShapes, vocabularyBlockTokens } from './pretrained.js';

/** The shape facts the estimate needs; `modelShape` derives them from a config. */
export interface ModelShape {
  /** Frozen parameters (a pre-trained model's base) plus trainable ones make all the weights. */
  frozenParameters: number;
  trainableParameters: number;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  /** Whether a step recomputes each layer in its backward pass (gradient checkpointing). */
  checkpointed: boolean;
  /** [tokens, vocab] tensors alive at the log-probs' peak. */
  vocabCopies: number;
  /** Tokens the log-probs take at once (each of those tensors is [block, vocab]); all of a micro-batch's when absent. */
  vocabularyBlockTokens?: number;
}

/** A pre-trained model with LoRA adapters of `rank` on the `targets` projections of every layer. */
export function pretrainedShape(
  config: PretrainedConfig,
  lora: { rank: number; targets: readonly string[] },
): ModelShape {
  const projections = Object.entries(projectionShapes(config));
  const perLayer =
    projections.reduce((sum, [, [fanIn, fanOut]]) => sum + fanIn * fanOut, 0) +
    2 * config.hiddenSize + // the two RMSNorm weights
    (config.attentionBias ? (config.heads + 2 * config.kvHeads) * config.headDim : 0);
  const embeddings = config.vocabSize * config.hiddenSize * (config.tieWordEmbeddings ? 1 : 2);
  const adapters = projections
    .filter(([name]) => lora.targets.includes(name))
    .reduce((sum, [, [fanIn, fanOut]]) => sum + lora.rank * (fanIn + fanOut), 0);
  return {
    frozenParameters: embeddings + config.layers * perLayer + config.hiddenSize,
    trainableParameters: config.layers * adapters,
    layers: config.layers,
    hidden: config.hiddenSize,
    heads: config.heads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
    intermediate: config.intermediateSize,
    vocab: config.vocabSize,
    checkpointed: true,
    vocabCopies: 3,
    vocabularyBlockTokens: vocabularyBlockTokens(config.vocabSize),
  };
}

/** The embedded byte-level model: every weight trainable, plain multi-head attention. */
export function embeddedShape(config: PolicyConfig, parameters: number): ModelShape {
  return {
    frozenParameters: 0,
    trainableParameters: parameters,
    layers: config.layers,
    hidden: config.dModel,
    heads: config.heads,
    kvHeads: config.heads,
    headDim: config.dModel / config.heads,
    intermediate: config.mlpRatio * config.dModel,
    vocab: config.vocabSize,
    checkpointed: false,
    vocabCopies: 4,
  };
}

export interface RunShape {
  /** Longest sequence, prompt and completion: the context the model reads. */
  contextLength: number;
  /** Rows (completions) the sampler generates at once; the plan may lower it. */
  sampleRows: number;
  /** Rows per forward/backward pass of the step; the plan may lower it. */
  microBatchRows: number;
  /** Whether a copy of the trainable weights is kept as the KL reference (β > 0). */
  reference: boolean;
  /** Copies of the weights the backend holds: 2 on wasm (weightCopiesOn). Default 1. */
  weightCopies?: number;
}

/** The largest block of a frozen matrix a transient product copies (pretrained.ts, transientOperand). */
const TRANSIENT_BLOCK_BYTES = 2 ** 23 * 4;

/** Copies of every weight a backend holds: wasm's XNNPACK keeps a packed one beside each weight it multiplies by. */
export const weightCopiesOn = (backend: string): number => (backend === 'wasm' ? 2 : 1);

export interface MemoryLimit {
  bytes: number;
  /** What sets it, for messages: "free system memory", "the cgroup limit", "the wasm heap (4 GiB)". */
  source: string;
  /**
   * The largest single tensor the backend can hold, where it has such a limit: a WebGPU adapter's
   * maxStorageBufferBindingSize (a shader binds each tensor whole). None by default.
   */
  maxTensorBytes?: number;
}

export interface MemoryPlan {
  fits: boolean;
  /**
   * Whether the backend may keep its packed copies of the frozen weights (the weights held
   * `weightCopies` times): true where they fit the step; 'sampling' where they fit sampling
   * only (dropped before each step, which holds the weights once and multiplies by transient
   * copies); 'head' where only the vocabulary head's fits (the rest multiplied by transient
   * copies); false where none does, and the model multiplies by transient copies throughout
   * (PretrainedOptions.keepPackedWeights).
   */
  keepPackedWeights: KeepPackedWeights;
  /** The rows chosen (at most those asked for; 0 when not even one fits). */
  sampleRows: number;
  microBatchRows: number;
  /** Bytes by part, for the rows chosen (or for one row when nothing fits). */
  parts: {
    /** The most the weights are held at once (while sampling, in 'sampling' mode). */
    weights: number;
    trainable: number;
    optimizer: number;
    stepActivations: number;
    sampling: number;
  };
  totalBytes: number;
  limit: MemoryLimit;
  /** One line a person reads: what is held, what was chosen, or why it does not fit and what would. */
  summary: string;
}

/** A model does not fit in the memory available (code MODEL_DOES_NOT_FIT). */
export class MemoryPlanError extends SapoError {
  readonly plan: MemoryPlan;

  constructor(plan: MemoryPlan) {
    super('MODEL_DOES_NOT_FIT', plan.summary);
    this.plan = plan;
  }
}

const FLOAT = 4;
/** Allocator slack and the odd intermediate not counted below. */
const SLACK = 1.2;

/** Bytes of the step's activations for `rows` rows of `tokens` tokens (kept for the backward pass). */
function stepActivationBytes(model: ModelShape, rows: number, tokens: number): number {
  const { layers, hidden, heads, intermediate, vocab } = model;
  // A layer's full activations as the tape keeps them (measured: ~6× the equations' tensors).
  const fullLayer = 6 * (12 * hidden + 4 * intermediate + 2 * heads * tokens);
  const kept = model.checkpointed ? layers * 17 * hidden + fullLayer : layers * fullLayer;
  return (rows * tokens * kept + model.vocabCopies * logitsTokens(model, rows * tokens) * vocab) * FLOAT;
}

/** Tokens of the [tokens, vocab] tensors the log-probs hold at once, for a micro-batch of `tokens`. */
const logitsTokens = (model: ModelShape, tokens: number) => Math.min(tokens, model.vocabularyBlockTokens ?? tokens);

/** Bytes of sampling `rows` rows to `tokens` tokens: the KV cache (twice: old and grown) and one step's logits. */
function samplingBytes(model: ModelShape, rows: number, tokens: number): number {
  const { layers, kvHeads, headDim, hidden, vocab } = model;
  const cache = 2 * layers * rows * kvHeads * tokens * headDim * FLOAT;
  // The prompt's prefill runs every position through the layers at once.
  const prefill = rows * tokens * (4 * hidden + model.heads * tokens) * FLOAT;
  return 2 * cache + prefill + 2 * rows * vocab * FLOAT;
}

function bytesFor(
  model: ModelShape,
  run: RunShape,
  sampleRows: number,
  microBatchRows: number,
  keepPacked: KeepPackedWeights,
) {
  const once = (model.frozenParameters + model.trainableParameters) * FLOAT;
  // Packed copies of every weight (the adapters' too, on the high side), or, held once, a
  // product's copy of a block of a frozen matrix and its packed copy.
  const packed = once * (run.weightCopies ?? 1);
  const transient = once + 2 * Math.min(largestWeightBytes(model), TRANSIENT_BLOCK_BYTES);
  // 'sampling' keeps the vocabulary head's packed copy through the step (pretrained.ts, #recreateBase), 'head' throughout.
  const headCopies = keepPacked === 'sampling' || keepPacked === 'head' ? (run.weightCopies ?? 1) - 1 : 0;
  const headPacked = model.vocab * model.hidden * FLOAT * headCopies;
  const stepWeights = keepPacked === true ? packed : transient + headPacked;
  const samplingWeights = keepPacked === true || keepPacked === 'sampling' ? packed : transient + headPacked;
  // The trainable weights again as gradients, and once more as the KL reference when β > 0.
  const trainable = model.trainableParameters * FLOAT * (run.reference ? 2 : 1);
  const optimizer = 2 * model.trainableParameters * FLOAT; // Adam's two moments
  const stepActivations = stepActivationBytes(model, microBatchRows, run.contextLength);
  const sampling = samplingBytes(model, sampleRows, run.contextLength);
  // Sampling and the step never run at once: the larger of the two is what the heap must hold.
  // ('sampling' re-creates the base between them through JavaScript memory: no heap of its own.)
  const held = Math.max(stepWeights + stepActivations, samplingWeights + sampling);
  const total = SLACK * (trainable + optimizer + held);
  const weights = Math.max(stepWeights, samplingWeights);
  const parts = { weights, trainable, optimizer, stepActivations, sampling };
  return { parts, stepWeights, samplingWeights, total };
}

/** The largest tensors a model holds: the embedding (or head), or an MLP weight. */
const largestWeightBytes = (model: ModelShape) => Math.max(model.vocab, model.intermediate) * model.hidden * FLOAT;

/**
 * The plan for `model` and `run` within `limit`: the largest sample and micro-batch rows, up to
 * those asked for, whose peak fits; `fits: false` when even one row each does not. Where the
 * backend's packed copies of a frozen base do not fit the step, they are kept while sampling only
 * (keepPackedWeights: 'sampling'); where they do not fit sampling either, the base is held once
 * but its vocabulary head ('head'), or all of it once ('false'); and when nothing fits, what the smallest needs.
 */
export function planMemory(
  model: ModelShape,
  run: RunShape,
  limit: MemoryLimit,
  /** Plan this way only (benchmarks compare them); by default, the first of them that fits. */
  keepPackedWeights?: KeepPackedWeights,
): MemoryPlan {
  if (keepPackedWeights !== undefined) return planWith(model, run, limit, keepPackedWeights);
  const kept = planWith(model, run, limit, true);
  // Held once, only a frozen base can be (an embedded model's weights are all trained in place).
  if (kept.fits || (run.weightCopies ?? 1) === 1 || model.frozenParameters === 0) return kept;
  // Even with fewer rows at once: repacking every weight for each token (false) costs sampling
  // more than the rows give back (Qwen2.5-0.5B: 1.1 against 12.8 tokens/s, 8 rows), and most of
  // it is the vocabulary head's ('head' keeps that one packed).
  for (const keep of ['sampling', 'head'] as const) {
    const plan = planWith(model, run, limit, keep);
    if (plan.fits) return plan;
  }
  return planWith(model, run, limit, false);
}

/** What a plan says of the weights it holds, for its summary. */
function heldWeights(keepPackedWeights: KeepPackedWeights, sampling: number, step: number): string {
  if (keepPackedWeights === true) return `weights ${gib(sampling)}`;
  if (keepPackedWeights === false) {
    return `weights ${gib(step)} (held once: wasm multiplies by transient copies, so sampling is slower)`;
  }
  if (keepPackedWeights === 'head') {
    return `weights ${gib(step)} (held once but the vocabulary head: wasm multiplies by transient copies of the rest, so sampling is slower)`;
  }
  return `weights ${gib(sampling)} while sampling (wasm keeps its packed copies), ${gib(step)} in the step (re-created before it, then multiplied by transient copies)`;
}

function planWith(
  model: ModelShape,
  run: RunShape,
  limit: MemoryLimit,
  keepPackedWeights: KeepPackedWeights,
): MemoryPlan {
  const maxTensor = limit.maxTensorBytes ?? Number.POSITIVE_INFINITY;
  const largestWeight = largestWeightBytes(model);
  const logitsBytes = (rows: number) => logitsTokens(model, rows * run.contextLength) * model.vocab * FLOAT;
  const largest = (asked: number, bytesAt: (rows: number) => number) => {
    let rows = asked;
    while (rows > 0 && (bytesAt(rows) > limit.bytes || logitsBytes(rows) > maxTensor)) rows--;
    return rows;
  };
  const bytes = (sampleRows: number, microBatchRows: number) =>
    bytesFor(model, run, sampleRows, microBatchRows, keepPackedWeights);
  const weightFits = largestWeight <= maxTensor;
  const microBatchRows = weightFits ? largest(run.microBatchRows, (r) => bytes(1, r).total) : 0;
  const sampleRows = weightFits ? largest(run.sampleRows, (r) => bytes(r, Math.max(1, microBatchRows)).total) : 0;
  const fits = microBatchRows > 0 && sampleRows > 0;
  const { parts, stepWeights, samplingWeights, total } = bytes(Math.max(1, sampleRows), Math.max(1, microBatchRows));
  const held = `${heldWeights(keepPackedWeights, samplingWeights, stepWeights)}, trainable + optimizer ${gib(parts.trainable + parts.optimizer)}, step ${gib(parts.stepActivations)}, sampling ${gib(parts.sampling)}`;
  const tensorLimit = `a single tensor of ${mib(Math.max(largestWeight, logitsBytes(1)))} (the embedding, or one row's logits) and the backend binds at most ${mib(maxTensor)}`;
  const summary = fits
    ? `memory plan: ${gib(total)} of ${gib(limit.bytes)} (${limit.source}) — ${held}; ${microBatchRows} ${microBatchRows === 1 ? 'row' : 'rows'} per step micro-batch, ${sampleRows} sampled at once`
    : weightFits && total <= limit.bytes
      ? `the model does not fit: it needs ${tensorLimit}. Use a shorter context (now ${run.contextLength} tokens) or another backend`
      : !weightFits
        ? `the model does not fit: it needs ${tensorLimit}. Use a smaller model or another backend (wasm, tensorflow)`
        : `the model does not fit: it needs ${gib(total)} with one row at a time (${held}), and ${limit.source} allows ${gib(limit.bytes)}. ` +
          `Use a shorter context (now ${run.contextLength} tokens), a smaller model, or a machine or backend with more memory${(run.weightCopies ?? 1) > 1 ? ' (on wasm the heap stops at 4 GiB: a GPU backend or tensorflow has no such limit)' : ''}`;
  return { fits, keepPackedWeights, sampleRows, microBatchRows, parts, totalBytes: total, limit, summary };
}

/** planMemory, throwing MemoryPlanError when nothing fits. */
export function requireMemoryPlan(model: ModelShape, run: RunShape, limit: MemoryLimit): MemoryPlan {
  const plan = planMemory(model, run, limit);
  if (!plan.fits) throw new MemoryPlanError(plan);
  return plan;
}

/** The wasm backend's heap is 32-bit: it can never grow past 4 GiB, whatever the machine has. */
export const WASM_HEAP_LIMIT = 4 * 2 ** 30;

/**
 * The memory a learner may plan with on `backend`: the free system memory, lowered by a cgroup
 * (container) limit where one is set, and by the wasm heap's 4 GiB on wasm. On webgpu, pass the
 * adapter's maxStorageBufferBindingSize as `maxTensorBytes`; WebGPU does not report how much GPU
 * memory there is, so the system's stands in for it (exact on a software or integrated adapter).
 */
export function availableMemory(backend: string, options: { maxTensorBytes?: number } = {}): MemoryLimit {
  const limits: MemoryLimit[] = [
    {
      bytes: freemem(),
      source: backend === 'webgpu' ? 'free system memory (WebGPU reports no GPU memory)' : 'free system memory',
    },
  ];
  const cgroup = cgroupLimit();
  if (cgroup !== null && cgroup < totalmem()) limits.push({ bytes: cgroup, source: 'the cgroup memory limit' });
  if (backend === 'wasm') limits.push({ bytes: WASM_HEAP_LIMIT, source: 'the wasm heap, 4 GiB at most' });
  const limit = limits.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  return options.maxTensorBytes === undefined ? limit : { ...limit, maxTensorBytes: options.maxTensorBytes };
}

/** cgroup v2's memory.max (or v1's limit_in_bytes) for this process, or null when none is set. */
function cgroupLimit(): number | null {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const text = readFileSync(file, 'utf8').trim();
      if (text === 'max') return null;
      const bytes = Number(text);
      return Number.isFinite(bytes) && bytes > 0 ? bytes : null;
    } catch {
      // Not this cgroup version (or no cgroups at all): try the next file.
    }
  }
  return null;
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const mib = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;
