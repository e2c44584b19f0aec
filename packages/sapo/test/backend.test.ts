import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  BACKEND_NAMES,
  type BackendInfo,
  BackendUnavailableError,
  describeBackend,
  explainTensorflowLoadError,
  parseBackendName,
  selectBackend,
  UnknownBackendError,
} from '../src/backend.js';
import { SapoError } from '../src/errors.js';
import { probeWebGpu } from '../src/webgpu.js';

// These expectations hold where the optional TensorFlow packages are absent (they need network to
// install); where one is installed, auto rightly picks it and these cases are skipped.
const require = createRequire(import.meta.url);
const installed = (pkg: string) => {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
};
const noTensorflow = !installed('@tensorflow/tfjs-node') && !installed('@tensorflow/tfjs-node-gpu');
// A hardware WebGPU adapter rightly comes before wasm in auto; a software one (llvmpipe), none, or no
// `webgpu` package leaves wasm first.
const hardwareWebGpu = await probeWebGpu().then(
  (adapter) => !adapter.software,
  () => false,
);

async function matMulOn(backend: 'cpu' | 'wasm'): Promise<Float32Array> {
  await selectBackend({ backend });
  const a = tf.tensor2d([0.5, -1.25, 2, 3.5, 0.125, -4, 1, 2, 3], [3, 3]);
  const b = tf.tensor2d([1.5, 0, -2, 0.25, 3, 1, -1, 0.75, 2], [3, 3]);
  const product = tf.matMul(a, b);
  const values = (await product.data()) as Float32Array;
  tf.dispose([a, b, product]);
  return values;
}

describe('selectBackend', () => {
  it.runIf(noTensorflow && !hardwareWebGpu)(
    'auto picks wasm here and notes why each backend before it was skipped',
    async () => {
      const info = await selectBackend();
      expect(info).toMatchObject({ name: 'wasm', tfBackend: 'wasm', gpu: false, threads: false });
      expect(tf.getBackend()).toBe('wasm');
      expect(typeof info.simd).toBe('boolean');
      expect(info.notes).toHaveLength(3);
      expect(info.notes[0]).toMatch(/^tensorflow-gpu: not installed \(@tensorflow\/tfjs-node-gpu .*CUDA 11\.2/);
      const webgpu = /^webgpu: (only a software adapter \(.*slower than wasm|no adapter|not installed|installed but)/;
      expect(info.notes[1]).toMatch(webgpu);
      expect(info.notes[2]).toMatch(/^tensorflow: not installed \(@tensorflow\/tfjs-node /);
      const skipped = (info.notes[1] as string).replace(/ \(.*$/s, '').replace(': ', ' ');
      expect(describeBackend(info)).toBe(
        `wasm (${info.simd ? 'SIMD' : 'no SIMD'}, 1 thread) — no GPU: tensorflow-gpu not installed, ${skipped}, tensorflow not installed`,
      );
      expect(await selectBackend({ backend: 'auto' })).toEqual(info);
    },
  );

  it('cpu and wasm both work and agree on a matMul', async () => {
    const onCpu = await matMulOn('cpu');
    expect(tf.getBackend()).toBe('cpu');
    const onWasm = await matMulOn('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(onWasm).toHaveLength(9);
    onWasm.forEach((value, i) => {
      expect(value).toBeCloseTo(onCpu[i] ?? Number.NaN, 5);
    });
  });

  it('an explicit backend is the only one tried, and it says so', async () => {
    expect(await selectBackend({ backend: 'cpu' })).toEqual({ name: 'cpu', tfBackend: 'cpu', gpu: false, notes: [] });
    expect(describeBackend(await selectBackend({ backend: 'cpu' }))).toBe('cpu (pure JS)');
    const wasm = await selectBackend({ backend: 'wasm' });
    expect(wasm.notes).toEqual([]);
    expect(describeBackend(wasm)).toMatch(/^wasm \((no )?SIMD, 1 thread\)$/);
  });

  it.runIf(noTensorflow)(
    'an explicit TensorFlow backend that is missing throws BACKEND_UNAVAILABLE with a hint',
    async () => {
      const error = await selectBackend({ backend: 'tensorflow' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BackendUnavailableError);
      expect(error).toBeInstanceOf(SapoError);
      expect(error).toMatchObject({ code: 'BACKEND_UNAVAILABLE', backend: 'tensorflow' });
      expect((error as Error).message).toMatch(/^backend tensorflow cannot be used: not installed .*--backend wasm$/);
      await expect(selectBackend({ backend: 'tensorflow-gpu' })).rejects.toThrow(
        /install @tensorflow\/tfjs-node-gpu with CUDA 11\.2 and cuDNN 8\.1, or use --backend wasm/,
      );
    },
  );

  it('an unknown backend throws UNKNOWN_BACKEND listing the valid names', async () => {
    const error = await selectBackend({ backend: 'webgl' as 'auto' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownBackendError);
    expect(error).toMatchObject({
      code: 'UNKNOWN_BACKEND',
      message: 'unknown backend "webgl"; valid backends: auto, tensorflow-gpu, webgpu, tensorflow, wasm, cpu',
    });
  });
});

describe('parseBackendName', () => {
  it.each([...BACKEND_NAMES, 'auto'])('accepts %s', (name) => {
    expect(parseBackendName(name)).toBe(name);
  });

  it('ignores case and surrounding spaces', () => {
    expect(parseBackendName(' WASM ')).toBe('wasm');
  });

  it.each(['', 'gpu', 'tensorflow_gpu', 'web-gpu'])('rejects %j', (text) => {
    expect(() => parseBackendName(text)).toThrow(UnknownBackendError);
    expect(() => parseBackendName(text)).toThrow(/valid backends: auto, tensorflow-gpu, webgpu, tensorflow, wasm, cpu/);
  });
});

describe('describeBackend', () => {
  it('names the WebGPU adapter, hardware or software', () => {
    const adapter = {
      vendor: 'nvidia',
      architecture: 'ampere',
      device: 'NVIDIA GeForce RTX 3060',
      description: 'NVIDIA: 550.54',
      dawnBackend: 'default' as const,
      featureLevel: 'core' as const,
      isFallbackAdapter: false,
      software: false,
      limits: { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 31 },
    };
    const gpu: BackendInfo = { name: 'webgpu', tfBackend: 'webgpu', gpu: true, adapter, notes: [] };
    expect(describeBackend(gpu)).toBe(
      'webgpu (GPU: nvidia ampere NVIDIA GeForce RTX 3060 (NVIDIA: 550.54), hardware, core, buffers ≤ 4 GiB, bindings ≤ 2 GiB)',
    );
    const llvmpipe = {
      ...adapter,
      vendor: '',
      architecture: '',
      device: 'llvmpipe-llvm-15-0-6-256-bits-',
      description: 'OpenGL version OpenGL ES 3.2 Mesa 22.3.6',
      dawnBackend: 'opengles' as const,
      featureLevel: 'compatibility' as const,
      software: true,
      limits: { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 27 },
    };
    const software: BackendInfo = {
      ...gpu,
      gpu: false,
      adapter: llvmpipe,
      notes: ['tensorflow-gpu: not installed (x)'],
    };
    expect(describeBackend(software)).toBe(
      'webgpu (software adapter: llvmpipe-llvm-15-0-6-256-bits- (OpenGL version OpenGL ES 3.2 Mesa 22.3.6), software, opengles compatibility, buffers ≤ 2 GiB, bindings ≤ 128 MiB) — no GPU: tensorflow-gpu not installed',
    );
  });

  it('names a GPU, and what TensorFlow on the CPU skipped', () => {
    const gpu: BackendInfo = { name: 'tensorflow-gpu', tfBackend: 'tensorflow', gpu: true, notes: [] };
    expect(describeBackend(gpu)).toBe('tensorflow-gpu (GPU)');
    const note =
      'tensorflow-gpu: loaded, but TensorFlow sees no GPU device (CUDA 11.2/cuDNN 8.1 missing?) — running TensorFlow on the CPU';
    const onCpu: BackendInfo = { name: 'tensorflow', tfBackend: 'tensorflow', gpu: false, notes: [note] };
    expect(describeBackend(onCpu)).toBe(
      'tensorflow (CPU) — no GPU: tensorflow-gpu loaded, but TensorFlow sees no GPU device',
    );
  });
});

describe('explainTensorflowLoadError', () => {
  it('says what to do for the two ways TensorFlow fails to load: no libtensorflow, and CUDA 12 without cuDNN 8', () => {
    expect(
      explainTensorflowLoadError(
        '@tensorflow/tfjs-node',
        'The Node.js native addon module (tfjs_binding.node) can not be found at path: /x/lib/napi-v8/tfjs_binding.node',
      ),
    ).toMatch(/could not download libtensorflow 2\.9\.1 .*TFJS_NODE_CDN_STORAGE/);
    expect(
      explainTensorflowLoadError(
        '@tensorflow/tfjs-node-gpu',
        'libcudnn.so.8: cannot open shared object file: No such file or directory',
      ),
    ).toMatch(/needs CUDA 11\.2 and cuDNN 8\.1 .*CUDA 12 machine lacks them/);
    expect(explainTensorflowLoadError('@tensorflow/tfjs-node', 'something else')).toBe('see the error');
  });
});
