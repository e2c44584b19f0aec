/**
 * Picks the tfjs backend the learner runs on (DESIGN.md, "Tensor backends"): TensorFlow on a GPU,
 * WebGPU on a hardware adapter, TensorFlow on the CPU, wasm, then pure-JS cpu. The TensorFlow
 * packages and `webgpu` (Dawn) are optional dependencies whose install or load may fail, so they
 * are imported only when tried, and every way they can fail becomes a note rather than a crash.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { SapoError } from './errors.js';
import { describeAdapter, probeWebGpu, startWebGpu, type WebGpuAdapter, WebGpuUnavailable } from './webgpu.js';

export type BackendName = 'tensorflow-gpu' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';

/**
 * Every backend, best first: the order 'auto' tries them in. 'auto' takes webgpu on a hardware
 * adapter only: a software one (Mesa's llvmpipe) computes the same, several times slower than wasm.
 */
export const BACKEND_NAMES: readonly BackendName[] = Object.freeze([
  'tensorflow-gpu',
  'webgpu',
  'tensorflow',
  'wasm',
  'cpu',
]);

export interface BackendInfo {
  /** The backend chosen. */
  name: BackendName;
  /** tf.getBackend() after selection: 'tensorflow', 'webgpu', 'wasm' or 'cpu'. */
  tfBackend: string;
  /** True only when a GPU computes: TensorFlow has a GPU device, or WebGPU runs on a hardware adapter. */
  gpu: boolean;
  /** webgpu only: the adapter (vendor, architecture, device, software or not, limits). */
  adapter?: WebGpuAdapter;
  /** wasm only: SIMD instructions in use. */
  simd?: boolean;
  /** wasm only: multi-threaded (never in Node, where tfjs runs wasm on one thread). */
  threads?: boolean;
  /** One line per backend tried before this one: `name: why it was skipped (details)`. */
  notes: string[];
}

export interface SelectBackendOptions {
  /** A backend to use or fail on, or 'auto' for the first that works in BACKEND_NAMES order. Default 'auto'. */
  backend?: BackendName | 'auto';
}

const PACKAGES = { 'tensorflow-gpu': '@tensorflow/tfjs-node-gpu', tensorflow: '@tensorflow/tfjs-node' } as const;

const HINTS: Record<BackendName, string> = {
  'tensorflow-gpu': 'install @tensorflow/tfjs-node-gpu with CUDA 11.2 and cuDNN 8.1, or use --backend wasm',
  webgpu:
    'install the optional webgpu package and a GPU driver with Vulkan, Metal or D3D12 (for the software adapter on Debian or Ubuntu: apt-get install libegl-dev libegl-mesa0 libgl1-mesa-dri), or use --backend wasm',
  tensorflow: 'run npm install @tensorflow/tfjs-node with network access, or use --backend wasm',
  wasm: 'reinstall @tensorflow/tfjs-backend-wasm (its dist/*.wasm files must be present), or use --backend cpu',
  cpu: 'reinstall @tensorflow/tfjs-core and @tensorflow/tfjs-backend-cpu',
};

export class UnknownBackendError extends SapoError {
  readonly backend: string;

  constructor(backend: string) {
    super(
      'UNKNOWN_BACKEND',
      `unknown backend ${JSON.stringify(backend)}; valid backends: auto, ${BACKEND_NAMES.join(', ')}`,
    );
    this.backend = backend;
  }
}

export class BackendUnavailableError extends SapoError {
  readonly backend: BackendName;
  readonly reason: string;

  constructor(backend: BackendName, reason: string) {
    super('BACKEND_UNAVAILABLE', `backend ${backend} cannot be used: ${reason}; ${HINTS[backend]}`);
    this.backend = backend;
    this.reason = reason;
  }
}

/** Reads a --backend value: 'auto' or one of BACKEND_NAMES, any case, surrounding spaces ignored. */
export function parseBackendName(text: string): BackendName | 'auto' {
  const name = String(text).trim().toLowerCase();
  if (name === 'auto' || (BACKEND_NAMES as readonly string[]).includes(name)) return name as BackendName | 'auto';
  throw new UnknownBackendError(String(text));
}

type Chosen = Omit<BackendInfo, 'notes'>;
/** A failed try: why (`short (details)`), and for tfjs-node-gpu without a GPU the TensorFlow-on-CPU it still gives. */
type Skipped = { reason: string; onCpu?: Chosen };

const localRequire = createRequire(import.meta.url);

async function activate(tfBackend: string): Promise<boolean> {
  if (!(await tf.setBackend(tfBackend))) return false;
  await tf.ready();
  return true;
}

/** Loads a TensorFlow package, which registers and sets the 'tensorflow' backend on import; returns why not. */
async function loadTensorflow(pkg: string): Promise<string | undefined> {
  try {
    localRequire.resolve(pkg);
  } catch {
    return `not installed (${pkg} is optional; ${pkg.endsWith('-gpu') ? 'needs CUDA 11.2 + cuDNN 8.1' : 'its install downloads libtensorflow, so fails offline'})`;
  }
  try {
    await import(pkg);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return `installed but failed to load: ${explainTensorflowLoadError(pkg, message)} (${message.split('\n', 1)[0]?.trim().replace(/\.$/, '')})`;
  }
  return (await activate('tensorflow')) ? undefined : 'TensorFlow failed to initialise (tfjs printed the cause above)';
}

/** WebGPU: in 'auto', a hardware adapter only; asked for by name, whatever adapter there is. */
/**
 * What a TensorFlow package's load error means, for people: its two common causes have nothing
 * to do with swarm-node, and each has one fix (packages/sapo/README.md, "Backends").
 */
export function explainTensorflowLoadError(pkg: string, message: string): string {
  if (/tfjs_binding\.node|libtensorflow/.test(message)) {
    return 'its install could not download libtensorflow 2.9.1 (the download answers 403, tfjs issue 8742); set TFJS_NODE_CDN_STORAGE to a mirror and reinstall it, or build it locally';
  }
  if (/libcud(nn|art|a|blas)[^ ]*\.so/.test(message)) {
    return `${pkg} 4.x needs CUDA 11.2 and cuDNN 8.1 (libcudnn.so.8, libcudart.so.11.0); a CUDA 12 machine lacks them: install them beside it, or use --backend webgpu`;
  }
  return 'see the error';
}

async function attemptWebGpu(auto: boolean): Promise<Chosen | Skipped> {
  try {
    const found = await probeWebGpu();
    if (auto && found.software) {
      return {
        reason: `only a software adapter (${describeAdapter(found)}; slower than wasm, so auto skips it; --backend webgpu uses it)`,
      };
    }
    const adapter = await startWebGpu();
    return { name: 'webgpu', tfBackend: tf.getBackend(), gpu: !adapter.software, adapter };
  } catch (error) {
    if (error instanceof WebGpuUnavailable) return { reason: error.reason };
    throw error;
  }
}

async function attempt(name: BackendName, auto: boolean): Promise<Chosen | Skipped> {
  if (name === 'webgpu') return attemptWebGpu(auto);
  if (name === 'tensorflow-gpu' || name === 'tensorflow') {
    const failure = await loadTensorflow(PACKAGES[name]);
    if (failure !== undefined) return { reason: failure };
    if (name === 'tensorflow') return { name, tfBackend: tf.getBackend(), gpu: false };
    // tfjs-node-gpu falls back to the CPU silently when CUDA or cuDNN is missing. Its backend copies
    // binding.isUsingGpuDevice() into `isUsingGpuDevice`; the binding sets that when TFE_ContextListDevices
    // lists a device of type "GPU" (tfjs-node/binding/tfjs_backend.cc), and TensorFlow lists none when it
    // cannot dlopen the CUDA libraries or cuDNN. So true means TensorFlow places tensors on a GPU.
    const flag = (tf.backend() as { isUsingGpuDevice?: unknown }).isUsingGpuDevice;
    const onCpu: Chosen = { name: 'tensorflow', tfBackend: tf.getBackend(), gpu: false };
    if (flag === true) return { name, tfBackend: tf.getBackend(), gpu: true };
    if (flag === false) {
      return { reason: 'loaded, but TensorFlow sees no GPU device (CUDA 11.2/cuDNN 8.1 missing?)', onCpu };
    }
    return {
      reason: 'loaded, but cannot tell whether TensorFlow sees a GPU (its backend has no isUsingGpuDevice)',
      onCpu,
    };
  }
  if (!(await activate(name))) return { reason: 'failed to initialise (tfjs printed the cause above)' };
  if (name === 'cpu') return { name, tfBackend: tf.getBackend(), gpu: false };
  // Both flags are async and cached by the wasm backend's own init, so these reads are instant.
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
  const threads = (await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')) === true;
  return { name, tfBackend: tf.getBackend(), gpu: false, simd, threads };
}

/**
 * Makes the chosen backend tfjs's active one and says what it is. 'auto' takes the first that works
 * and notes why each earlier one was skipped; a named backend is the only one tried. Safe to call again.
 * After it throws, select again before using tfjs: a TensorFlow package that loaded may have made itself active.
 */
export async function selectBackend(options: SelectBackendOptions = {}): Promise<BackendInfo> {
  const choice = parseBackendName(options.backend ?? 'auto');
  // Production mode silences tfjs's "install our node backend" banner: the notes say what runs and why.
  tf.env().set('PROD', true);
  const notes: string[] = [];
  for (const name of choice === 'auto' ? BACKEND_NAMES : [choice]) {
    const result = await attempt(name, choice === 'auto');
    if (!('reason' in result)) return { ...result, notes };
    if (choice !== 'auto') throw new BackendUnavailableError(name, result.reason);
    // TensorFlow on the CPU is what 'tensorflow' would give; tfjs-node would only re-register the same name.
    notes.push(`${name}: ${result.reason}${result.onCpu ? ' — running TensorFlow on the CPU' : ''}`);
    if (result.onCpu) return { ...result.onCpu, notes };
  }
  throw new BackendUnavailableError('cpu', notes.join('; '));
}

/**
 * One line for people, e.g. "wasm (SIMD, 1 thread) — no GPU: tensorflow-gpu not installed, webgpu only a
 * software adapter, tensorflow not installed", or "webgpu (GPU: nvidia ampere NVIDIA GeForce RTX 3060 …)".
 */
export function describeBackend(info: BackendInfo): string {
  const what =
    info.name === 'wasm'
      ? `wasm (${info.simd ? 'SIMD' : 'no SIMD'}, ${info.threads ? 'multi-threaded' : '1 thread'})`
      : info.adapter !== undefined
        ? `${info.name} (${info.gpu ? 'GPU' : 'software adapter'}: ${describeAdapter(info.adapter)})`
        : `${info.name} (${info.gpu ? 'GPU' : info.name === 'cpu' ? 'pure JS' : 'CPU'})`;
  if (info.notes.length === 0) return what;
  // Each note is `name: short reason (details)`; the line keeps `name short reason`.
  const skipped = info.notes.map((note) => note.replace(/ \(.*$/s, '').replace(': ', ' '));
  return `${what} — ${info.gpu ? 'skipped' : 'no GPU'}: ${skipped.join(', ')}`;
}
