/**
 * WebGPU in Node: Dawn's Node binding (the optional `webgpu` package) under tfjs's 'webgpu'
 * backend (DESIGN.md, "Tensor backends"). It reaches NVIDIA, AMD and Intel GPUs through Vulkan,
 * Apple's through Metal and Windows' through D3D12, with no CUDA.
 *
 * Starting it takes four things tfjs-backend-webgpu does not do in Node:
 * - Choosing the adapter. tfjs asks for one high-performance adapter and fails without one; we
 *   ask Dawn for a hardware adapter first, and only then for a software one: Dawn's OpenGL ES
 *   backend on Mesa's llvmpipe, which needs EGL's surfaceless platform (no display) and exists
 *   only at WebGPU's 'compatibility' feature level. The chosen adapter's device is handed to
 *   tfjs's WebGPUBackend directly.
 * - `navigator.gpu` and the WebGPU globals (GPUBufferUsage…) set before tfjs-backend-webgpu loads.
 * - Synchronous reads. tfjs reads a GPU tensor synchronously (dataSync, which sampling and the
 *   SAPO step use) through an OffscreenCanvas that Node lacks. Dawn's Node binding completes a
 *   buffer mapping when it processes its events, which it schedules with `setImmediate`; we keep
 *   those scheduled callbacks and run them ourselves until the mapping is done, so a read blocks
 *   as a GPU read has to, without leaving the event loop (see `installEventPump`).
 * - Kernels our models need that tfjs-backend-webgpu lacks (registerMissingKernels).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';

/** What is reported of the adapter the 'webgpu' backend runs on. */
export interface WebGpuAdapter {
  /** GPUAdapterInfo's vendor and architecture: '' where the driver does not say (OpenGL ES). */
  vendor: string;
  architecture: string;
  /** GPUAdapterInfo's device and description, e.g. 'llvmpipe-llvm-15-0-6-256-bits-' and 'OpenGL version OpenGL ES 3.2 Mesa 22.3.6'. */
  device: string;
  description: string;
  /** The Dawn backend asked for: 'default' (Vulkan, Metal or D3D12, as Dawn chooses) or 'opengles'. */
  dawnBackend: 'default' | 'opengles';
  /** WebGPU's 'core' feature level, or the smaller 'compatibility' one (OpenGL ES). */
  featureLevel: 'core' | 'compatibility';
  /** The adapter says it is WebGPU's fallback adapter (a CPU implementation). */
  isFallbackAdapter: boolean;
  /** A CPU rasterizer (llvmpipe, lavapipe, SwiftShader, WARP…) or a fallback adapter: correct, but slower than wasm. */
  software: boolean;
  /** The device's limits (the adapter's, requested in full): the largest buffer, and the largest one a shader may bind. */
  limits: { maxBufferSize: number; maxStorageBufferBindingSize: number };
}

/** Why WebGPU cannot start here; `reason` is one line, `short (details)`. */
export class WebGpuUnavailable extends Error {
  readonly reason: string;

  constructor(reason: string) {
    super(`WebGPU unavailable: ${reason}`);
    this.name = 'WebGpuUnavailable';
    this.reason = reason;
  }
}

// ---- the part of Dawn's binding we use, typed here: the `webgpu` package is optional --------------

type Limits = Record<string, number>;
interface AdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}
interface DawnAdapter {
  readonly info?: AdapterInfo;
  readonly features: ReadonlySet<string>;
  readonly limits: Limits;
  readonly isFallbackAdapter?: boolean;
  requestDevice(descriptor?: { requiredLimits?: Limits; requiredFeatures?: string[] }): Promise<DawnDevice>;
}
interface DawnDevice {
  readonly lost: Promise<{ reason: string; message: string }>;
  onuncapturederror: ((event: { error: { message: string } }) => void) | null;
  destroy(): void;
}
interface DawnGpu {
  requestAdapter(options?: Record<string, unknown>): Promise<DawnAdapter | null>;
}
interface DawnModule {
  create(flags: string[]): DawnGpu;
  globals: Record<string, unknown>;
}

const PACKAGE = 'webgpu';
const localRequire = createRequire(import.meta.url);

// ---- synchronous reads: Dawn's event processing, run on demand ------------------------------------

/**
 * Dawn's Node binding resolves every asynchronous call (buffer mappings included) by calling
 * `wgpuInstanceProcessEvents` from a callback it passes to `globalThis.setImmediate`, rescheduling
 * itself while work is pending (dawn/node/binding/AsyncRunner.cpp). Those callbacks are native
 * functions without a name, passed with no arguments; we recognise them so, keep each until it
 * runs (the event loop still runs it, once, if we have not), and `pumpDawn` runs them now.
 * Everything else passed to setImmediate goes straight through.
 */
const pending = new Set<() => void>();
let pumpInstalled = false;

function installEventPump(): void {
  if (pumpInstalled) return;
  pumpInstalled = true;
  const original = globalThis.setImmediate;
  const isDawnCallback = (fn: unknown, args: unknown[]): fn is () => void =>
    args.length === 0 &&
    typeof fn === 'function' &&
    fn.name === '' &&
    Function.prototype.toString.call(fn).includes('[native code]');
  const patched = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => {
    if (!isDawnCallback(fn, args)) return original(fn, ...args);
    pending.add(fn);
    return original(() => {
      if (pending.delete(fn)) fn();
    });
  }) as typeof setImmediate;
  globalThis.setImmediate = Object.assign(patched, original);
}

/** Runs Dawn's scheduled event processing now; returns how many callbacks ran. */
function pumpDawn(): number {
  const callbacks = [...pending];
  pending.clear();
  for (const fn of callbacks) fn();
  return callbacks.length;
}

/** Longest a synchronous read waits for the GPU before it fails. */
const READ_TIMEOUT_MS = 120_000;

interface MappableBuffer {
  readonly size: number;
  readonly mapState: string;
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
}

/** The webgpu backend's internals that a synchronous read uses (tfjs-backend-webgpu 4.22, backend_webgpu.js). */
interface WebGpuBackendInternals {
  tensorMap: {
    get(dataId: object): {
      values: tf.backend_util.BackendValues | null;
      dtype: tf.DataType;
      resource: MappableBuffer;
      complexTensorInfos?: { real: { dataId: object }; imag: { dataId: object } };
    };
  };
  bufferManager: {
    acquireBuffer(size: number, usage: number): MappableBuffer;
    releaseBuffer(buffer: MappableBuffer): void;
  };
  commandEncoder: { copyBufferToBuffer(a: MappableBuffer, ao: number, b: MappableBuffer, bo: number, n: number): void };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  convertAndCacheOnCPU(dataId: object, values: tf.backend_util.BackendValues): tf.backend_util.BackendValues;
}

/** readSync as tfjs's async read does it (copy to a staging buffer, map, copy out), waiting by running Dawn's events. */
function readSync(this: WebGpuBackendInternals, dataId: object): tf.backend_util.BackendValues {
  const data = this.tensorMap.get(dataId);
  if (data.values != null || data.dtype === 'string') return data.values as tf.backend_util.BackendValues;
  if (data.dtype === 'complex64') {
    const info = data.complexTensorInfos as { real: { dataId: object }; imag: { dataId: object } };
    const real = readSync.call(this, info.real.dataId) as Float32Array;
    const imag = readSync.call(this, info.imag.dataId) as Float32Array;
    return this.convertAndCacheOnCPU(dataId, tf.backend_util.mergeRealAndImagArrays(real, imag));
  }
  const globals = globalThis as unknown as {
    GPUBufferUsage: Record<string, number>;
    GPUMapMode: Record<string, number>;
  };
  const source = data.resource;
  const size = source.size;
  const staging = this.bufferManager.acquireBuffer(
    size,
    (globals.GPUBufferUsage.COPY_DST as number) | (globals.GPUBufferUsage.MAP_READ as number),
  );
  this.ensureCommandEncoderReady();
  this.endComputePassEncoder();
  this.commandEncoder.copyBufferToBuffer(source, 0, staging, 0, size);
  this.submitQueue();
  let failure: unknown = null;
  staging.mapAsync(globals.GPUMapMode.READ as number).catch((error: unknown) => {
    failure = error;
  });
  const started = Date.now();
  while (staging.mapState !== 'mapped') {
    if (failure !== null || staging.mapState === 'unmapped') {
      throw new Error(`webgpu: reading a tensor back failed (${String(failure ?? 'the mapping was aborted')})`);
    }
    if (pumpDawn() === 0 && Date.now() - started > 1000) {
      throw new Error("webgpu: reading a tensor back cannot wait: Dawn's Node binding scheduled no event processing");
    }
    if (Date.now() - started > READ_TIMEOUT_MS) {
      throw new Error(`webgpu: reading a tensor back took more than ${READ_TIMEOUT_MS / 1000} s (a GPU hang?)`);
    }
  }
  const bytes = staging.getMappedRange().slice(0);
  staging.unmap();
  this.bufferManager.releaseBuffer(staging);
  throwDeviceErrors();
  return this.convertAndCacheOnCPU(dataId, tf.util.convertBackendValuesAndArrayBuffer(bytes, data.dtype));
}

// ---- choosing the adapter ----------------------------------------------------------------------

/**
 * Mesa's EGL finds no display without a display server unless EGL_PLATFORM=surfaceless (which
 * still uses a GPU's render node where there is one, and llvmpipe where not). Set when this module
 * loads, in whichever thread that is: in a worker thread process.env is a copy that native code
 * never reads, so it must happen in the main thread before a learner worker starts, and backend.ts
 * (which the learner imports) imports this module. Never overrides a value already set, nor a
 * session with a display.
 */
if (
  process.platform === 'linux' &&
  process.env.EGL_PLATFORM === undefined &&
  !process.env.DISPLAY &&
  !process.env.WAYLAND_DISPLAY
) {
  process.env.EGL_PLATFORM = 'surfaceless';
}

const SOFTWARE = /llvmpipe|lavapipe|softpipe|swiftshader|swrast|microsoft basic render|\bwarp\b/i;

function describeFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (message.split('\n', 1)[0] ?? '').trim().replace(/\.$/, '');
}

function adapterReport(
  adapter: DawnAdapter,
  dawnBackend: WebGpuAdapter['dawnBackend'],
  asked: 'core' | 'compatibility',
): WebGpuAdapter {
  const info = adapter.info ?? {};
  const isFallbackAdapter = info.isFallbackAdapter === true || adapter.isFallbackAdapter === true;
  const text = [info.vendor, info.architecture, info.device, info.description].join(' ');
  // A 'compatibility' request may be given a core adapter; core adapters carry this feature.
  const core = adapter.features.has('core-features-and-limits') || asked === 'core';
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    dawnBackend,
    featureLevel: core ? 'core' : 'compatibility',
    isFallbackAdapter,
    software: isFallbackAdapter || SOFTWARE.test(text),
    limits: {
      maxBufferSize: Number(adapter.limits.maxBufferSize),
      maxStorageBufferBindingSize: Number(adapter.limits.maxStorageBufferBindingSize),
    },
  };
}

interface Found {
  gpu: DawnGpu;
  adapter: DawnAdapter;
  report: WebGpuAdapter;
}

async function request(
  dawn: DawnModule,
  dawnBackend: WebGpuAdapter['dawnBackend'],
  options: Record<string, unknown>,
  notes: string[],
): Promise<Found | null> {
  try {
    const gpu = dawn.create(dawnBackend === 'default' ? [] : [`backend=${dawnBackend}`]);
    const adapter = await gpu.requestAdapter(options);
    if (adapter === null) {
      const egl = dawnBackend === 'opengles' && !unversionedEglFound() ? ': Dawn opens libEGL.so, not found here' : '';
      notes.push(`no ${dawnBackend === 'default' ? 'Vulkan/Metal/D3D12' : 'OpenGL ES'} adapter${egl}`);
      return null;
    }
    const asked = options.featureLevel === 'compatibility' ? 'compatibility' : 'core';
    return { gpu, adapter, report: adapterReport(adapter, dawnBackend, asked) };
  } catch (error) {
    notes.push(`adapter request failed (${describeFailure(error)})`);
    return null;
  }
}

/**
 * Dawn's OpenGL ES backend opens the unversioned libEGL.so, which Debian and Ubuntu ship only in
 * libegl-dev (libegl1 has libEGL.so.1): the usual reason for no OpenGL ES adapter where Mesa is there.
 */
function unversionedEglFound(): boolean {
  const triplet = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter((dir) => dir !== ''),
    `/usr/lib/${triplet}`,
    `/lib/${triplet}`,
    '/usr/lib64',
    '/usr/lib',
  ];
  return dirs.some((dir) => existsSync(`${dir}/libEGL.so`));
}

let dawnModule: Promise<DawnModule> | null = null;

async function loadDawn(): Promise<DawnModule> {
  try {
    localRequire.resolve(PACKAGE);
  } catch {
    throw new WebGpuUnavailable(
      'not installed (webgpu is an optional dependency: Dawn prebuilt for Linux, macOS and Windows on x64 and arm64)',
    );
  }
  // Before Dawn loads: every event-processing callback it schedules must pass through the pump.
  installEventPump();
  try {
    return (await import(PACKAGE)) as DawnModule;
  } catch (error) {
    throw new WebGpuUnavailable(`installed but Dawn's binary failed to load (${describeFailure(error)})`);
  }
}

/**
 * Finds the adapter, best first: a hardware adapter from Dawn's default backend (Vulkan, Metal or
 * D3D12), high-performance (a discrete GPU where there are two); on Linux, one from Dawn's
 * OpenGL ES backend (a GPU without a Vulkan driver, or Mesa's llvmpipe in software); a software
 * adapter from the default backend (lavapipe, SwiftShader).
 */
async function findAdapter(dawn: DawnModule): Promise<Found> {
  const notes: string[] = [];
  const first = await request(dawn, 'default', { powerPreference: 'high-performance' }, notes);
  if (first !== null && !first.report.software) return first;
  let gles: Found | null = null;
  if (process.platform === 'linux') {
    gles = await request(
      dawn,
      'opengles',
      { powerPreference: 'high-performance', featureLevel: 'compatibility' },
      notes,
    );
  }
  const found = gles !== null && (!gles.report.software || first === null) ? gles : first;
  if (found === null) {
    throw new WebGpuUnavailable(`no adapter (${notes.join('; ')})`);
  }
  return found;
}

// ---- the tfjs backend ----------------------------------------------------------------------------

interface Started {
  adapter: WebGpuAdapter;
  errors: string[];
}

let probe: Promise<Found> | null = null;
let started: Promise<Started> | null = null;

/** Loads Dawn and finds the adapter (once per thread), without starting tfjs's backend. Throws WebGpuUnavailable. */
export async function probeWebGpu(): Promise<WebGpuAdapter> {
  dawnModule ??= loadDawn();
  probe ??= dawnModule.then(findAdapter);
  return (await probe).report;
}

/** Messages of the device's uncaptured errors so far (validation, out of memory, device lost), oldest first. */
export function webGpuErrors(): readonly string[] {
  return deviceErrors;
}
const deviceErrors: string[] = [];
let errorsThrown = 0;

/**
 * A kernel that failed on the GPU (a shader over a limit, out of memory) leaves its output
 * undefined and tfjs carries on; every read after it throws instead, naming the first error, so
 * that no step trains on garbage.
 */
function throwDeviceErrors(): void {
  if (deviceErrors.length === errorsThrown) return;
  const fresh = deviceErrors.slice(errorsThrown);
  errorsThrown = deviceErrors.length;
  throw new Error(`webgpu: the GPU reported ${fresh.length} error(s), so this result is wrong: ${fresh[0]}`);
}

/** The limits tfjs's own start-up asks for, and storage buffers per stage (compatibility mode's default is smaller). */
const REQUIRED_LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupSizeX',
  'maxComputeInvocationsPerWorkgroup',
  'maxStorageBuffersPerShaderStage',
];

async function start(): Promise<Started> {
  await probeWebGpu();
  const dawn = await (dawnModule as Promise<DawnModule>);
  const { gpu, adapter, report } = await (probe as Promise<Found>);
  const requiredLimits: Limits = {};
  for (const name of REQUIRED_LIMITS) {
    const value = adapter.limits[name];
    if (value !== undefined) requiredLimits[name] = value;
  }
  let device: DawnDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits });
  } catch (error) {
    throw new WebGpuUnavailable(`the adapter refused a device (${describeFailure(error)})`);
  }
  device.onuncapturederror = (event) => {
    deviceErrors.push(describeFailure(event.error.message));
  };
  void device.lost.then((info) => {
    if (info.reason !== 'destroyed')
      deviceErrors.push(`device lost (${info.reason}: ${describeFailure(info.message)})`);
  });

  // tfjs-backend-webgpu reads navigator.gpu and the GPU* globals when it loads and as it runs.
  for (const [name, value] of Object.entries(dawn.globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  const host = globalThis as { navigator?: { gpu?: unknown } };
  if (host.navigator === undefined) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  } else if (host.navigator.gpu === undefined) {
    Object.defineProperty(host.navigator, 'gpu', { value: gpu, configurable: true });
  }
  let WebGPUBackend: new (device: unknown, info: unknown) => tf.KernelBackend;
  try {
    ({ WebGPUBackend } = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as {
      WebGPUBackend: typeof WebGPUBackend;
    });
  } catch (error) {
    throw new WebGpuUnavailable(`@tensorflow/tfjs-backend-webgpu failed to load (${describeFailure(error)})`);
  }
  // Its own registration asks navigator.gpu for a core high-performance adapter, which a software
  // adapter is not: ours hands over the device chosen above. Priority 0: tfjs never picks it unasked.
  tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    () => {
      const backend = new WebGPUBackend(device, adapter.info);
      const internals = backend as unknown as { readSync: typeof readSync; read: (dataId: object) => Promise<unknown> };
      const read = internals.read;
      internals.readSync = readSync;
      internals.read = async function (this: unknown, dataId: object) {
        const values = await read.call(this, dataId);
        throwDeviceErrors();
        return values;
      };
      return backend;
    },
    0,
  );
  registerMissingKernels();
  return { adapter: report, errors: deviceErrors };
}

/**
 * Makes 'webgpu' tfjs's active backend on the adapter findAdapter chooses (once per thread) and
 * returns that adapter. Throws WebGpuUnavailable with the reason when it cannot.
 */
export async function startWebGpu(): Promise<WebGpuAdapter> {
  started ??= start();
  let adapter: WebGpuAdapter;
  try {
    ({ adapter } = await started);
  } catch (error) {
    if (error instanceof WebGpuUnavailable) throw error;
    throw new WebGpuUnavailable(describeFailure(error));
  }
  if (!(await tf.setBackend('webgpu'))) {
    throw new WebGpuUnavailable('tfjs failed to initialise its webgpu backend (tfjs printed the cause above)');
  }
  await tf.ready();
  return adapter;
}

const size = (bytes: number) =>
  bytes >= 2 ** 30 ? `${+(bytes / 2 ** 30).toFixed(1)} GiB` : `${+(bytes / 2 ** 20).toFixed(1)} MiB`;

/** One line, e.g. "llvmpipe-llvm-15-0-6-256-bits- (OpenGL version OpenGL ES 3.2 Mesa 22.3.6), software, opengles compatibility, buffers ≤ 2 GiB, bindings ≤ 128 MiB". */
export function describeAdapter(adapter: WebGpuAdapter): string {
  const name = [adapter.vendor, adapter.architecture, adapter.device].filter((s) => s !== '').join(' ') || 'unnamed';
  const description = adapter.description === '' ? '' : ` (${adapter.description})`;
  const kind = adapter.software ? 'software' : 'hardware';
  const level = `${adapter.dawnBackend === 'default' ? '' : `${adapter.dawnBackend} `}${adapter.featureLevel}`;
  const { maxBufferSize, maxStorageBufferBindingSize } = adapter.limits;
  return `${name}${description}, ${kind}, ${level}, buffers ≤ ${size(maxBufferSize)}, bindings ≤ ${size(maxStorageBufferBindingSize)}`;
}

// ---- kernels tfjs-backend-webgpu lacks ------------------------------------------------------------

let kernelsRegistered = false;

type KernelArgs = Parameters<tf.KernelFunc>[0];
interface WebGpuKernelBackend extends tf.KernelBackend {
  device: { limits: Limits };
}

/** Replaces `name`'s webgpu kernel by `wrap(original)`. */
function wrapKernel(name: string, wrap: (original: tf.KernelFunc) => tf.KernelFunc): void {
  const config = tf.getKernel(name, 'webgpu');
  if (config === undefined) throw new Error(`tfjs-backend-webgpu has no ${name} kernel to extend`);
  tf.unregisterKernel(name, 'webgpu');
  tf.registerKernel({ ...config, kernelFunc: wrap(config.kernelFunc) });
}

/**
 * AddN of more tensors than a shader may bind: tfjs-backend-webgpu binds every input and the
 * output in one shader, which a device refuses past maxStorageBuffersPerShaderStage (16 on
 * llvmpipe, 8 in WebGPU's defaults); the SAPO step adds one squared norm per trainable tensor (29
 * for the embedded model, 14 per layer with LoRA). Sums at most limit − 1 inputs per shader, then
 * the partial sums, as Concat_impl does for concat.
 */
export function chunkedAddN(original: tf.KernelFunc): tf.KernelFunc {
  const addN = (args: KernelArgs): tf.TensorInfo => {
    const inputs = args.inputs as unknown as tf.TensorInfo[];
    const backend = args.backend as WebGpuKernelBackend;
    const most = Math.max(2, (backend.device.limits.maxStorageBuffersPerShaderStage ?? 8) - 1);
    if (inputs.length <= most) return original(args) as tf.TensorInfo;
    const partials: tf.TensorInfo[] = [];
    for (let from = 0; from < inputs.length; from += most) {
      const chunk = inputs.slice(from, from + most);
      partials.push(original({ ...args, inputs: chunk as unknown as tf.NamedTensorInfoMap }) as tf.TensorInfo);
    }
    const sum = addN({ ...args, inputs: partials as unknown as tf.NamedTensorInfoMap });
    for (const partial of partials) backend.disposeData(partial.dataId);
    return sum;
  };
  return addN as tf.KernelFunc;
}

/** Registers, for 'webgpu', what our models need that tfjs-backend-webgpu 4.22 lacks or cannot run. */
export function registerMissingKernels(): void {
  if (kernelsRegistered) return;
  kernelsRegistered = true;
  wrapKernel('AddN', chunkedAddN);
}
