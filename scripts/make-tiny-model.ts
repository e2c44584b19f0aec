/**
 * Writes a random Llama or Qwen2 model in the Hugging Face folder format (config.json, safetensors
 * weights, a tiny real BPE tokenizer), for trying `swarm-node start --model DIR` without a
 * download, for multi-process tests, and (with --preset) for benchmarks at real models' shapes:
 *
 *   npx tsx scripts/make-tiny-model.ts --out /tmp/tiny --arch qwen2 --dtype bf16 --shards 2
 *   npx tsx scripts/make-tiny-model.ts --out /tmp/smollm2 --preset smollm2-135m     # 0.5 GB
 *   npx tsx scripts/make-tiny-model.ts --out /tmp/qwen --preset qwen2.5-0.5b        # 2 GB
 *
 * Tensors are made and written one at a time, so a preset never sits in memory whole.
 */
import { parseArgs } from 'node:util';
import { WEIGHT_DTYPES, type WeightDtype } from '../packages/sapo/src/hf/safetensors.js';
import { MODEL_PRESETS, type TinyModelOptions, writeTinyModel } from '../packages/sapo/test/fixtures/tiny-models.js';

const USAGE = `usage: make-tiny-model --out DIR [--arch llama|qwen2] [--dtype f32|f16|bf16] [--shards N] [--seed N] [--tied] [--layers N]
       make-tiny-model --out DIR --preset ${Object.keys(MODEL_PRESETS).join('|')} [--dtype ...] [--shards N] [--seed N]`;

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    arch: { type: 'string', default: 'qwen2' },
    preset: { type: 'string' },
    dtype: { type: 'string', default: 'f32' },
    shards: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    tied: { type: 'boolean', default: false },
    layers: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
const fail = (problem: string): never => {
  console.error(`${problem}\n${USAGE}`);
  process.exit(2);
};
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const out = values.out ?? fail('--out is required');
const dtype = values.dtype.toUpperCase() as WeightDtype;
if (!WEIGHT_DTYPES.includes(dtype)) fail(`--dtype ${values.dtype} is not one of f32, f16, bf16`);
const integer = (flag: string, text: string, min = 1) => {
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= min ? value : fail(`--${flag} ${text} is not an integer >= ${min}`);
};

let shape: TinyModelOptions;
if (values.preset !== undefined) {
  const preset =
    MODEL_PRESETS[values.preset as keyof typeof MODEL_PRESETS] ?? fail(`--preset ${values.preset} is unknown`);
  shape = { ...preset };
} else {
  if (values.arch !== 'llama' && values.arch !== 'qwen2') fail(`--arch ${values.arch} is not llama or qwen2`);
  shape = {
    architecture: values.arch as 'llama' | 'qwen2',
    tieWordEmbeddings: values.tied,
    ...(values.layers === undefined ? {} : { layers: integer('layers', values.layers) }),
  };
}

const started = performance.now();
const { config } = await writeTinyModel(out, {
  ...shape,
  dtype,
  shards: integer('shards', values.shards),
  seed: integer('seed', values.seed, 0),
});
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `wrote ${out}: ${config.architecture}, ${config.layers} layers, d ${config.hiddenSize}, ${dtype}, in ${seconds} s`,
);
