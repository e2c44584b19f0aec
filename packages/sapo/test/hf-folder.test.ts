import { cp, mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SapoError } from '../src/errors.js';
import { ModelFolderError, type PretrainedConfig, parseConfig } from '../src/hf/config.js';
import { expectedTensors, type ModelFolder, openModelFolder, writeModelFolder } from '../src/hf/folder.js';
import {
  bf16ToF32,
  encodeHeader,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  SafetensorsReader,
  type TensorEntry,
  type TensorInfo,
  type WeightDtype,
  writeSafetensors,
} from '../src/hf/safetensors.js';
import { type TinyModelOptions, writeTinyModel } from './fixtures/tiny-models.js';
import { buildTinyTokenizer } from './fixtures/tiny-tokenizer.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sapo-hf-folder-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
let dirs = 0;
const freshDir = () => join(root, `case-${dirs++}`);

/** Opens, runs `use` and closes, so that no test leaves a file open. */
async function withFolder<T>(dir: string, use: (folder: ModelFolder) => Promise<T>): Promise<T> {
  const folder = await openModelFolder(dir);
  try {
    return await use(folder);
  } finally {
    await folder.close();
  }
}

async function readAll(folder: ModelFolder): Promise<Map<string, TensorEntry & { data: Float32Array }>> {
  const tensors = new Map<string, TensorEntry & { data: Float32Array }>();
  for (const name of folder.tensorNames) {
    tensors.set(name, { shape: folder.shapeOf(name), data: await folder.readTensor(name) });
  }
  return tensors;
}

async function tinyModel(options: Partial<TinyModelOptions> = {}): Promise<string> {
  const dir = freshDir();
  await writeTinyModel(dir, { architecture: 'qwen2', ...options });
  return dir;
}

/** The ModelFolderError that opening `dir` fails with. */
async function refusal(dir: string): Promise<ModelFolderError> {
  const error = await openModelFolder(dir).then(
    async (folder) => {
      await folder.close();
      return null;
    },
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ModelFolderError);
  expect(error).toBeInstanceOf(SapoError);
  expect((error as ModelFolderError).code).toBe('BAD_MODEL_FOLDER');
  return error as ModelFolderError;
}

async function editJson(file: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const json = JSON.parse(await readFile(file, 'utf8'));
  edit(json);
  await writeFile(file, JSON.stringify(json));
}

/** Rewrites `file`'s tensors (as F32) after `edit` changes them. */
async function editWeights(file: string, edit: (tensors: Map<string, TensorEntry>) => void): Promise<void> {
  const reader = await SafetensorsReader.open(file);
  const tensors = new Map<string, TensorEntry>();
  for (const [name, { shape }] of reader.tensors) tensors.set(name, { shape, data: await reader.readTensor(name) });
  await reader.close();
  edit(tensors);
  await writeSafetensors(file, tensors, 'F32');
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: number[];
}
type Header = Record<string, HeaderEntry>;

/** Rewrites the JSON header of `dir`'s model.safetensors, keeps its data, and returns the refusal it then gets. */
async function rewriteHeader(dir: string, edit: (header: Header) => void): Promise<string> {
  const file = join(dir, 'model.safetensors');
  const bytes = await readFile(file);
  const end = 8 + Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, end).toString());
  edit(header);
  await writeFile(file, Buffer.concat([encodeHeader(header), bytes.subarray(end)]));
  return (await refusal(dir)).message;
}

const bits16 = (...values: number[]) => new Uint16Array(values);
const f32 = (...values: number[]) => new Float32Array(values);
const float = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0] as number;

describe('fp16 and bf16', () => {
  it('decodes fp16 zeros, subnormals, normals, extremes, infinities and NaN exactly', () => {
    const values = f16ToF32(bits16(0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0xfc00));
    expect([...values]).toEqual([0, -0, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 1, -2, 65504, Infinity, -Infinity]);
    expect(Object.is(values[1], -0)).toBe(true);
    expect([...f16ToF32(bits16(0x7e00, 0x7c01, 0xfe00))].every(Number.isNaN)).toBe(true);
  });

  it('every fp16 value survives fp32 and back; NaN stays NaN', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    for (let bits = 0; bits < 65536; bits++) {
      const nan = (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
      const got = back[bits] as number;
      if (nan) expect((got & 0x7c00) === 0x7c00 && (got & 0x3ff) !== 0).toBe(true);
      else if (got !== bits) expect.fail(`fp16 0x${bits.toString(16)} came back as 0x${got.toString(16)}`);
    }
  });

  it('rounds fp32 to fp16 to nearest, ties to even, into subnormals, zero and infinity', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -11, 0x3c00], // tie: to even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // tie: to even (up)
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just past the tie
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00], // rounds past the largest: infinity
      [1e10, 0x7c00],
      [-1e10, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: to even, zero
      [2 ** -25 + 2 ** -40, 0x0001],
      [3 * 2 ** -25, 0x0002], // subnormal tie: to even (up)
      [1023.5 * 2 ** -24, 0x0400], // the largest subnormal's tie rounds up into the normals
      [2 ** -30, 0x0000],
      [-(2 ** -30), 0x8000],
      [float(0x00000001), 0x0000], // fp32 subnormals are far below fp16's
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
    ];
    const got = f32ToF16(f32(...cases.map(([value]) => value)));
    expect([...got].map((b) => b.toString(16))).toEqual(cases.map(([, b]) => b.toString(16)));
    const nan = f32ToF16(f32(Number.NaN, float(0x7f800001), float(0xffc00000)));
    expect([...f16ToF32(nan)].every(Number.isNaN)).toBe(true);
  });

  it('bf16 is the upper half of fp32, rounded to nearest even, NaN kept', () => {
    expect([...bf16ToF32(bits16(0x3f80, 0xbf80, 0x7f80, 0xff80, 0x0001, 0x8000))]).toEqual([
      1,
      -1,
      Infinity,
      -Infinity,
      float(0x00010000),
      -0,
    ]);
    const rounded = f32ToBf16(f32(1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, float(0x7f7fffff)));
    expect([...rounded].map((b) => b.toString(16))).toEqual(['3f80', '3f82', '3f81', '7f80']);
    expect([...bf16ToF32(f32ToBf16(f32(Number.NaN, float(0x7f800001))))].every(Number.isNaN)).toBe(true);
  });
});

describe('SafetensorsReader', () => {
  it("reads a tensor's bytes alone, at its offset", async () => {
    const dir = await tinyModel();
    const reader = await SafetensorsReader.open(join(dir, 'model.safetensors'));
    const probe = await open(reader.file, 'r');
    const read = vi.spyOn(Object.getPrototypeOf(probe), 'read');
    await probe.close();
    try {
      const info = reader.tensors.get('model.layers.1.mlp.up_proj.weight') as TensorInfo;
      const values = await reader.readTensor('model.layers.1.mlp.up_proj.weight');
      expect(values.length).toBe(64 * 32);
      expect(read.mock.calls.map(([, , length, position]) => [position, length])).toEqual([
        [info.begin, info.end - info.begin],
      ]);
    } finally {
      read.mockRestore();
      await reader.close();
    }
  });
});

describe('parseConfig', () => {
  const llama = {
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    vocab_size: 49152,
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    tie_word_embeddings: true,
    max_position_embeddings: 8192,
    hidden_act: 'silu',
    rope_scaling: null,
  };

  it('reads a SmolLM2-style Llama config', () => {
    expect(parseConfig(llama, 'config.json')).toEqual({
      architecture: 'llama',
      vocabSize: 49152,
      hiddenSize: 576,
      intermediateSize: 1536,
      layers: 30,
      heads: 9,
      kvHeads: 3,
      headDim: 64,
      ropeTheta: 100000,
      rmsNormEps: 1e-5,
      tieWordEmbeddings: true,
      attentionBias: false,
      maxPositions: 8192,
    } satisfies PretrainedConfig);
  });

  it("fills in transformers' defaults and gives Qwen2 its q/k/v biases", () => {
    const { num_key_value_heads, rope_theta, tie_word_embeddings, max_position_embeddings, ...bare } = llama;
    expect(parseConfig(bare, 'c')).toMatchObject({
      kvHeads: 9,
      headDim: 64,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      maxPositions: 2048,
    });
    const qwen2 = { ...llama, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], head_dim: 32 };
    expect(parseConfig(qwen2, 'c')).toMatchObject({ architecture: 'qwen2', attentionBias: true, headDim: 32 });
    // Llama's attention_bias: biases on q, k, v and o_proj, which the folder must then hold.
    const biased = parseConfig({ ...llama, attention_bias: true }, 'c');
    expect(biased.attentionBias).toBe(true);
    expect(expectedTensors(biased).get('model.layers.0.self_attn.o_proj.bias')).toEqual([biased.hiddenSize]);
  });

  it.each([
    [
      { model_type: 'mistral' },
      /model_type "mistral" is not supported; supported are llama \(LlamaForCausalLM\) and qwen2/,
    ],
    [{ architectures: ['LlamaForSequenceClassification'] }, /architectures .* not LlamaForCausalLM/],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling .*llama3.* does not implement/],
    [{ hidden_act: 'gelu' }, /hidden_act is "gelu", not silu/],
    [{ mlp_bias: true }, /mlp_bias/],
    [{ model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], use_sliding_window: true }, /use_sliding_window/],
    [{ num_key_value_heads: 4 }, /num_attention_heads 9 is not a multiple of num_key_value_heads 4/],
    [{ hidden_size: 0 }, /hidden_size is 0, not a positive integer/],
    [{ num_hidden_layers: 2.5 }, /num_hidden_layers is 2.5/],
    [{ vocab_size: undefined }, /vocab_size is undefined/],
    [{ rms_norm_eps: -1 }, /rms_norm_eps is -1, not a positive number/],
    [{ hidden_size: 577 }, /hidden_size 577 is not a multiple of num_attention_heads 9; set head_dim/],
  ])('refuses %j', (change, message) => {
    const error = (() => {
      try {
        parseConfig({ ...llama, ...change }, '/models/x/config.json');
      } catch (thrown) {
        return thrown;
      }
    })();
    expect(error).toBeInstanceOf(ModelFolderError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toMatch(/^\/models\/x\/config\.json: .*; \w+/);
  });
});

describe('model folders', () => {
  it.each(['llama', 'qwen2'] as const)(
    'a tiny %s model opens with its config, generation ids and tokenizer files',
    async (architecture) => {
      const dir = freshDir();
      const written = await writeTinyModel(dir, { architecture, tieWordEmbeddings: architecture === 'qwen2' });
      await withFolder(dir, async (folder) => {
        expect(folder.config).toEqual(written.config);
        expect(folder.generation).toEqual(written.generation);
        expect(folder.generation.eosTokenIds.length).toBeGreaterThan(0);
        expect([...expectedTensors(folder.config).keys()]).toEqual(folder.tensorNames);
        expect(folder.tensorNames.includes('lm_head.weight')).toBe(architecture === 'llama');
        expect(folder.tensorNames.includes('model.layers.1.self_attn.k_proj.bias')).toBe(architecture === 'qwen2');
        expect(folder.shapeOf('model.layers.0.self_attn.k_proj.weight')).toEqual([2 * 8, 32]);
        expect(folder.shapeOf('model.layers.0.mlp.down_proj.weight')).toEqual([32, 64]);
        const expected = buildTinyTokenizer({ variant: architecture });
        expect(folder.tokenizerFiles.tokenizerJson?.json).toEqual(expected.tokenizerJson);
        expect(folder.tokenizerFiles.tokenizerConfig?.json).toEqual(expected.tokenizerConfig);
        const count = folder.tensorNames.reduce((n, name) => n + folder.shapeOf(name).reduce((a, b) => a * b, 1), 0);
        expect(folder.weightBytes).toBe(count * 4);
        const norm = await folder.readTensor('model.norm.weight');
        expect(Math.abs(norm.reduce((a, b) => a + b, 0) / norm.length - 1)).toBeLessThan(0.02);
        const weights = await folder.readTensor('model.embed_tokens.weight');
        const std = Math.sqrt(weights.reduce((a, b) => a + b * b, 0) / weights.length);
        expect(std).toBeGreaterThan(0.018);
        expect(std).toBeLessThan(0.022);
        await expect(folder.readTensor('model.rotary_emb.inv_freq')).rejects.toThrow(/has no tensor/);
      });
    },
  );

  it('round-trips fp32 exactly and fp16 and bf16 within their precision', async () => {
    const source = await tinyModel({ seed: 7 });
    const { config, generation, tensors } = await withFolder(source, async (folder) => ({
      config: folder.config,
      generation: folder.generation,
      tensors: await readAll(folder),
    }));
    const { tokenizerJson, tokenizerConfig } = buildTinyTokenizer();
    // Half an ulp, relative; fp16 also has subnormals below 2^-14, spaced 2^-24 apart.
    const precision: Record<WeightDtype, [number, number]> = {
      F32: [0, 0],
      F16: [2 ** -11, 2 ** -25],
      BF16: [2 ** -8, 0],
    };
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const dir = freshDir();
      await writeModelFolder(dir, { config, generation, tokenizerJson, tokenizerConfig, tensors, dtype });
      const hf = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
      expect(hf.torch_dtype).toBe({ F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype]);
      await withFolder(dir, async (folder) => {
        expect(folder.config).toEqual(config);
        expect(folder.generation).toEqual(generation);
        for (const [name, { data }] of tensors) {
          const back = await folder.readTensor(name);
          const [relative, absolute] = precision[dtype];
          for (const [i, value] of data.entries()) {
            const error = Math.abs((back[i] as number) - value);
            if (error > relative * Math.abs(value) + absolute)
              expect.fail(`${dtype} ${name}[${i}]: ${back[i]} for ${value}`);
          }
        }
      });
    }
  });

  it('a sharded folder holds the same tensors as an unsharded one, in save_pretrained layout', async () => {
    const whole = await tinyModel({ dtype: 'BF16', seed: 3 });
    const sharded = await tinyModel({ dtype: 'BF16', seed: 3, shards: 3 });
    const names = (await readdir(sharded)).sort();
    expect(names.filter((name) => name.endsWith('.safetensors'))).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
    ]);
    const index = JSON.parse(await readFile(join(sharded, 'model.safetensors.index.json'), 'utf8'));
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort());
    const a = await withFolder(whole, readAll);
    const b = await withFolder(sharded, readAll);
    expect(index.metadata.total_size).toBe([...a.values()].reduce((n, { data }) => n + data.length * 2, 0));
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, { data }] of a) expect(b.get(name)?.data, name).toEqual(data);
  });

  it('writing over an earlier save replaces its weight files', async () => {
    const dir = await tinyModel({ shards: 2 });
    const { config, tensors } = await withFolder(dir, async (folder) => ({
      config: folder.config,
      tensors: await readAll(folder),
    }));
    await writeModelFolder(dir, { config, ...buildTinyTokenizer(), tensors, dtype: 'F32' });
    expect((await readdir(dir)).filter((name) => name.startsWith('model'))).toEqual(['model.safetensors']);
    await writeModelFolder(dir, { config, ...buildTinyTokenizer(), tensors, dtype: 'F32', shards: 2 });
    expect((await readdir(dir)).filter((name) => name.startsWith('model')).sort()).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
    ]);
    await withFolder(dir, async (folder) => expect(folder.tensorNames.length).toBe(tensors.size));
  });

  it('refuses to write a folder it could not read back', async () => {
    const dir = await tinyModel();
    const { config, tensors } = await withFolder(dir, async (folder) => ({
      config: folder.config,
      tensors: await readAll(folder),
    }));
    const write = (changed: Map<string, TensorEntry>, shards = 1) =>
      writeModelFolder(freshDir(), { config, ...buildTinyTokenizer(), tensors: changed, dtype: 'F32', shards });
    const without = new Map(tensors);
    without.delete('model.norm.weight');
    await expect(write(without)).rejects.toThrow(/tensor model.norm.weight is missing/);
    const misShaped = new Map(tensors).set('model.norm.weight', { shape: [31], data: new Float32Array(31) });
    await expect(write(misShaped)).rejects.toThrow(
      /model.norm.weight has shape \[31\], but the config calls for \[32\]/,
    );
    const short = new Map(tensors).set('model.norm.weight', { shape: [32], data: new Float32Array(31) });
    await expect(write(short)).rejects.toThrow(/model.norm.weight has 31 values, not the 32 of shape \[32\]/);
    await expect(write(tensors, 0)).rejects.toThrow(/shards must be/);
  });

  it('ignores extra tensors such as rotary inv_freq buffers', async () => {
    const dir = await tinyModel();
    await editWeights(join(dir, 'model.safetensors'), (tensors) => {
      tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [4], data: f32(1, 0.1, 0.01, 0.001) });
    });
    await withFolder(dir, async (folder) =>
      expect(folder.tensorNames).not.toContain('model.layers.0.self_attn.rotary_emb.inv_freq'),
    );
  });

  it('falls back to config.json for the generation ids', async () => {
    const dir = await tinyModel();
    await rm(join(dir, 'generation_config.json'));
    await editJson(join(dir, 'config.json'), (json) => {
      json.eos_token_id = 5;
      delete json.bos_token_id;
    });
    await withFolder(dir, async (folder) => expect(folder.generation).toEqual({ eosTokenIds: [5], bosTokenId: null }));
  });
});

describe('identity', () => {
  const identity = (dir: string) => withFolder(dir, async (folder) => folder.identity);

  it('is the same for the same weights, wherever the folder is', async () => {
    const dir = await tinyModel({ seed: 5 });
    const copy = freshDir();
    await cp(dir, copy, { recursive: true });
    const first = await identity(dir);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(await identity(dir)).toBe(first);
    expect(await identity(copy)).toBe(first);
    expect(await identity(await tinyModel({ seed: 5 }))).toBe(first);
  });

  it('differs for other weights of the same shapes, other dtypes and other shapes', async () => {
    const base = await identity(await tinyModel({ seed: 5 }));
    const others = [
      await identity(await tinyModel({ seed: 6 })),
      await identity(await tinyModel({ seed: 5, dtype: 'BF16' })),
      await identity(await tinyModel({ seed: 5, layers: 3 })),
    ];
    expect(new Set([base, ...others]).size).toBe(4);
  });

  it('tells apart files larger than its samples that differ only in their data', async () => {
    const dir = await tinyModel({ seed: 5, vocabSize: 4096, layers: 1 });
    const changed = freshDir();
    await cp(dir, changed, { recursive: true });
    await editWeights(join(changed, 'model.safetensors'), (tensors) => {
      const embed = tensors.get('model.embed_tokens.weight') as TensorEntry & { data: Float32Array };
      embed.data.fill(0.5);
    });
    expect(await identity(changed)).not.toBe(await identity(dir));
  });
});

describe('bad folders', () => {
  it('a folder that does not exist', async () => {
    const error = await refusal(join(root, 'nowhere'));
    expect(error.message).toMatch(
      /model folder .*nowhere does not exist or is not a folder; pass the path of a downloaded/,
    );
  });

  it('missing config.json', async () => {
    const dir = await tinyModel();
    await rm(join(dir, 'config.json'));
    const error = await refusal(dir);
    expect(error.file).toBe(join(dir, 'config.json'));
    expect(error.message).toMatch(/config\.json does not exist; pass a Hugging Face model folder/);
  });

  it('config.json that is not JSON', async () => {
    const dir = await tinyModel();
    await writeFile(join(dir, 'config.json'), '{"model_type": "qwen2",');
    expect((await refusal(dir)).message).toMatch(/config\.json is not valid JSON; download the model again/);
  });

  it('unknown model_type', async () => {
    const dir = await tinyModel();
    await editJson(join(dir, 'config.json'), (json) => {
      json.model_type = 'gemma2';
    });
    const error = await refusal(dir);
    expect(error.file).toBe(join(dir, 'config.json'));
    expect(error.message).toMatch(/model_type "gemma2" is not supported; supported are llama .* and qwen2/);
  });

  it('rope_scaling', async () => {
    const dir = await tinyModel();
    await editJson(join(dir, 'config.json'), (json) => {
      json.rope_scaling = { type: 'yarn', factor: 4 };
    });
    expect((await refusal(dir)).message).toMatch(
      /rope_scaling is .*yarn.*, which this node does not implement; pass a model without it/,
    );
  });

  it('no weights', async () => {
    const dir = await tinyModel();
    await rm(join(dir, 'model.safetensors'));
    expect((await refusal(dir)).message).toMatch(/has neither model.safetensors nor model.safetensors.index.json/);
  });

  it('missing tensor', async () => {
    const dir = await tinyModel({ architecture: 'llama' });
    await editWeights(join(dir, 'model.safetensors'), (tensors) => {
      tensors.delete('model.layers.1.mlp.up_proj.weight');
      tensors.delete('lm_head.weight');
    });
    const error = await refusal(dir);
    expect(error.file).toBe(join(dir, 'model.safetensors'));
    expect(error.message).toMatch(
      /does not match its config.json: tensor model.layers.1.mlp.up_proj.weight is missing .*; tensor lm_head.weight is missing/,
    );
  });

  it('missing tensor in a shard the index names', async () => {
    const dir = await tinyModel({ shards: 2 });
    await editWeights(join(dir, 'model-00002-of-00002.safetensors'), (tensors) => {
      tensors.delete('model.norm.weight');
    });
    expect((await refusal(dir)).message).toMatch(
      /tensor model.norm.weight is missing \(.*model-00002-of-00002.safetensors\)/,
    );
  });

  it('mis-shaped tensor', async () => {
    const dir = await tinyModel();
    await editWeights(join(dir, 'model.safetensors'), (tensors) => {
      tensors.set('model.layers.0.self_attn.k_proj.weight', { shape: [32, 32], data: new Float32Array(32 * 32) });
    });
    expect((await refusal(dir)).message).toMatch(
      /tensor model.layers.0.self_attn.k_proj.weight has shape \[32,32\], but config.json calls for \[16,32\]/,
    );
  });

  it('a dtype weights are not read in', async () => {
    const dir = await tinyModel();
    const asInt8 = (dtype: string) => (header: Header) => {
      const [begin = 0] = header['model.norm.weight']?.data_offsets ?? [];
      header['model.norm.weight'] = { dtype, shape: [32], data_offsets: [begin, begin + 32] };
    };
    expect(await rewriteHeader(dir, asInt8('I8'))).toMatch(/model.norm.weight is stored as I8, not F32, F16 or BF16/);
    expect(await rewriteHeader(dir, asInt8('Q4_K'))).toMatch(
      /stores tensor model.norm.weight in dtype "Q4_K", which safetensors does not define; download the file again/,
    );
  });

  it('truncated shard', async () => {
    const dir = await tinyModel({ shards: 2, dtype: 'F16' });
    const shard = join(dir, 'model-00002-of-00002.safetensors');
    const { size } = await stat(shard);
    await truncate(shard, size - 100);
    const error = await refusal(dir);
    expect(error.file).toBe(shard);
    expect(error.message).toMatch(
      /model-00002-of-00002.safetensors is cut short: it has \d+ of its \d+ data bytes; download the file again/,
    );
    await truncate(shard, 20);
    expect((await refusal(dir)).message).toMatch(/is cut short: its header should be \d+ bytes but 12 follow/);
    await truncate(shard, 5);
    expect((await refusal(dir)).message).toMatch(/is cut short at 5 bytes, before its header/);
  });

  it('missing shard', async () => {
    const dir = await tinyModel({ shards: 2 });
    const shard = join(dir, 'model-00001-of-00002.safetensors');
    await rm(shard);
    const error = await refusal(dir);
    expect(error.file).toBe(shard);
    expect(error.message).toMatch(
      /model-00001-of-00002.safetensors is listed in .*model.safetensors.index.json but does not exist; download every shard/,
    );
  });

  it('an index without a weight_map of shard files', async () => {
    const dir = await tinyModel({ shards: 2 });
    await editJson(join(dir, 'model.safetensors.index.json'), (json) => {
      (json.weight_map as Record<string, string>)['model.norm.weight'] = '../elsewhere.safetensors';
    });
    expect((await refusal(dir)).message).toMatch(
      /has no weight_map of tensor names to .safetensors files in the folder/,
    );
  });

  it('corrupt header', async () => {
    const dir = await tinyModel();
    const file = join(dir, 'model.safetensors');
    const bytes = await readFile(file);
    const corrupt = async (change: (copy: Buffer) => void) => {
      const copy = Buffer.from(bytes);
      change(copy);
      await writeFile(file, copy);
      return (await refusal(dir)).message;
    };
    expect(await corrupt((copy) => copy.write('\xff', 8, 'latin1'))).toMatch(
      /has a header that is not UTF-8 JSON; download the file again/,
    );
    expect(await corrupt((copy) => copy.write('[', 8))).toMatch(/not UTF-8 JSON/);
    expect(await corrupt((copy) => copy.writeBigUInt64LE(2n ** 40n, 0))).toMatch(
      /header length of \d+ bytes, over the 100 MB limit/,
    );
    const rewrite = async (edit: (header: Header) => void) => {
      await writeFile(file, bytes);
      return rewriteHeader(dir, edit);
    };
    expect(
      await rewrite((json) => {
        (json['model.norm.weight'] as HeaderEntry).shape = [33];
      }),
    ).toMatch(/has bytes \d+-\d+ for tensor model.norm.weight, not the 132 its F32 shape \[33\] takes/);
    expect(
      await rewrite((json) => {
        (json['model.norm.weight'] as HeaderEntry).data_offsets = [0, 128];
      }),
    ).toMatch(/sharing bytes/);
    expect(
      await rewrite((json) => {
        (json['model.norm.weight'] as HeaderEntry).data_offsets = [-4, 124];
      }),
    ).toMatch(/has no valid shape and data_offsets for tensor model.norm.weight/);
  });
});
