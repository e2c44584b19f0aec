import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Checkpoint,
  decodeCheckpoint,
  encodeCheckpoint,
  latestCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
} from '../src/checkpoint.js';
import { CheckpointError, SapoError } from '../src/errors.js';

const CONFIG = { vocabSize: 259, layers: 2, dModel: 8, heads: 2, nested: { a: 1, b: [1, 2] } };
const SPECIAL = new Float32Array(
  new Uint32Array([
    0x7fc00000, // NaN
    0x7fc00123, // NaN with a payload
    0x80000000, // -0
    0x00000001, // smallest denormal
    0x807fffff, // largest negative denormal
    0x7f800000, // Infinity
    0xff800000, // -Infinity
    0x7f7fffff, // largest float
  ]).buffer,
);

let root: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'sapo-checkpoint-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirs = 0;
const freshDir = () => join(root, `case-${dirs++}`);

function sample(step = 42): Checkpoint {
  return {
    step,
    config: CONFIG,
    tokenizer: 'bytes-v1',
    weights: new Map<string, tf.Tensor>([
      ['embed', tf.tensor(SPECIAL, [2, 4])],
      ['layer0/w', tf.randomNormal([8, 8], 0, 1, 'float32', 7)],
      ['scale', tf.scalar(0.5)],
      ['empty', tf.zeros([0, 3])],
      ['positions', tf.tensor([1, -2, 2147483647, -2147483648], [4], 'int32')],
    ]),
    optimizer: new Map([
      ['adam/embed/m', tf.fill([2, 4], 1e-8)],
      ['adam/t', tf.scalar(step, 'int32')],
    ]),
    metadata: { 'created-by': 'test', seed: '7' },
  };
}

function dispose(checkpoint: Checkpoint): void {
  for (const tensor of [...checkpoint.weights.values(), ...checkpoint.optimizer.values()]) tensor.dispose();
}

/** A tensor's exact bytes, so NaN payloads and -0 compare too. */
function bits(tensor: tf.Tensor): number[] {
  const values = tensor.dataSync() as Float32Array | Int32Array;
  return [...new Uint8Array(values.buffer, values.byteOffset, values.byteLength)];
}

function expectSame(actual: Checkpoint, expected: Checkpoint): void {
  expect({ step: actual.step, config: actual.config, tokenizer: actual.tokenizer, metadata: actual.metadata }).toEqual({
    step: expected.step,
    config: expected.config,
    tokenizer: expected.tokenizer,
    metadata: expected.metadata ?? {},
  });
  for (const group of ['weights', 'optimizer'] as const) {
    expect([...actual[group].keys()]).toEqual([...expected[group].keys()]);
    for (const [name, tensor] of expected[group]) {
      const loaded = actual[group].get(name) as tf.Tensor;
      expect([loaded.dtype, loaded.shape]).toEqual([tensor.dtype, tensor.shape]);
      expect(bits(loaded)).toEqual(bits(tensor));
    }
  }
}

function headerLength(bytes: Uint8Array): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
}

// biome-ignore lint/suspicious/noExplicitAny: headers under test are free-form JSON
type Header = any;

/** The bytes with the header changed by `edit` and its header_sha256 recomputed, as a buggy writer would. */
function rewrite(bytes: Uint8Array, edit: (header: Header) => void): Uint8Array {
  const n = headerLength(bytes);
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString());
  edit(header);
  if (header.__metadata__) {
    delete header.__metadata__.header_sha256;
    header.__metadata__.header_sha256 = createHash('sha256').update(JSON.stringify(header)).digest('hex');
  }
  const text = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([prefix, text, bytes.subarray(8 + n)]);
}

function decodeError(bytes: Uint8Array): CheckpointError {
  try {
    dispose(decodeCheckpoint(bytes, 'test.safetensors'));
  } catch (error) {
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error).toBeInstanceOf(SapoError);
    expect((error as Error).message).toContain('test.safetensors');
    return error as CheckpointError;
  }
  throw new Error('decoded without an error');
}

async function loadError(file: string, expectation?: Parameters<typeof loadCheckpoint>[1]): Promise<CheckpointError> {
  const error = await loadCheckpoint(file, expectation).then(dispose, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(CheckpointError);
  expect((error as CheckpointError).file).toBe(file);
  expect((error as Error).message).toContain(file);
  return error as CheckpointError;
}

describe('round trip', () => {
  it('decodes exactly what was encoded, bit for bit (NaN payloads, -0, denormals, int32)', async () => {
    const checkpoint = sample();
    const bytes = await encodeCheckpoint(checkpoint);
    expect((8 + headerLength(bytes)) % 8).toBe(0);
    const decoded = decodeCheckpoint(bytes);
    expectSame(decoded, checkpoint);
    dispose(decoded);
    dispose(checkpoint);
  });

  it('saves to step-<10 digits>.safetensors, creating the directory, and loads it back', async () => {
    const dir = join(freshDir(), 'nested', 'deeper');
    const checkpoint = sample(42);
    const file = await saveCheckpoint(dir, checkpoint);
    expect(file).toBe(join(dir, 'step-0000000042.safetensors'));
    expect(await readdir(dir)).toEqual(['step-0000000042.safetensors']);
    const loaded = await loadCheckpoint(file, {
      config: { ...CONFIG },
      tokenizer: 'bytes-v1',
      shapes: new Map([
        ['embed', [2, 4]],
        ['positions', [4]],
      ]),
    });
    expectSame(loaded, checkpoint);
    dispose(loaded);
    dispose(checkpoint);
  });

  it('round-trips an empty optimizer and no metadata', async () => {
    const checkpoint: Checkpoint = {
      step: 0,
      config: {},
      tokenizer: 'bytes-v1',
      weights: new Map([['w', tf.ones([3])]]),
      optimizer: new Map(),
    };
    const decoded = decodeCheckpoint(await encodeCheckpoint(checkpoint));
    expectSame(decoded, checkpoint);
    expect(decoded.optimizer.size).toBe(0);
    dispose(decoded);
    dispose(checkpoint);
  });

  it('refuses what it cannot store', async () => {
    const base = sample();
    const cases: [string, Checkpoint, { keep?: number }?][] = [
      ['dtype bool', { ...base, weights: new Map([['mask', tf.tensor([true], [1], 'bool')]]) }],
      ['step must be an integer', { ...base, step: 1.5 }],
      ['step must be an integer', { ...base, step: -1 }],
      ['tokenizer', { ...base, tokenizer: '' }],
      ['reserved', { ...base, metadata: { sha256: 'x' } }],
      ['keep must be', base, { keep: 0 }],
    ];
    for (const [message, checkpoint, options] of cases) {
      const error = await saveCheckpoint(freshDir(), checkpoint, options).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(CheckpointError);
      expect((error as CheckpointError).code).toBe('CHECKPOINT_INVALID');
      expect((error as Error).message).toContain(message);
    }
    dispose(base);
  });
});

describe('directory of checkpoints', () => {
  const steps = async (dir: string) => (await readdir(dir)).sort();

  it('keeps the newest `keep` checkpoints (3 by default)', async () => {
    const [two, three] = [freshDir(), freshDir()];
    const checkpoint = sample();
    for (const step of [1, 2, 3, 4, 5]) {
      await saveCheckpoint(two, { ...checkpoint, step }, { keep: 2 });
      await saveCheckpoint(three, { ...checkpoint, step });
    }
    expect(await steps(two)).toEqual(['step-0000000004.safetensors', 'step-0000000005.safetensors']);
    expect(await steps(three)).toEqual([
      'step-0000000003.safetensors',
      'step-0000000004.safetensors',
      'step-0000000005.safetensors',
    ]);
    // Saving an older step than those kept never deletes the file just written.
    await saveCheckpoint(two, { ...checkpoint, step: 1 }, { keep: 2 });
    expect(await steps(two)).toEqual([
      'step-0000000001.safetensors',
      'step-0000000004.safetensors',
      'step-0000000005.safetensors',
    ]);
    dispose(checkpoint);
  });

  it('latestCheckpoint picks the highest step and ignores everything else', async () => {
    const dir = freshDir();
    expect(await latestCheckpoint(dir)).toBeNull();
    await mkdir(dir);
    expect(await latestCheckpoint(dir)).toBeNull();
    for (const name of [
      'step-0000000009.safetensors',
      'step-0000000010.safetensors',
      '.step-0000000099.safetensors.tmp-1-ab',
      'step-99.safetensors',
      'step-0000000077.safetensors.bak',
      'notes.txt',
    ]) {
      await writeFile(join(dir, name), '');
    }
    expect(await latestCheckpoint(dir)).toBe(join(dir, 'step-0000000010.safetensors'));
    await writeFile(join(dir, 'step-12345678901.safetensors'), '');
    expect(await latestCheckpoint(dir)).toBe(join(dir, 'step-12345678901.safetensors'));
  });

  it('ignores temp files of crashed saves and deletes them on the next save, not those of running ones', async () => {
    const dir = freshDir();
    const checkpoint = sample(3);
    await saveCheckpoint(dir, checkpoint);
    const dead = spawn(process.execPath, ['-e', '']);
    await once(dead, 'exit');
    const crashed = `.step-0000000004.safetensors.tmp-${dead.pid}-0123abcd`;
    const running = `.step-0000000004.safetensors.tmp-${process.pid}-4567cdef`;
    await writeFile(join(dir, crashed), (await encodeCheckpoint(checkpoint)).subarray(0, 100));
    await writeFile(join(dir, running), '');
    expect(await latestCheckpoint(dir)).toBe(join(dir, 'step-0000000003.safetensors'));
    await saveCheckpoint(dir, { ...checkpoint, step: 4 });
    expect(await steps(dir)).toEqual([running, 'step-0000000003.safetensors', 'step-0000000004.safetensors']);
    dispose(checkpoint);
  });
});

describe('strict loading: every bad file is a typed error naming the file and what to do', () => {
  let bytes: Uint8Array;
  let n: number;
  beforeAll(async () => {
    const checkpoint = sample();
    bytes = await encodeCheckpoint(checkpoint);
    n = headerLength(bytes);
    dispose(checkpoint);
  });

  it('a missing file or a directory', async () => {
    const dir = freshDir();
    await mkdir(dir);
    expect((await loadError(join(dir, 'nope.safetensors'))).code).toBe('CHECKPOINT_NOT_FOUND');
    expect((await loadError(dir)).code).toBe('CHECKPOINT_UNREADABLE');
  });

  it('a file cut short anywhere', async () => {
    const dir = freshDir();
    await mkdir(dir);
    for (const length of [0, 5, 8, 8 + Math.floor(n / 2), 8 + n, 8 + n + 5, bytes.length - 1]) {
      const file = join(dir, `cut-${length}.safetensors`);
      await writeFile(file, bytes.subarray(0, length));
      const error = await loadError(file);
      expect(error.code).toBe('CHECKPOINT_TRUNCATED');
      expect(error.message).toContain('refusing to start from a fresh model');
    }
  });

  it('trailing bytes', () => {
    const error = decodeError(Buffer.concat([bytes, Buffer.from([0])]));
    expect(error.code).toBe('CHECKPOINT_CORRUPT');
    expect(error.message).toContain('after its last tensor');
  });

  it('any flipped byte in the data section (sha256)', () => {
    for (const at of [8 + n, 8 + n + 1, 8 + n + 37, bytes.length - 1]) {
      const flipped = Uint8Array.from(bytes);
      flipped[at] = (flipped[at] as number) ^ 0x01;
      const error = decodeError(flipped);
      expect(error.code).toBe('CHECKPOINT_CORRUPT');
      expect(error.message).toContain('sha256');
    }
  });

  it('any flipped bit in the length or the header (header_sha256 covers shapes, names and metadata)', () => {
    for (let at = 0; at < 8 + n; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Uint8Array.from(bytes);
        flipped[at] = (flipped[at] as number) ^ (1 << bit);
        expect(['CHECKPOINT_TRUNCATED', 'CHECKPOINT_CORRUPT', 'CHECKPOINT_UNSUPPORTED']).toContain(
          decodeError(flipped).code,
        );
      }
    }
    // A shape that keeps its size would go unnoticed by the data's sha256 alone.
    const flipped = Uint8Array.from(bytes);
    flipped.set(Buffer.from('"shape":[4,2]'), Buffer.from(bytes).indexOf('"shape":[2,4]'));
    expect(decodeError(flipped).message).toContain('does not match its header_sha256');
  });

  it.each<[string, string, (header: Header) => void]>([
    ['UNSUPPORTED', 'not a swarm-node checkpoint', (h) => delete h.__metadata__],
    ['UNSUPPORTED', 'not a swarm-node checkpoint', (h) => (h.__metadata__.format = 'pytorch')],
    ['UNSUPPORTED', 'format version 2', (h) => (h.__metadata__.format_version = '2')],
    ['CORRUPT', 'no string __metadata__.step', (h) => delete h.__metadata__.step],
    ['CORRUPT', 'has step 01', (h) => (h.__metadata__.step = '01')],
    ['CORRUPT', 'no string __metadata__.tokenizer', (h) => delete h.__metadata__.tokenizer],
    ['CORRUPT', 'config that is not a JSON object', (h) => (h.__metadata__.config = '[1]')],
    ['CORRUPT', 'no string __metadata__.sha256', (h) => (h.__metadata__.sha256 = 5)],
    ['CORRUPT', 'outside model/ and optimizer/', (h) => (h['weights/x'] = h['model/scale'])],
    ['UNSUPPORTED', 'as F16', (h) => (h['model/embed'].dtype = 'F16')],
    ['UNSUPPORTED', 'as toString', (h) => (h['model/embed'].dtype = 'toString')],
    ['CORRUPT', 'no valid shape', (h) => (h['model/embed'].shape = [2, -4])],
    ['CORRUPT', 'no valid shape', (h) => (h['model/embed'].data_offsets = [0])],
    ['CORRUPT', 'not packed', (h) => (h['model/embed'].data_offsets = [4, 36])], // gap
    ['CORRUPT', 'not packed', (h) => (h['model/layer0/w'].data_offsets = [28, 284])], // overlap
    ['CORRUPT', 'not packed', (h) => (h['model/embed'].data_offsets = [32, 0])], // reversed
    ['CORRUPT', 'bytes for tensor model/embed of shape [4,4]', (h) => (h['model/embed'].shape = [4, 4])],
    [
      'TRUNCATED',
      'cut short',
      (h) => {
        // past the end of the data
        h['optimizer/adam/t'].shape = [2];
        h['optimizer/adam/t'].data_offsets[1] += 4;
      },
    ],
  ])('%s: %s', (code, message, edit) => {
    const error = decodeError(rewrite(bytes, edit));
    expect(error.code).toBe(`CHECKPOINT_${code}`);
    expect(error.message).toContain(message);
  });

  it('a header that is not JSON or not an object', () => {
    const withHeader = (text: string) => {
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(text.length));
      return Buffer.concat([prefix, Buffer.from(text, 'latin1')]);
    };
    for (const text of ['{"a":', '[1, 2]', '"{}"', '\u00ff{}']) {
      expect(decodeError(withHeader(text)).message).toContain('not a UTF-8 JSON object');
    }
    expect(decodeError(Buffer.concat([withHeader('{}'), Buffer.from([0xff])])).message).toContain(
      'not a swarm-node checkpoint',
    );
  });

  it('a checkpoint of another config, tokenizer or shape, saying what differs, without making tensors', async () => {
    const dir = freshDir();
    const checkpoint = sample();
    const file = await saveCheckpoint(dir, checkpoint);
    dispose(checkpoint);
    const before = tf.memory().numTensors;
    const error = await loadError(file, {
      config: { ...CONFIG, dModel: 16, nested: { b: [1, 2], a: 1 }, extra: true },
      tokenizer: 'sentencepiece-v2',
      shapes: new Map([
        ['embed', [4, 2]],
        ['missing', [1]],
        ['scale', []],
      ]),
    });
    expect(error.code).toBe('CHECKPOINT_MISMATCH');
    expect(error.message).toContain('tokenizer is bytes-v1, expected sentencepiece-v2');
    expect(error.message).toContain('config differs in dModel (8, expected 16), extra (absent, expected true);');
    expect(error.message).not.toContain('nested');
    expect(error.message).toContain('weight embed has shape [2,4], expected [4,2]');
    expect(error.message).toContain('weight missing is missing');
    expect(error.message).not.toContain('weight scale');
    expect(error.message).toContain('refusing to start from a fresh model');
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('crash safety', () => {
  const fixture = fileURLToPath(new URL('./fixtures/save-loop.mjs', import.meta.url));

  /** Resolves once the child has printed its first `saved` line. */
  function firstSave(child: ChildProcess): Promise<void> {
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    return new Promise((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('saved')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`save loop exited (${code}) before saving:\n${stderr}`)));
    });
  }

  it('a kill -9 at any moment of a save leaves the newest checkpoint loadable', async () => {
    const dir = freshDir();
    // A save of this size takes about 15 ms; in trials about half of such kills left a half-written temp file.
    const delays = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => Math.floor(i * 25 + Math.random() * 25));
    for (const delay of delays) {
      const child = spawn(process.execPath, [fixture, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      await firstSave(child);
      await sleep(delay);
      child.kill('SIGKILL');
      await once(child, 'exit');
      const file = await latestCheckpoint(dir);
      expect(file, `killed ${delay} ms after a save`).not.toBeNull();
      const loaded = await loadCheckpoint(file as string, {
        config: { width: 1024 },
        tokenizer: 'bytes-v1',
        shapes: new Map([['w', [1024, 1024]]]),
      });
      expect((loaded.weights.get('w') as tf.Tensor).dataSync()[1024 * 1024 - 1]).toBe(loaded.step);
      expect((loaded.optimizer.get('m') as tf.Tensor).dataSync()[0]).toBe(-loaded.step);
      dispose(loaded);
    }
    // The next save cleans up whatever temp files the killed writers left.
    const checkpoint = sample(1_000);
    await saveCheckpoint(dir, checkpoint, { keep: 2 });
    dispose(checkpoint);
    expect((await readdir(dir)).filter((name) => name.includes('.tmp-'))).toEqual([]);
  });
});
