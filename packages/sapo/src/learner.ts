/**
 * The learner as the rest of a node sees it: an asynchronous interface to one model — sample
 * completions, take a SAPO step, save a checkpoint — that runs either on the calling thread
 * (`openLearner`: tests, in-process experiments) or in a `worker_threads` worker
 * (`startLearnerWorker`: a node, whose main thread owns the network and must never wait for the
 * model). Both run the same code: the worker is an in-thread learner behind a message port.
 *
 *   const learner = await startLearnerWorker({ model: EMBEDDED_MODEL_PATH, sapo: { localGroups: 6 } });
 *   const completions = await learner.sample(prompts, { maxNewTokens: 48, seed: 1 });
 *   const report = await learner.step(localGroups, externalGroups);
 *   const file = await learner.save(dir, { round: '12' });
 *   await learner.close();
 */
import { stat } from 'node:fs/promises';
import { type ResourceLimits, Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendInfo, type BackendName, selectBackend } from './backend.js';
import { saveCheckpoint } from './checkpoint.js';
import { deserializeError, LearnerCrashedError, type Reply, type Request } from './learner-protocol.js';
import { availableMemory, type MemoryLimit, type MemoryPlan, weightCopiesOn } from './memory-plan.js';
import type { LoraSettings } from './pretrained.js';
import { generateText, type SampleOptions, type TextCompletion } from './sample.js';
import type { RolloutGroup, SapoLearner, SapoOptions, StepReport } from './sapo.js';
import { learnerCheckpoint, openLearnerCheckpoint, openPretrainedLearner } from './state.js';
import { ByteTokenizer } from './tokenizer.js';

/**
 * What to load and how to train it: a checkpoint file of the embedded model (the embedded base is
 * one), or a Hugging Face model folder trained with LoRA adapters.
 */
export interface LearnerSpec {
  /** A checkpoint file, or a model folder; a damaged one is an error, never a fresh model. */
  model: string;
  /** For a model folder: the adapter checkpoint to resume from (none: fresh adapters). */
  resume?: string;
  /** For a model folder: LoRA rank, alpha and target projections (DEFAULT_LORA for the rest). */
  lora?: Partial<LoraSettings>;
  /** For a model folder: the longest prompt + completion in tokens. Default 384. */
  contextLength?: number;
  /** For a model folder: bytes the memory plan may use at most (below what the machine and backend allow). */
  memoryLimit?: number;
  /** SAPO settings (DEFAULT_SAPO_OPTIONS for the rest). */
  sapo?: Partial<SapoOptions>;
  /** Tensor backend. Default 'auto'. */
  backend?: BackendName | 'auto';
}

/** Facts about the loaded model, fixed for the learner's life. */
export interface LearnerInfo {
  /** What a checkpoint of this learner records of its model (and must match to resume). */
  config: Record<string, unknown>;
  tokenizer: string;
  options: SapoOptions;
  backend: BackendInfo;
  parameters: number;
  /** The checkpoint's step count and metadata (e.g. the round it was saved at). */
  startStep: number;
  metadata: Record<string, string>;
  /** For a model folder, the memory plan it was loaded with; null for the embedded model. */
  memoryPlan: MemoryPlan | null;
}

/** Memory of the learner's side, sampled after each call that allocates. */
export interface LearnerMemory {
  /** Tensors alive and their bytes (tf.memory()). */
  tensors: number;
  tensorBytes: number;
  /** The wasm backend's heap (it never shrinks: its high-water mark), or null off wasm. */
  wasmHeapBytes: number | null;
}

export interface Learner {
  readonly info: LearnerInfo;
  /** Optimizer steps taken so far: the policy version that rollouts carry. */
  readonly steps: number;
  /**
   * Completions of text prompts (one per prompt: repeat a prompt for a group), or null for a prompt
   * that leaves no room for a completion in the model's context.
   */
  sample(prompts: readonly string[], options: SampleOptions): Promise<(TextCompletion | null)[]>;
  /** One SAPO step on this round's local groups and the external buffer. */
  step(local: readonly RolloutGroup[], external: readonly RolloutGroup[]): Promise<StepReport>;
  /** Saves the whole learner state as `dir/step-<n>.safetensors`; returns the file. */
  save(dir: string, metadata: Record<string, string>, keep?: number): Promise<string>;
  memory(): Promise<LearnerMemory>;
  /** Frees the model (and ends the worker). Idempotent. */
  close(): Promise<void>;
}

/** A learner on the calling thread. */
export async function openLearner(spec: LearnerSpec): Promise<Learner> {
  const backend = await selectBackend({ backend: spec.backend ?? 'auto' });
  const folder = (await stat(spec.model).catch(() => null))?.isDirectory() === true;
  if (!folder) {
    const { learner, metadata } = await openLearnerCheckpoint(spec.model, new ByteTokenizer(), spec.sapo ?? {});
    return new InThreadLearner(learner, backend, metadata, { ...learner.policy.config }, null);
  }
  const { learner, metadata, plan, checkpointConfig } = await openPretrainedLearner(spec.model, {
    ...(spec.resume === undefined ? {} : { resume: spec.resume }),
    ...(spec.lora === undefined ? {} : { lora: spec.lora }),
    ...(spec.contextLength === undefined ? {} : { contextLength: spec.contextLength }),
    sapo: spec.sapo ?? {},
    memory: withinLimit(availableMemory(backend.name, maxTensorBytesOf(backend)), spec.memoryLimit),
    weightCopies: weightCopiesOn(backend.tfBackend),
  });
  return new InThreadLearner(learner, backend, metadata, checkpointConfig, plan);
}

/** The adapter's largest shader binding, on webgpu. */
const maxTensorBytesOf = (backend: BackendInfo) =>
  backend.adapter === undefined ? {} : { maxTensorBytes: backend.adapter.limits.maxStorageBufferBindingSize };

const withinLimit = (available: MemoryLimit, limit: number | undefined): MemoryLimit =>
  limit === undefined || limit >= available.bytes
    ? available
    : { ...available, bytes: limit, source: 'the memory limit set' };

class InThreadLearner implements Learner {
  readonly info: LearnerInfo;
  readonly #learner: SapoLearner;
  #closed = false;

  constructor(
    learner: SapoLearner,
    backend: BackendInfo,
    metadata: Record<string, string>,
    config: Record<string, unknown>,
    memoryPlan: MemoryPlan | null,
  ) {
    this.#learner = learner;
    this.info = {
      config,
      tokenizer: learner.tokenizer.id,
      options: { ...learner.options },
      backend,
      parameters: learner.policy.parameterCount(),
      startStep: learner.steps,
      metadata,
      memoryPlan,
    };
  }

  get steps(): number {
    return this.#learner.steps;
  }

  async sample(prompts: readonly string[], options: SampleOptions): Promise<(TextCompletion | null)[]> {
    const { policy, tokenizer } = this.#learner;
    const fits = prompts.map((prompt) => tokenizer.encodePrompt(prompt).length < policy.config.contextLength);
    const kept = prompts.filter((_, i) => fits[i]);
    // The memory plan's rows sampled at once, unless the caller chose.
    const rows = this.info.memoryPlan?.sampleRows;
    const planned =
      rows === undefined || options.microBatchRows !== undefined ? options : { ...options, microBatchRows: rows };
    const completions = kept.length === 0 ? [] : generateText(policy, tokenizer, kept, planned);
    return fits.map((fit) => (fit ? (completions.shift() as TextCompletion) : null));
  }

  async step(local: readonly RolloutGroup[], external: readonly RolloutGroup[]): Promise<StepReport> {
    return this.#learner.step(local, external);
  }

  async save(dir: string, metadata: Record<string, string>, keep = 3): Promise<string> {
    const state = await learnerCheckpoint(this.#learner, metadata, this.info.config);
    try {
      return await saveCheckpoint(dir, state, { keep });
    } finally {
      state.release();
    }
  }

  async memory(): Promise<LearnerMemory> {
    const { numTensors, numBytes } = tf.memory();
    const heap = (tf.backend() as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.length;
    return { tensors: numTensors, tensorBytes: numBytes, wasmHeapBytes: heap ?? null };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#learner.dispose();
    this.#learner.policy.dispose();
  }
}

/**
 * A learner in its own `worker_threads` worker: every call is a message, so the caller's event loop
 * stays free while the model samples or trains. Errors inside a call reject that call with the same
 * typed error. If the worker dies (an uncaught error, out of memory), every pending and later call
 * rejects with LearnerCrashedError; nothing hangs. `resourceLimits` bounds the worker's JavaScript
 * heap (not the wasm heap or a GPU's memory).
 */
export async function startLearnerWorker(
  spec: LearnerSpec,
  options: { resourceLimits?: ResourceLimits } = {},
): Promise<Learner> {
  const worker = new Worker(new URL('./learner-worker.js', import.meta.url), {
    workerData: spec,
    ...(options.resourceLimits === undefined ? {} : { resourceLimits: options.resourceLimits }),
  });
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let crashed: Error | null = null;
  let steps = 0;
  let nextId = 0;
  let closing = false;

  const info = await new Promise<LearnerInfo>((resolve, reject) => {
    const onExit = (code: number) =>
      reject(new LearnerCrashedError(`the learner worker exited (code ${code}) while loading ${spec.model}`));
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (reply: Reply) => {
      worker.off('error', reject);
      worker.off('exit', onExit);
      if (reply.type === 'ready') resolve(reply.info);
      else
        reject(
          reply.type === 'failed' ? deserializeError(reply.error) : new Error(`unexpected first message ${reply.type}`),
        );
    });
  });
  steps = info.startStep;

  const fail = (error: Error) => {
    crashed ??= error;
    for (const { reject } of pending.values()) reject(crashed);
    pending.clear();
  };
  worker.on('message', (reply: Reply) => {
    if (reply.type !== 'result' && reply.type !== 'error') return;
    const call = pending.get(reply.id);
    pending.delete(reply.id);
    if (reply.type === 'result') {
      steps = reply.steps;
      call?.resolve(reply.value);
    } else call?.reject(deserializeError(reply.error));
  });
  worker.on('error', (error) =>
    fail(new LearnerCrashedError(`the learner worker crashed: ${error.message}`, { cause: error })),
  );
  worker.on('exit', (code) => {
    if (!closing || pending.size > 0)
      fail(new LearnerCrashedError(`the learner worker exited unexpectedly (code ${code})`));
  });

  const call = <M extends Request['method']>(method: M, ...args: Parameters<Learner[M]>) =>
    new Promise<Awaited<ReturnType<Learner[M]>>>((resolve, reject) => {
      if (crashed !== null) return reject(crashed);
      const id = nextId++;
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ id, method, args } as Request);
    });

  let closed: Promise<void> | null = null;
  return {
    info,
    get steps() {
      return steps;
    },
    sample: (prompts, options) => call('sample', prompts, options),
    step: (local, external) => call('step', local, external),
    save: (dir, metadata, keep) => call('save', dir, metadata, ...(keep === undefined ? [] : [keep])),
    memory: () => call('memory'),
    close() {
      closed ??= (async () => {
        if (crashed !== null) return;
        closing = true;
        const exited = new Promise((resolve) => worker.once('exit', resolve));
        await call('close').catch(() => {});
        await exited;
      })();
      return closed;
    },
  };
}
