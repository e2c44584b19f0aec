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
 *   npm run bench:learner -- --backends wasm --profile                where one step's time goes, by kernel
 *
 * Without --torch, the peer runs under $TORCH_PEER_PYTHON, else the first of `python3` and
 * `/usr/bin/python3` that imports torch (a pyenv `python3` on PATH may lack Debian's python3-torch).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  BACKEND_NAMES,
  type BackendName,
  ByteTokenizer,
  buildBatch,
  DEFAULT_SAPO_OPTIONS,
  describeBackend,
  type GraphKind,
  generate,
  Policy,
  parameterShapes,
  REFERENCE_CONFIG,
  type RolloutGroup,
  SapoLearner,
  selectBackend,
} from '@swarm-node/sapo';
import * as tf from '@tensorflow/tfjs-core';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: BACKEND_NAMES.join(',') },
    torch: { type: 'string', default: 'auto' },
    steps: { type: 'string', default: '5' },
    profile: { type: 'boolean', default: false },
  },
});
const BATCH = 32;
const GROUP = 8;
const STEPS = Number(values.steps);
/** Rows per micro-batch: SAPO's default (ours and the peer's), and the whole batch (the peer only). */
const MICRO_BATCH_ROWS = DEFAULT_SAPO_OPTIONS.microBatchRows;
const GENERATION = { prompts: BATCH, maxNewTokens: REFERENCE_CONFIG.contextLength - 16, rows: 8 };
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
  const start = performance.now();
  for (let i = 0; i < steps; i++) learner.step(groups, []);
  const seconds = (performance.now() - start) / 1000 / steps;
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

const generationPrompts = () =>
  Array.from({ length: GENERATION.prompts }, (_, i) => tokenizer.encodePrompt(`p${i}`.padEnd(14, '.')));

function timeGeneration(kvCache: boolean): number {
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 2 });
  const prompts = generationPrompts();
  const options = { maxNewTokens: GENERATION.maxNewTokens, seed: 3, kvCache, microBatchRows: GENERATION.rows };
  generate(policy, prompts.slice(0, 2), { ...options, maxNewTokens: 4 }); // warm-up
  const start = performance.now();
  const generated = generate(policy, prompts, options).reduce((a, c) => a + c.tokens.length, 0);
  const seconds = (performance.now() - start) / 1000;
  policy.dispose();
  return generated / seconds;
}

// ---- the PyTorch peer -------------------------------------------------------------------------

/** What torch_peer.py prints for the embedded model. */
interface PeerResult {
  environment: { torch: string; python: string; threads: number; blas: string[]; matmul1024Gflops: number };
  step: Record<string, { seconds: number; times: number[]; firstLoss: number; firstGradNorm: number }>;
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
  const dir = mkdtempSync(join(tmpdir(), 'torch-peer-'));
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

// ---- where a step's time goes ------------------------------------------------------------------

/**
 * One SAPO step's time by kernel, on the active backend: every registered kernel is wrapped in a
 * timer (wasm kernels run synchronously, so wall time is their time), and the step's wall time
 * less the kernels' is the JavaScript around them (engine bookkeeping, the tape, tidies).
 */
function profileStep(steps: number): void {
  const backend = tf.getBackend();
  const times = new Map<string, { ms: number; calls: number }>();
  const originals = tf.getKernelsForBackend(backend);
  let on = false;
  for (const kernel of originals) {
    tf.unregisterKernel(kernel.kernelName, backend);
    tf.registerKernel({
      ...kernel,
      kernelFunc: (args) => {
        if (!on) return kernel.kernelFunc(args);
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
  const policy = Policy.create(REFERENCE_CONFIG, { seed: 1, graph: 'fast' });
  const learner = new SapoLearner(policy, tokenizer, { localGroups: BATCH / GROUP, externalGroups: 0 });
  const groups = fullBatch();
  learner.step(groups, []);
  on = true;
  const start = performance.now();
  for (let i = 0; i < steps; i++) learner.step(groups, []);
  const total = (performance.now() - start) / steps;
  on = false;
  learner.dispose();
  policy.dispose();
  for (const kernel of originals) {
    tf.unregisterKernel(kernel.kernelName, backend);
    tf.registerKernel(kernel);
  }
  const rows = [...times].map(([key, t]) => ({ key, ms: t.ms / steps, calls: t.calls / steps }));
  rows.sort((a, b) => b.ms - a.ms);
  const kernels = rows.reduce((a, r) => a + r.ms, 0);
  const calls = rows.reduce((a, r) => a + r.calls, 0);
  console.log(
    `profile of one step, ${backend}, mean of ${steps}: ${total.toFixed(0)} ms, kernels ${kernels.toFixed(0)} ms in ${calls} calls, JavaScript between them ${(total - kernels).toFixed(0)} ms`,
  );
  for (const r of rows.slice(0, 40)) {
    console.log(
      `  ${r.ms.toFixed(1).padStart(7)} ms ${((100 * r.ms) / total).toFixed(1).padStart(5)} %  ${String(r.calls).padStart(5)} calls  ${r.key}`,
    );
  }
}

// ---- the run ----------------------------------------------------------------------------------

if (values.profile) {
  await selectBackend({ backend: values.backends.split(',')[0] as BackendName });
  profileStep(STEPS);
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
  ours.push({ backend: describeBackend(info).replace(/ — .*$/, ''), step: graph, generation: cached });
  console.log(describeBackend(info));
  console.log(
    `  train step  ours ${fast.seconds.toFixed(2)} s (${Math.round(fast.tokens / fast.seconds)} tokens/s)   naive ${naive.seconds.toFixed(2)} s (${Math.round(naive.tokens / naive.seconds)} tokens/s)   ${(naive.seconds / fast.seconds).toFixed(1)}x`,
  );
  console.log(
    `  generation  KV cache ${Math.round(cached)} tokens/s   no cache ${Math.round(uncached)} tokens/s   ${(cached / uncached).toFixed(1)}x`,
  );
  console.log(
    `  first step  loss ${fast.firstLoss.toFixed(6)}, gradient norm ${fast.firstGradNorm.toFixed(6)} (naive ${naive.firstGradNorm.toFixed(6)})`,
  );
  console.log(`  (${steps} timed steps each; tf.memory ${tf.memory().numTensors} tensors after)\n`);
}

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
      `  train step  micro-batches of ${MICRO_BATCH_ROWS} rows ${micro.seconds.toFixed(3)} s   whole batch ${whole.seconds.toFixed(3)} s   (${STEPS} timed steps each)`,
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
