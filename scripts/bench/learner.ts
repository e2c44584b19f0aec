/**
 * Learner speed for the reference config (2 layers, d_model 128, 4 heads, context 64), batch 32:
 * SAPO train-step time and tokens/s with our graph against tfjs's default ("naive") graph, and
 * batched generation tokens/s with and without the KV cache, on every backend present. Beside
 * them, in the same run, the PyTorch peer (scripts/bench/torch_peer.py: the same model from the
 * same weights, the same batch and loss, one CPU thread — what RL Swarm's CPU mode runs) when a
 * python3 with torch is present, and the ratio. Ratios are measured within one run.
 *
 *   npm run bench:learner                     (add -- --backends wasm to skip the slow pure-JS cpu)
 *   npm run bench:learner -- --backends wasm --torch off              without the PyTorch peer
 *   npm run bench:learner -- --backends wasm --torch /usr/bin/python3 the peer's interpreter
 *   npm run bench:learner -- --backends webgpu,wasm --torch off       webgpu beside wasm (here: a software adapter)
 *   npm run bench:learner -- --backends wasm --profile                where one step's time goes, by kernel
 *   npm run bench:learner -- --pretrained smollm2-135m --steps 1      a pre-trained model's shape (below)
 *   npm run bench:learner -- --backends wasm --baseline /tmp/before   ours against another checkout's model.ts
 *
 * --wasm-threads N (experimental, with --backends wasm) runs the wasm backend on tfjs-backend-wasm's
 * threaded SIMD build with N XNNPACK threads, loaded by hand: tfjs itself never uses it in Node
 * (its WASM_HAS_MULTITHREAD_SUPPORT flag is false there, tfjs issue 3830, and it hands the
 * threads' script to workers as a Blob URL, which Node's Worker cannot load). See useThreadedWasm.
 *
 * --baseline DIR times the fast-graph step of DIR's built packages/sapo (e.g. a git worktree of an
 * earlier commit, after its `npx tsc -b`) in the same process, its steps alternating with ours.
 *
 * --pretrained smollm2-135m|qwen2.5-0.5b builds a random model of that shape (make-tiny-model's
 * presets) with LoRA r = 16, alpha = 32 on q/k/v/o/gate/up/down, on wasm, and measures what a node
 * does with it: the build time, the memory plan, G = 8 completions of 128 new tokens from one
 * 32-token prompt with the KV cache, and the LoRA SAPO step on that group; then the same in
 * PyTorch (a Llama/Qwen2 of the same shape with the same adapters, one thread), and the ratios.
 * Where the plan keeps the packed copies while sampling only (keepPackedWeights: 'sampling'), it
 * then samples and steps once more: the second sampling packs the weights again, the step after
 * it drops them again. Where the plan keeps some but not all packed copies ('sampling', 'head'),
 * --compare-transient then runs the base held once throughout (keepPackedWeights: false, the
 * mode before them) in the same process, with that mode's own plan: its generation of 16 new
 * tokens per row (at ~1 token/s 128 would take a quarter of an hour) and its first step, on the
 * completions the first run sampled.
 * --steps 0 times no steps past the first.
 *
 * Without --torch, the peer runs under $TORCH_PEER_PYTHON, else the first of `python3` and
 * `/usr/bin/python3` that imports torch (a pyenv `python3` on PATH may lack Debian's python3-torch).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  availableMemory,
  BACKEND_NAMES,
  type BackendName,
  ByteTokenizer,
  buildBatch,
  DEFAULT_LORA,
  DEFAULT_SAPO_OPTIONS,
  describeBackend,
  expectedTensors,
  type GraphKind,
  generate,
  type KeepPackedWeights,
  Policy,
  type PretrainedConfig,
  PretrainedPolicy,
  parameterShapes,
  planMemory,
  pretrainedShape,
  REFERENCE_CONFIG,
  type RolloutGroup,
  SapoLearner,
  selectBackend,
  type Tokenizer,
  weightCopiesOn,
} from '@swarm-node/sapo';
import { BackendWasm, getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { MODEL_PRESETS } from '../../packages/sapo/test/fixtures/tiny-models.js';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: BACKEND_NAMES.join(',') },
    torch: { type: 'string', default: 'auto' },
    steps: { type: 'string' },
    profile: { type: 'boolean', default: false },
    pretrained: { type: 'string' },
    baseline: { type: 'string' },
    'wasm-threads': { type: 'string' },
    'compare-transient': { type: 'boolean', default: false },
  },
});
const BATCH = 32;
const GROUP = 8;
/** Timed steps after a warm-up: 5 for the embedded model, 1 for a pre-trained one (a step takes a minute). */
const STEPS = Number(values.steps ?? (values.pretrained === undefined ? 5 : 1));
/** Rows per micro-batch: SAPO's default (ours and the peer's), and the whole batch (the peer only). */
const MICRO_BATCH_ROWS = DEFAULT_SAPO_OPTIONS.microBatchRows;
/** 32 prompts of 16 tokens, 48 new tokens each, 8 rows at once; the best of 3 runs (a run takes under a second). */
const GENERATION = { prompts: BATCH, maxNewTokens: REFERENCE_CONFIG.contextLength - 16, rows: 8, repeats: 3 };
const tokenizer = new ByteTokenizer();
const PEER = fileURLToPath(new URL('./torch_peer.py', import.meta.url));

/** 4 groups of 8 completions whose prompt + completion fill the 64-token context: 32 rows of 63 (input, target) pairs. */
function fullBatch(): RolloutGroup[] {
  return Array.from({ length: BATCH / GROUP }, (_, g) => ({
    prompt: `prompt ${g} ${'p'.repeat(20)}`,
    completions: Array.from({ length: GROUP }, (_, i) => `${i}`.padEnd(REFERENCE_CONFIG.contextLength - 32, 'x')),
    rewards: Array.from({ length: GROUP }, (_, i) => i % 2),
  }));
}

interface Timed {
  seconds: number;
  tokens: number;
  /** The warm-up (first) step's loss and gradient norm, from the seeded weights: comparable with the peer's. */
  firstLoss: number;
  firstGradNorm: number;
}

function timeSteps(graph: GraphKind, steps: number): Timed {
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 1, graph });
  const learner = new SapoLearner(policy, tokenizer, { localGroups: BATCH / GROUP, externalGroups: 0 });
  const groups = fullBatch();
  const first = learner.step(groups, []); // warm-up: kernels compiled, Adam moments created
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const start = performance.now();
    learner.step(groups, []);
    times.push((performance.now() - start) / 1000);
  }
  const seconds = median(times);
  learner.dispose();
  policy.dispose();
  // Tokens the model reads per step: every (input, target) pair of the batch, prompt included.
  const rows = groups.flatMap((g) =>
    g.completions.map((c) => tokenizer.encodePrompt(g.prompt).length + tokenizer.encodeCompletion(c).length - 1),
  );
  return {
    seconds,
    tokens: rows.reduce((a, b) => a + b, 0),
    firstLoss: first.losses[0] as number,
    firstGradNorm: first.gradNorms[0] as number,
  };
}

/** Our fast-graph step and a baseline checkout's, steps alternating; median seconds of each. */
async function timeAgainstBaseline(dir: string, steps: number): Promise<{ ours: number; baseline: number }> {
  const module = (await import(pathToFileURL(join(dir, 'packages/sapo/dist/index.js')).href)) as {
    Policy: typeof Policy;
  };
  const groups = fullBatch();
  const learners = [Policy, module.Policy].map((Kind) => {
    const policy = Kind.create(REFERENCE_CONFIG, { seed: 1, graph: 'fast' });
    const learner = new SapoLearner(policy, tokenizer, { localGroups: BATCH / GROUP, externalGroups: 0 });
    learner.step(groups, []); // warm-up
    return { policy, learner, times: [] as number[] };
  });
  for (let i = 0; i < steps; i++) {
    for (const side of learners) {
      const start = performance.now();
      side.learner.step(groups, []);
      side.times.push((performance.now() - start) / 1000);
    }
  }
  for (const { policy, learner } of learners) {
    learner.dispose();
    policy.dispose();
  }
  const [a, b] = learners.map((side) => median(side.times)) as [number, number];
  return { ours: a, baseline: b };
}

const generationPrompts = () =>
  Array.from({ length: GENERATION.prompts }, (_, i) => tokenizer.encodePrompt(`p${i}`.padEnd(14, '.')));

function timeGeneration(kvCache: boolean): number {
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 2 });
  const prompts = generationPrompts();
  const options = { maxNewTokens: GENERATION.maxNewTokens, seed: 3, kvCache, microBatchRows: GENERATION.rows };
  generate(policy, prompts.slice(0, 2), { ...options, maxNewTokens: 4 }); // warm-up
  let best = 0;
  for (let i = 0; i < GENERATION.repeats; i++) {
    const start = performance.now();
    const generated = generate(policy, prompts, options).reduce((a, c) => a + c.tokens.length, 0);
    best = Math.max(best, generated / ((performance.now() - start) / 1000));
  }
  policy.dispose();
  return best;
}

/** The middle value (the mean of the two middle ones for an even count): a step time that one slow step on a shared machine does not move. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

// ---- the PyTorch peer -------------------------------------------------------------------------

/** What torch_peer.py prints for the embedded model. */
interface PeerResult {
  environment: { torch: string; python: string; threads: number; blas: string[]; matmul1024Gflops: number };
  step: Record<
    string,
    { seconds: number; times: number[]; firstSeconds: number; firstLoss: number; firstGradNorm: number }
  >;
  generation: { tokens: number; seconds: number; tokensPerSecond: number };
  peakRssMiB: number;
}

/** The interpreter to run the peer with, or why there is none. */
function findPython(): { python: string } | { missing: string } {
  if (values.torch === 'off') return { missing: 'not run (--torch off)' };
  const candidates =
    values.torch !== 'auto'
      ? [values.torch]
      : process.env.TORCH_PEER_PYTHON
        ? [process.env.TORCH_PEER_PYTHON]
        : ['python3', '/usr/bin/python3'];
  const tried: string[] = [];
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
    if (probe.status === 0) return { python };
    const why = probe.error ? 'not found' : (probe.stderr.trim().split('\n').at(-1) ?? `exit ${probe.status}`);
    tried.push(`${python}: ${why}`);
  }
  return {
    missing: `not run: no python3 with torch (${tried.join('; ')}); install Debian's python3-torch and libopenblas0-pthread, or pass --torch PYTHON`,
  };
}

/** Runs torch_peer.py on a spec (written to a temporary folder with `files`); its JSON line, or why not. */
function runPeer<T>(
  python: string,
  spec: Record<string, unknown>,
  files: Record<string, Uint8Array> = {},
): { result: T } | { failed: string } {
  const dir = mkdtempSync(join(os.tmpdir(), 'torch-peer-'));
  try {
    const paths: Record<string, string> = {};
    for (const [name, bytes] of Object.entries(files)) {
      paths[name] = join(dir, name);
      writeFileSync(paths[name], bytes);
    }
    writeFileSync(join(dir, 'spec.json'), JSON.stringify({ ...spec, ...paths }));
    // One thread, as ours: torch.set_num_threads(1) in the peer, and no OpenBLAS or OpenMP pool.
    const env = { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' };
    const run = spawnSync(python, [PEER, join(dir, 'spec.json')], { encoding: 'utf8', env, maxBuffer: 1 << 24 });
    const last = run.stdout?.trim().split('\n').at(-1);
    if (run.status !== 0 || !last) {
      return { failed: `torch_peer.py failed (${run.error?.message ?? `exit ${run.status}`}): ${run.stderr?.trim()}` };
    }
    return { result: JSON.parse(last) as T };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The embedded model's step and generation in PyTorch, from the weights and on the batch our step used. */
function embeddedPeer(python: string): { result: PeerResult } | { failed: string } {
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 1 }); // timeSteps' weights
  const shapes = [...parameterShapes(REFERENCE_CONFIG)];
  const weights = new Float32Array(shapes.reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0));
  let offset = 0;
  for (const [name] of shapes) {
    const data = policy.params.get(name)?.dataSync() as Float32Array;
    weights.set(data, offset);
    offset += data.length;
  }
  policy.dispose();
  const batch = buildBatch(fullBatch(), tokenizer, REFERENCE_CONFIG.contextLength);
  if (batch === null) throw new Error('the benchmark batch is empty');
  const { epsLow, epsHigh, learningRate, maxGradNorm } = DEFAULT_SAPO_OPTIONS;
  const spec = {
    mode: 'embedded',
    config: REFERENCE_CONFIG,
    parameters: shapes,
    batch: {
      tokens: batch.tokens.arraySync(),
      targets: batch.targets.arraySync(),
      mask: batch.mask.arraySync(),
      advantages: batch.advantages.arraySync(),
    },
    sapo: { epsLow, epsHigh, learningRate, maxGradNorm },
    microBatchRows: [MICRO_BATCH_ROWS, BATCH],
    steps: STEPS,
    generation: { ...GENERATION, prompts: generationPrompts(), eos: [tokenizer.eos] },
  };
  tf.dispose([batch.tokens, batch.targets, batch.mask, batch.advantages]);
  return runPeer<PeerResult>(python, spec, { weights: new Uint8Array(weights.buffer) });
}

function describePeer(env: PeerResult['environment']): string {
  const openblas =
    env.blas.find((lib) => lib.includes('libopenblas')) ?? env.blas.find((lib) => lib.includes('openblas'));
  const blas = openblas
    ? `OpenBLAS ${openblas.replace(/^.*x86_64-linux-gnu\//, '')}`
    : `NOT OpenBLAS: ${env.blas.join(', ') || 'no BLAS mapped'} (the reference BLAS is ~12x slower)`;
  return `pytorch ${env.torch} (python ${env.python}, ${env.threads} thread${env.threads === 1 ? '' : 's'}, ${blas}, 1024² matmul ${env.matmul1024Gflops} GFLOP/s)`;
}

// ---- a pre-trained model's shape ---------------------------------------------------------------

/** What a node does with a pre-trained model: one group of G completions of a prompt, then a step on it. */
const PRETRAINED_RUN = { promptTokens: 32, newTokens: 128, group: 8 };

/** The preset's config, as parseConfig would give it for the real model's config.json. */
function presetConfig(name: string): PretrainedConfig {
  const preset = MODEL_PRESETS[name as keyof typeof MODEL_PRESETS];
  if (preset === undefined) {
    throw new Error(`--pretrained ${name} is unknown; known: ${Object.keys(MODEL_PRESETS).join(', ')}`);
  }
  return { ...preset, headDim: preset.hiddenSize / preset.heads, attentionBias: preset.architecture === 'qwen2' };
}

/**
 * Random base weights of a file's shape: RMSNorm scales 1, biases 0, the rest uniform with
 * standard deviation 0.02 (xorshift32, seeded by the tensor's index). Fast, so a load's time is
 * the model's and not the generator's (the generator's is measured and reported apart).
 */
function randomWeights(name: string, size: number, seed: number): Float32Array {
  const values = new Float32Array(size);
  if (name.endsWith('norm.weight')) return values.fill(1);
  if (name.endsWith('.bias')) return values;
  const half = 0.02 * Math.sqrt(3);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    values[i] = ((state >>> 0) / 4294967296 - 0.5) * 2 * half;
  }
  return values;
}

/** Token ids in and out, for groups that carry their sampled ids (as a node's own groups do). */
class IdTokenizer implements Tokenizer {
  readonly id = 'bench-ids';
  readonly pad = 0;
  readonly bos = -1;
  readonly eos: number;
  readonly vocabSize: number;
  readonly #prompt: number[];

  constructor(vocabSize: number, prompt: number[]) {
    this.vocabSize = vocabSize;
    this.eos = vocabSize - 1;
    this.#prompt = prompt;
  }

  encodePrompt(): number[] {
    return this.#prompt;
  }

  encodeCompletion(): number[] {
    throw new Error('the benchmark gives every completion as ids');
  }

  decode(): string {
    return '';
  }
}

const mib = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;
const peakRss = () => process.resourceUsage().maxRSS * 1024;
const wasmHeap = () => (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.length ?? 0;

/** What torch_peer.py prints for a pre-trained shape. */
interface PretrainedPeerResult {
  environment: PeerResult['environment'];
  buildSeconds: number;
  rssAfterBuildMiB: number;
  generation: { tokens: number; seconds: number; tokensPerSecond: number };
  step: PeerResult['step'];
  peakRssMiB: number;
}

/** What the wasm side measured of a pre-trained shape; `failure` says where it stopped, if it did. */
interface WasmPretrained {
  build?: number;
  generation?: number;
  first?: number;
  step?: number;
  /** 'sampling' only: generation and a step once more, after the step (packed again, dropped again). */
  generationAgain?: number;
  stepAgain?: number;
  completions?: number[][];
  failure?: string;
}

/**
 * Build, generation and the LoRA step on wasm, each printed as it is measured. A failure (the
 * heap running out) ends it, with the phase it happened in.
 */
async function wasmPretrained(
  config: PretrainedConfig,
  prompt: number[],
  sampleRows: number,
  microBatchRows: number,
  keepPackedWeights: KeepPackedWeights,
  { newTokens, steps, train }: { newTokens: number; steps: number; train?: number[][] | undefined } = {
    newTokens: PRETRAINED_RUN.newTokens,
    steps: STEPS,
  },
): Promise<WasmPretrained> {
  const { group } = PRETRAINED_RUN;
  // The context of the full run, whatever newTokens: the same model and rotary tables.
  const contextLength = prompt.length + PRETRAINED_RUN.newTokens;
  const result: WasmPretrained = {};
  const state = () => `RSS peak ${mib(peakRss())}, wasm heap ${mib(wasmHeap())}`;
  let phase = 'the build';
  try {
    const shapes = expectedTensors(config);
    let generating = 0;
    let index = 0;
    const started = performance.now();
    const policy = await PretrainedPolicy.load(
      config,
      async (tensor) => {
        const from = performance.now();
        const values = randomWeights(
          tensor,
          (shapes.get(tensor) as number[]).reduce((a, b) => a * b, 1),
          ++index,
        );
        generating += performance.now() - from;
        return values;
      },
      { contextLength, lora: { ...DEFAULT_LORA, seed: 1 }, keepPackedWeights },
    );
    result.build = (performance.now() - started - generating) / 1000;
    console.log(
      `  build       ${result.build.toFixed(1)} s (random values ${(generating / 1000).toFixed(1)} s more, not counted); ${state()}`,
    );

    phase = 'generation';
    const prompts = Array.from({ length: group }, () => prompt);
    const sampling = { seed: 3, eos: [] as number[], microBatchRows: sampleRows };
    generate(policy, prompts.slice(0, 1), { ...sampling, maxNewTokens: 2 }); // warm-up
    const timedGeneration = () => {
      const from = performance.now();
      const tokens = generate(policy, prompts, { ...sampling, maxNewTokens: newTokens }).map((c) => c.tokens);
      return { tokens, perSecond: (group * newTokens) / ((performance.now() - from) / 1000) };
    };
    const sampled = timedGeneration();
    const completions = sampled.tokens;
    result.generation = sampled.perSecond;
    result.completions = completions;
    console.log(
      `  generation  ${result.generation.toFixed(1)} tokens/s (${group} rows × ${newTokens}, KV cache, ${sampleRows} rows at once; packed copies: ${keepPackedWeights}); ${state()}`,
    );

    phase = 'the LoRA step';
    // The step trains on `train` where given (another run's completions: the same batch), else on what was sampled.
    const batch = train ?? completions;
    const learner = new SapoLearner(policy, new IdTokenizer(config.vocabSize, prompt), {
      localGroups: 1,
      externalGroups: 0,
      microBatchRows,
    });
    const groups: RolloutGroup[] = [
      {
        prompt: '',
        completions: batch.map(() => ''),
        completionTokens: batch,
        rewards: batch.map((_, i) => i % 2),
      },
    ];
    const timedStep = () => {
      const from = performance.now();
      learner.step(groups, []);
      return (performance.now() - from) / 1000;
    };
    result.first = timedStep();
    const rowsTokens = `${group} rows × ${prompt.length + (batch[0]?.length ?? 0) - 1} tokens in micro-batches of ${microBatchRows}`;
    if (steps > 0) {
      const from = performance.now();
      if (values.profile) profile('the LoRA step', () => learner.step(groups, []), steps);
      else for (let i = 0; i < steps; i++) learner.step(groups, []);
      result.step = (performance.now() - from) / 1000 / steps;
      console.log(
        `  LoRA step   ${result.step.toFixed(1)} s (${steps} timed after a first of ${result.first.toFixed(1)} s; ${rowsTokens}); ${state()}\n`,
      );
    } else {
      console.log(`  LoRA step   first ${result.first.toFixed(1)} s (${rowsTokens}); ${state()}\n`);
    }
    if (keepPackedWeights === 'sampling') {
      // A round's cycle once more: sampling packs the base again (its first token), the step drops it again.
      phase = 'generation after a step';
      result.generationAgain = timedGeneration().perSecond;
      console.log(
        `  generation after the step  ${result.generationAgain.toFixed(1)} tokens/s (its first token packs the base again); ${state()}`,
      );
      phase = 'the LoRA step after it';
      result.stepAgain = timedStep();
      console.log(
        `  LoRA step after it  ${result.stepAgain.toFixed(1)} s (the packed copies dropped first); ${state()}\n`,
      );
    }
    learner.dispose();
    policy.dispose();
  } catch (error) {
    // A wasm heap that ran out leaves the backend unusable: say where, and stop using it.
    result.failure = `wasm failed in ${phase}: ${(error as Error).message.split('\n', 1)[0]} (${state()})`;
  }
  return result;
}

async function pretrainedBench(name: string): Promise<void> {
  const config = presetConfig(name);
  const { promptTokens, newTokens, group } = PRETRAINED_RUN;
  const contextLength = promptTokens + newTokens;
  const lora = { ...DEFAULT_LORA };
  const info = await selectBackend({ backend: 'wasm' });
  const shape = pretrainedShape(config, lora);
  console.log(
    `${name}: ${config.architecture}, ${config.layers} layers, d ${config.hiddenSize}, ${config.heads} heads / ${config.kvHeads} KV, MLP ${config.intermediateSize}, vocabulary ${config.vocabSize}; ` +
      `${(shape.frozenParameters / 1e6).toFixed(1)} M base + ${(shape.trainableParameters / 1e6).toFixed(2)} M LoRA parameters (r ${lora.rank}, alpha ${lora.alpha}, ${lora.targets.join('/')}); ` +
      `G = ${group} × ${newTokens} new tokens after a ${promptTokens}-token prompt; node ${process.version}\n`,
  );
  const run = {
    contextLength,
    sampleRows: group,
    microBatchRows: DEFAULT_SAPO_OPTIONS.microBatchRows,
    reference: false,
    weightCopies: weightCopiesOn('wasm'),
  };
  const plan = planMemory(shape, run, availableMemory('wasm'));
  console.log(describe(info));
  console.log(`  ${plan.summary}`);
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 7919 + 11) % config.vocabSize);
  const microBatchRows = Math.max(1, plan.microBatchRows);
  const ours: WasmPretrained = plan.fits
    ? await wasmPretrained(config, prompt, plan.sampleRows, microBatchRows, plan.keepPackedWeights)
    : { failure: 'not run: the memory plan refuses it (above)' };
  if (ours.failure !== undefined) console.log(`  ${ours.failure}\n`);
  const partly = plan.keepPackedWeights === 'sampling' || plan.keepPackedWeights === 'head';
  if (values['compare-transient'] && partly && ours.failure === undefined) {
    const held = planMemory(shape, run, availableMemory('wasm'), false);
    console.log(`  the same, the base held once throughout (keepPackedWeights: false): ${held.summary}`);
    const newTokens = 16;
    const transient = await wasmPretrained(config, prompt, held.sampleRows, held.microBatchRows, false, {
      newTokens,
      steps: 0,
      train: ours.completions,
    });
    if (transient.failure !== undefined) console.log(`  ${transient.failure}\n`);
    else {
      const ratio = (a?: number, b?: number) => (a === undefined || b === undefined ? '?' : (a / b).toFixed(2));
      console.log(
        `  ${plan.keepPackedWeights} / false: generation ${ratio(ours.generation, transient.generation)}x the tokens/s (after a step: ${ratio(ours.generationAgain, transient.generation)}x), ` +
          `first step ${ratio(ours.first, transient.first)}x the time (after the second sampling: ${ratio(ours.stepAgain, transient.first)}x)\n`,
      );
    }
  }

  const python = findPython();
  if ('missing' in python) {
    console.log(`PyTorch peer: ${python.missing}`);
    return;
  }
  // The batch our step trained on (or, when wasm could not sample, the prompt and made-up completions).
  const completions =
    ours.completions ??
    Array.from({ length: group }, (_, r) =>
      Array.from({ length: newTokens }, (_, t) => (r * 104729 + t * 7919) % config.vocabSize),
    );
  const rows = completions.map((c) => [...prompt, ...c]);
  const rowsList = [...new Set([microBatchRows, group])];
  const peer = runPeer<PretrainedPeerResult>(python.python, {
    mode: 'pretrained',
    config,
    lora: { rank: lora.rank, alpha: lora.alpha, targets: lora.targets },
    batch: {
      tokens: rows.map((r) => r.slice(0, -1)),
      targets: rows.map((r) => r.slice(1)),
      mask: rows.map((r) => r.slice(1).map((_, t) => (t + 1 >= promptTokens ? 1 : 0))),
      advantages: completions.map((_, i) => (i % 2 === 0 ? -1 : 1)),
    },
    sapo: (({ epsLow, epsHigh, learningRate, maxGradNorm }) => ({ epsLow, epsHigh, learningRate, maxGradNorm }))(
      DEFAULT_SAPO_OPTIONS,
    ),
    microBatchRows: rowsList,
    steps: STEPS,
    generation: { prompts: Array.from({ length: group }, () => prompt), maxNewTokens: newTokens, rows: group, eos: [] },
  });
  if ('failed' in peer) {
    console.log(`PyTorch peer (${python.python}): ${peer.failed}`);
    return;
  }
  const r = peer.result;
  const micro = r.step[String(microBatchRows)] as PeerResult['step'][string];
  const whole = r.step[String(group)] as PeerResult['step'][string];
  console.log(`${describePeer(r.environment)} — ${python.python}`);
  console.log(`  build       ${r.buildSeconds.toFixed(1)} s; RSS ${Math.round(r.rssAfterBuildMiB)} MiB`);
  console.log(`  generation  ${r.generation.tokensPerSecond.toFixed(1)} tokens/s (${group} rows at once, KV cache)`);
  console.log(
    `  LoRA step   micro-batches of ${microBatchRows}: ${micro.seconds.toFixed(1)} s (first ${micro.firstSeconds.toFixed(1)} s)` +
      (microBatchRows === group ? '' : `   whole batch: ${whole.seconds.toFixed(1)} s`) +
      `; peak RSS ${Math.round(r.peakRssMiB)} MiB`,
  );
  const ratios = [
    ours.build === undefined ? '' : `build ${(ours.build / r.buildSeconds).toFixed(1)}x`,
    ours.generation === undefined
      ? ''
      : `generation ${(r.generation.tokensPerSecond / ours.generation).toFixed(1)}x slower`,
    ours.step === undefined
      ? ''
      : `LoRA step ${(ours.step / micro.seconds).toFixed(1)}x slower (micro-batches of ${microBatchRows} both${microBatchRows === group ? '' : `; ${(ours.step / whole.seconds).toFixed(1)}x against its whole batch`})`,
  ].filter((text) => text !== '');
  if (ratios.length > 0) console.log(`  wasm / pytorch: ${ratios.join(', ')}`);
}

// ---- where a step's time goes ------------------------------------------------------------------

/**
 * `run`'s time by kernel, on the active backend, printed as a table: every registered kernel is
 * wrapped in a timer (wasm kernels run synchronously, so wall time is their time), and the wall
 * time less the kernels' is the JavaScript around them (engine bookkeeping, the tape, tidies).
 */
function profile(what: string, run: () => void, repeats: number): void {
  const backend = tf.getBackend();
  const times = new Map<string, { ms: number; calls: number }>();
  const originals = tf.getKernelsForBackend(backend);
  for (const kernel of originals) {
    tf.unregisterKernel(kernel.kernelName, backend);
    tf.registerKernel({
      ...kernel,
      kernelFunc: (args) => {
        const start = performance.now();
        const out = kernel.kernelFunc(args);
        const ms = performance.now() - start;
        const shapes = Object.values(args.inputs).map((t) => `[${t?.shape}]`);
        const key = kernel.kernelName.endsWith('MatMul')
          ? `${kernel.kernelName} ${shapes.join('·')}`
          : kernel.kernelName;
        const entry = times.get(key) ?? { ms: 0, calls: 0 };
        entry.ms += ms;
        entry.calls++;
        times.set(key, entry);
        return out;
      },
    });
  }
  const start = performance.now();
  try {
    for (let i = 0; i < repeats; i++) run();
  } finally {
    for (const kernel of originals) {
      tf.unregisterKernel(kernel.kernelName, backend);
      tf.registerKernel(kernel);
    }
  }
  const total = (performance.now() - start) / repeats;
  const rows = [...times].map(([key, t]) => ({ key, ms: t.ms / repeats, calls: t.calls / repeats }));
  rows.sort((a, b) => b.ms - a.ms);
  const kernels = rows.reduce((a, r) => a + r.ms, 0);
  const calls = rows.reduce((a, r) => a + r.calls, 0);
  console.log(
    `profile of ${what}, ${backend}, mean of ${repeats}: ${total.toFixed(0)} ms, kernels ${kernels.toFixed(0)} ms in ${calls} calls, JavaScript between them ${(total - kernels).toFixed(0)} ms`,
  );
  for (const r of rows.slice(0, 40)) {
    console.log(
      `  ${r.ms.toFixed(1).padStart(9)} ms ${((100 * r.ms) / total).toFixed(1).padStart(5)} %  ${String(r.calls).padStart(6)} calls  ${r.key}`,
    );
  }
}

/** One SAPO step of the embedded model (fast graph), by kernel. */
function profileStep(steps: number): void {
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 1, graph: 'fast' });
  const learner = new SapoLearner(policy, tokenizer, { localGroups: BATCH / GROUP, externalGroups: 0 });
  const groups = fullBatch();
  learner.step(groups, []);
  profile('one step', () => learner.step(groups, []), steps);
  learner.dispose();
  policy.dispose();
}

// ---- the wasm backend's threads (experimental) -------------------------------------------------

/**
 * Registers tfjs-backend-wasm's threaded SIMD build as the 'wasm' backend, with `threads` XNNPACK
 * threads, and returns how many it got. Its Emscripten module supports Node (pthreads as
 * worker_threads); what tfjs lacks is the loading: the threads' script is written to a file (as
 * tfjs does for its Blob, its escaped newlines restored) and the module is handed to BackendWasm.
 * The pool is capped at half the logical cores the module sees, 1 on a 2-core machine, so they are
 * overstated to it while it starts. Only XNNPACK's operators use the threads (products with a 2-D
 * operand, sigmoid, some elementwise ops); the batched product, transposes and tanh stay serial.
 */
async function useThreadedWasm(threads: number): Promise<number> {
  const require = createRequire(import.meta.url);
  const out = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
  const { wasmWorkerContents } = require(join(out, 'tfjs-backend-wasm-threaded-simd.worker.js')) as {
    wasmWorkerContents: string;
  };
  const folder = mkdtempSync(join(os.tmpdir(), 'tfjs-wasm-threads-'));
  const worker = join(folder, 'worker.cjs');
  writeFileSync(worker, wasmWorkerContents.replace(/\n/g, '\\n'));
  const factory = require(join(out, 'tfjs-backend-wasm-threaded-simd.js')) as (config: object) => Promise<{
    cwrap: (name: string, returns: string | null, args: string[]) => unknown;
    tfjs?: unknown;
  }>;
  const cpus = os.cpus;
  os.cpus = () => Array.from({ length: 2 * threads }, (_, i) => cpus()[i % cpus().length] as os.CpuInfo);
  let module: Awaited<ReturnType<typeof factory>>;
  try {
    module = await factory({
      locateFile: (file: string) => (file.endsWith('.worker.js') ? worker : join(out, file)),
      mainScriptUrlOrBlob: join(out, 'tfjs-backend-wasm-threaded-simd.js'),
    });
  } finally {
    os.cpus = cpus;
    // Every worker of its pool (8) has read the script by the time the module is ready.
    rmSync(folder, { recursive: true, force: true });
  }
  // As tfjs-backend-wasm's own init() wraps its module.
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  setThreadsCount(threads);
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', () => new BackendWasm(module as unknown as ConstructorParameters<typeof BackendWasm>[0]));
  await tf.setBackend('wasm');
  return getThreadsCount();
}

// ---- the run ----------------------------------------------------------------------------------

/** XNNPACK threads of the hand-loaded threaded build (--wasm-threads), or undefined for tfjs's own wasm. */
const wasmThreads =
  values['wasm-threads'] === undefined ? undefined : await useThreadedWasm(Number(values['wasm-threads']));
/** describeBackend, which reads tfjs's flags, corrected for a hand-loaded threaded build. */
const describe = (info: Awaited<ReturnType<typeof selectBackend>>) =>
  wasmThreads === undefined || info.name !== 'wasm'
    ? describeBackend(info)
    : describeBackend(info).replace('1 thread', `${wasmThreads} threads, threaded build loaded by hand`);
if (values.pretrained !== undefined) {
  await pretrainedBench(values.pretrained);
  process.exit(0);
}
if (values.profile) {
  // The first of --backends that is present (TensorFlow's come first by default and are rarely installed).
  for (const name of values.backends.split(',') as BackendName[]) {
    try {
      await selectBackend({ backend: name });
    } catch {
      continue;
    }
    profileStep(STEPS);
    break;
  }
  process.exit(0);
}

console.log(`reference config ${JSON.stringify(REFERENCE_CONFIG)}, batch ${BATCH}, node ${process.version}\n`);
const ours: { backend: string; step: Timed; generation: number }[] = [];
for (const name of values.backends.split(',') as BackendName[]) {
  let info: Awaited<ReturnType<typeof selectBackend>>;
  try {
    info = await selectBackend({ backend: name });
  } catch (error) {
    console.log(`${name}: not available: ${(error as { reason?: string }).reason ?? (error as Error).message}\n`);
    continue;
  }
  const steps = name === 'cpu' ? 1 : STEPS;
  const fast = timeSteps('fast', steps);
  const naive = timeSteps('naive', steps);
  const cached = timeGeneration(true);
  const uncached = timeGeneration(false);
  const graph = tf.getBackend() === 'wasm' ? fast : naive; // what a node runs (defaultGraph)
  ours.push({ backend: describe(info).replace(/ — .*$/, ''), step: graph, generation: cached });
  console.log(describe(info));
  console.log(
    `  train step  ours ${fast.seconds.toFixed(2)} s (${Math.round(fast.tokens / fast.seconds)} tokens/s)   naive ${naive.seconds.toFixed(2)} s (${Math.round(naive.tokens / naive.seconds)} tokens/s)   ${(naive.seconds / fast.seconds).toFixed(1)}x`,
  );
  console.log(
    `  generation  KV cache ${Math.round(cached)} tokens/s   no cache ${Math.round(uncached)} tokens/s   ${(cached / uncached).toFixed(1)}x`,
  );
  console.log(
    `  first step  loss ${fast.firstLoss.toFixed(6)}, gradient norm ${fast.firstGradNorm.toFixed(6)} (naive ${naive.firstGradNorm.toFixed(6)})`,
  );
  if (values.baseline !== undefined && tf.getBackend() === 'wasm') {
    const against = await timeAgainstBaseline(values.baseline, steps * 2);
    console.log(
      `  baseline    ${values.baseline}: ${against.baseline.toFixed(2)} s, ours ${against.ours.toFixed(2)} s in the same process, steps alternating (median of ${steps * 2} each): ${(against.baseline / against.ours).toFixed(2)}x`,
    );
  }
  console.log(
    `  (train step: median of ${steps} timed steps after a warm-up; generation: best of ${GENERATION.repeats}; tf.memory ${tf.memory().numTensors} tensors after)\n`,
  );
}

// Every other backend against wasm, from this run. A software adapter is this machine's CPU
// running Dawn's GPU path, so its figure says what the webgpu code costs, not what a GPU does.
const wasm = ours.find((o) => o.backend.startsWith('wasm'));
for (const other of ours) {
  if (wasm === undefined || other === wasm) continue;
  const label = other.backend.includes('software adapter') ? ' (a software adapter on the CPU: not a GPU figure)' : '';
  console.log(
    `${other.backend.replace(/ \(.*$/, '')} / wasm${label}: step ${(other.step.seconds / wasm.step.seconds).toFixed(1)}x the time, generation ${(wasm.generation / other.generation).toFixed(1)}x slower, first-step gradient norms differ by ${(Math.abs(other.step.firstGradNorm - wasm.step.firstGradNorm) / wasm.step.firstGradNorm).toExponential(1)} (relative)`,
  );
}
if (ours.length > 1) console.log('');

const python = findPython();
if ('missing' in python) console.log(`PyTorch peer: ${python.missing}`);
else {
  const peer = embeddedPeer(python.python);
  if ('failed' in peer) console.log(`PyTorch peer (${python.python}): ${peer.failed}`);
  else {
    const { environment, step, generation } = peer.result;
    const micro = step[String(MICRO_BATCH_ROWS)] as PeerResult['step'][string];
    const whole = step[String(BATCH)] as PeerResult['step'][string];
    console.log(`${describePeer(environment)} — ${python.python}`);
    console.log(
      `  train step  micro-batches of ${MICRO_BATCH_ROWS} rows ${micro.seconds.toFixed(3)} s   whole batch ${whole.seconds.toFixed(3)} s   (median of ${STEPS} after a warm-up)`,
    );
    console.log(`  generation  KV cache ${Math.round(generation.tokensPerSecond)} tokens/s`);
    console.log(`  first step  loss ${micro.firstLoss.toFixed(6)}, gradient norm ${micro.firstGradNorm.toFixed(6)}`);
    for (const { backend, step: s, generation: g } of ours) {
      console.log(
        `  ${backend} / pytorch: step ${(s.seconds / micro.seconds).toFixed(1)}x slower (micro-batches of ${MICRO_BATCH_ROWS} both; ${(s.seconds / whole.seconds).toFixed(1)}x against its whole batch)` +
          `, generation ${(generation.tokensPerSecond / g).toFixed(1)}x slower, first-step gradient norms differ by ${(Math.abs(s.firstGradNorm - micro.firstGradNorm) / micro.firstGradNorm).toExponential(1)} (relative)`,
      );
    }
  }
}
// The threaded build's workers would keep the process alive.
process.exit(0);
