/**
 * Hugging Face model folders on disk, as `save_pretrained` writes them and the hub serves them:
 * `config.json`, `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`, and the
 * weights in `model.safetensors` or in shards `model-0000x-of-0000y.safetensors` listed by
 * `model.safetensors.index.json`.
 *
 * Opening a folder checks everything that can be checked without reading the weights: the config
 * is one this node computes exactly, every tensor the config calls for is there with its shape and
 * a float dtype, no shard is missing or cut short. A bad download is then refused with the file's
 * name before any training starts, rather than halfway through loading 2 GB.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { baseShapes } from '../pretrained.js';
import {
  type Architecture,
  CAUSAL_LM_CLASSES,
  ModelFolderError,
  type PretrainedConfig,
  parseConfig,
} from './config.js';
import {
  elementCount,
  SafetensorsReader,
  type TensorEntry,
  WEIGHT_DTYPES,
  type WeightDtype,
  writeSafetensors,
} from './safetensors.js';

export const CONFIG_FILE = 'config.json';
export const GENERATION_CONFIG_FILE = 'generation_config.json';
export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';
/** Every weight file name save_pretrained writes; what writeModelFolder replaces. */
const WEIGHT_FILE_NAME = /^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$/;
const TORCH_DTYPES: Readonly<Record<WeightDtype, string>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
const REDOWNLOAD = 'download the model again';

/** The token ids generation starts and stops at (`generation_config.json`, else `config.json`). */
export interface GenerationConfig {
  /** Generation stops at any of these; instruct models often have two (end of turn, end of text). */
  eosTokenIds: number[];
  bosTokenId: number | null;
}

/** A JSON file of the folder: where it is and its parsed content. */
export interface JsonFile {
  path: string;
  json: unknown;
}

/** The tokenizer's files, null where the folder has none; the tokenizer itself is built from them elsewhere. */
export interface TokenizerFiles {
  tokenizerJson: JsonFile | null;
  tokenizerConfig: JsonFile | null;
}

/** An opened, checked model folder; its weight files stay open until close(). */
export interface ModelFolder {
  readonly dir: string;
  readonly config: PretrainedConfig;
  readonly generation: GenerationConfig;
  readonly tokenizerFiles: TokenizerFiles;
  /** The tensors the config calls for, in the model's order; tensors beyond them are ignored. */
  readonly tensorNames: readonly string[];
  /** A tensor's shape, `[out, in]` for a linear layer's weight as PyTorch stores it. */
  shapeOf(name: string): readonly number[];
  /** A tensor's values as fp32, read from its bytes alone. */
  readTensor(name: string): Promise<Float32Array>;
  /**
   * SHA-256 (hex) over each weight file's name and fingerprint (size, header and sampled data):
   * what an adapter checkpoint records of its base, to refuse resuming on another one.
   */
  readonly identity: string;
  /** Bytes the config's tensors take once held in fp32, whatever dtype they are stored in. */
  readonly weightBytes: number;
  close(): Promise<void>;
}

/** What writeModelFolder writes. */
export interface ModelFolderContents {
  config: PretrainedConfig;
  generation?: GenerationConfig;
  /** `tokenizer.json` and `tokenizer_config.json`, as parsed JSON. */
  tokenizerJson: unknown;
  tokenizerConfig: unknown;
  /** At least the tensors the config calls for, in the order they go into shards. */
  tensors: ReadonlyMap<string, TensorEntry>;
  dtype: WeightDtype;
  /** How many safetensors files to split the weights into (default 1: `model.safetensors`). */
  shards?: number;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const isTokenId = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/** The tensors a config calls for, Hugging Face names to shapes, in the model's order (the policy's own table). */
export function expectedTensors(config: PretrainedConfig): Map<string, number[]> {
  return baseShapes(config);
}

/** Parsed JSON of `path`, or null when it does not exist and is not `required`. */
async function readJson(path: string, required: string | null): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ModelFolderError(path, `${path} cannot be read (${(error as Error).message}); fix its permissions`, {
        cause: error,
      });
    }
    if (required === null) return null;
    throw new ModelFolderError(path, `${path} does not exist; ${required}`, { cause: error });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ModelFolderError(path, `${path} is not valid JSON; ${REDOWNLOAD}`, { cause: error });
  }
}

function parseGeneration(json: unknown, file: string): GenerationConfig {
  if (!isRecord(json)) throw new ModelFolderError(file, `${file} is not a JSON object; ${REDOWNLOAD}`);
  const { eos_token_id: eos = null, bos_token_id: bos = null } = json;
  const eosTokenIds = eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!eosTokenIds.every(isTokenId)) {
    throw new ModelFolderError(
      file,
      `${file}: eos_token_id is ${JSON.stringify(eos)}, not a token id or a list of them; fix it`,
    );
  }
  if (bos !== null && !isTokenId(bos)) {
    throw new ModelFolderError(file, `${file}: bos_token_id is ${JSON.stringify(bos)}, not a token id; fix it`);
  }
  return { eosTokenIds, bosTokenId: bos };
}

/** Which weight file holds each tensor: `model.safetensors`, else the shards the index lists. */
async function locateWeights(
  dir: string,
): Promise<{ file: string; weightMap: Record<string, string> | null; files: string[] }> {
  const single = join(dir, WEIGHTS_FILE);
  const exists = await stat(single).then(
    () => true,
    () => false,
  );
  if (exists) return { file: single, weightMap: null, files: [WEIGHTS_FILE] };
  const indexFile = join(dir, WEIGHTS_INDEX_FILE);
  const index = await readJson(
    indexFile,
    `${dir} has neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE}; download the model's safetensors weights (pytorch_model.bin is not read)`,
  );
  const map = isRecord(index) ? index.weight_map : undefined;
  if (
    !isRecord(map) ||
    !Object.values(map).every((shard) => typeof shard === 'string' && /^[^/\\]+\.safetensors$/.test(shard))
  ) {
    throw new ModelFolderError(
      indexFile,
      `${indexFile} has no weight_map of tensor names to .safetensors files in the folder; ${REDOWNLOAD}`,
    );
  }
  const weightMap = map as Record<string, string>;
  return { file: indexFile, weightMap, files: [...new Set(Object.values(weightMap))].sort() };
}

/**
 * Opens the model folder `dir` and checks it against its own config (see the module comment).
 * Throws a ModelFolderError naming the file at fault and what to do; nothing stays open then.
 */
export async function openModelFolder(dir: string): Promise<ModelFolder> {
  const isDir = await stat(dir).then(
    (info) => info.isDirectory(),
    () => false,
  );
  if (!isDir) {
    throw new ModelFolderError(
      dir,
      `model folder ${dir} does not exist or is not a folder; pass the path of a downloaded Hugging Face model folder`,
    );
  }
  const configFile = join(dir, CONFIG_FILE);
  const rawConfig = await readJson(
    configFile,
    `pass a Hugging Face model folder (${CONFIG_FILE}, ${WEIGHTS_FILE}, ${TOKENIZER_FILE})`,
  );
  const config = parseConfig(rawConfig, configFile);
  const generationFile = join(dir, GENERATION_CONFIG_FILE);
  const rawGeneration = await readJson(generationFile, null);
  const generation =
    rawGeneration === null ? parseGeneration(rawConfig, configFile) : parseGeneration(rawGeneration, generationFile);
  const jsonFile = async (name: string): Promise<JsonFile | null> => {
    const path = join(dir, name);
    const json = await readJson(path, null);
    return json === null ? null : { path, json };
  };
  const tokenizerFiles = {
    tokenizerJson: await jsonFile(TOKENIZER_FILE),
    tokenizerConfig: await jsonFile(TOKENIZER_CONFIG_FILE),
  };

  const { file: weightsFile, weightMap, files } = await locateWeights(dir);
  const readers = new Map<string, SafetensorsReader>();
  const closeAll = () => Promise.all([...readers.values()].map((reader) => reader.close()));
  try {
    for (const name of files) {
      const path = join(dir, name);
      const reader = await SafetensorsReader.open(path).catch((error: ModelFolderError) => {
        const missing = (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
        if (!missing) throw error;
        throw new ModelFolderError(
          path,
          `${path} is listed in ${weightsFile} but does not exist; download every shard of the model`,
        );
      });
      readers.set(name, reader);
    }

    const expected = expectedTensors(config);
    const sources = new Map<string, SafetensorsReader>();
    const problems: { file: string; problem: string }[] = [];
    for (const [name, shape] of expected) {
      const shard = weightMap ? (Object.hasOwn(weightMap, name) ? weightMap[name] : undefined) : WEIGHTS_FILE;
      const reader = shard === undefined ? undefined : readers.get(shard);
      const info = reader?.tensors.get(name);
      if (!reader || !info) {
        problems.push({ file: reader?.file ?? weightsFile, problem: `tensor ${name} is missing` });
      } else if (!(WEIGHT_DTYPES as readonly string[]).includes(info.dtype)) {
        problems.push({
          file: reader.file,
          problem: `tensor ${name} is stored as ${info.dtype}, not F32, F16 or BF16 (quantised models are not read)`,
        });
      } else if (info.shape.join() !== shape.join()) {
        problems.push({
          file: reader.file,
          problem: `tensor ${name} has shape [${info.shape}], but ${CONFIG_FILE} calls for [${shape}]`,
        });
      } else {
        sources.set(name, reader);
      }
    }
    const [first] = problems;
    if (first) {
      const shown = problems.slice(0, 5).map(({ file, problem }) => `${problem} (${file})`);
      if (problems.length > 5) shown.push(`${problems.length - 5} more`);
      throw new ModelFolderError(
        first.file,
        `model folder ${dir} does not match its ${CONFIG_FILE}: ${shown.join('; ')}; ${REDOWNLOAD}, or pass a folder whose weights match its config`,
      );
    }

    const identity = createHash('sha256').update('swarm-node-base-identity-v1\n');
    for (const [name, reader] of readers) identity.update(`${name}\n${await reader.fingerprint()}\n`);
    const tensorNames = [...expected.keys()];
    const known = (name: string) => {
      const shape = expected.get(name);
      if (!shape)
        throw new ModelFolderError(
          dir,
          `model folder ${dir} has no tensor ${name} for ${config.architecture}; ask for one of tensorNames`,
        );
      return shape;
    };
    return {
      dir,
      config,
      generation,
      tokenizerFiles,
      tensorNames,
      shapeOf: known,
      readTensor: async (name) => {
        known(name);
        return (sources.get(name) as SafetensorsReader).readTensor(name);
      },
      identity: identity.digest('hex'),
      weightBytes: tensorNames.reduce((sum, name) => sum + elementCount(known(name)) * 4, 0),
      close: () => closeAll().then(() => undefined),
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** `config.json` as transformers writes it for `config`. */
function hfConfig(config: PretrainedConfig, generation: GenerationConfig | undefined, dtype: WeightDtype) {
  const byArchitecture: Record<Architecture, Record<string, unknown>> = {
    llama: { attention_bias: false, mlp_bias: false },
    qwen2: { use_sliding_window: false },
  };
  return {
    architectures: [CAUSAL_LM_CLASSES[config.architecture]],
    model_type: config.architecture,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.layers,
    num_attention_heads: config.heads,
    num_key_value_heads: config.kvHeads,
    head_dim: config.headDim,
    hidden_act: 'silu',
    max_position_embeddings: config.maxPositions,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: config.tieWordEmbeddings,
    torch_dtype: TORCH_DTYPES[dtype],
    use_cache: true,
    ...byArchitecture[config.architecture],
    ...(generation ? generationJson(generation) : {}),
  };
}

/** Token ids as transformers writes them: one EOS id as a number, several as a list. */
function generationJson({ eosTokenIds, bosTokenId }: GenerationConfig) {
  return {
    ...(bosTokenId === null ? {} : { bos_token_id: bosTokenId }),
    ...(eosTokenIds.length === 0 ? {} : { eos_token_id: eosTokenIds.length === 1 ? eosTokenIds[0] : eosTokenIds }),
  };
}

/** JSON as transformers writes its files: keys sorted, two-space indent, a final newline. */
const sortedJson = (value: unknown) =>
  `${JSON.stringify(
    value,
    (_key, inner) =>
      isRecord(inner) ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : 1))) : inner,
    2,
  )}\n`;

/**
 * Splits tensors, in order, into `count` non-empty runs of about equal bytes, as save_pretrained
 * fills one shard before starting the next.
 */
function splitShards(tensors: [string, TensorEntry][], count: number): [string, TensorEntry][][] {
  const sizes = tensors.map(([, { shape }]) => elementCount(shape));
  const total = sizes.reduce((a, b) => a + b, 0);
  const shards: [string, TensorEntry][][] = [[]];
  let before = 0;
  for (const [i, tensor] of tensors.entries()) {
    const current = shards.length - 1;
    const size = sizes[i] as number;
    const mustMove = tensors.length - i <= count - shards.length;
    const pastTarget = before + size / 2 > (total * shards.length) / count;
    if ((shards[current] as [string, TensorEntry][]).length > 0 && shards.length < count && (mustMove || pastTarget)) {
      shards.push([]);
    }
    (shards[shards.length - 1] as [string, TensorEntry][]).push(tensor);
    before += size;
  }
  return shards;
}

/**
 * Writes a Hugging Face model folder that transformers (and openModelFolder) loads: config.json,
 * generation_config.json when `generation` is given, the tokenizer's files, and the weights in
 * `dtype`, in `model.safetensors` or in `shards` files with their index, named and laid out as
 * save_pretrained does. Weight files of an earlier save in `dir` are removed first, so a stale
 * `model.safetensors` cannot shadow new shards. Tensors are written one at a time (see TensorData).
 */
export async function writeModelFolder(dir: string, contents: ModelFolderContents): Promise<void> {
  const { config, generation, tensors, dtype, shards = 1 } = contents;
  const refuse = (problem: string) => new ModelFolderError(dir, `cannot write model folder ${dir}: ${problem}`);
  for (const [name, shape] of expectedTensors(config)) {
    const found = tensors.get(name)?.shape;
    if (!found) throw refuse(`tensor ${name} is missing`);
    if (found.join() !== shape.join())
      throw refuse(`tensor ${name} has shape [${found}], but the config calls for [${shape}]`);
  }
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > tensors.size) {
    throw refuse(`shards must be an integer from 1 to the number of tensors (${tensors.size}), got ${shards}`);
  }

  await mkdir(dir, { recursive: true });
  const stale = (await readdir(dir)).filter((name) => WEIGHT_FILE_NAME.test(name));
  await Promise.all(stale.map((name) => rm(join(dir, name), { force: true })));
  await writeFile(join(dir, CONFIG_FILE), sortedJson(hfConfig(config, generation, dtype)));
  if (generation) await writeFile(join(dir, GENERATION_CONFIG_FILE), sortedJson(generationJson(generation)));
  await writeFile(join(dir, TOKENIZER_FILE), JSON.stringify(contents.tokenizerJson, null, 2));
  await writeFile(join(dir, TOKENIZER_CONFIG_FILE), JSON.stringify(contents.tokenizerConfig, null, 2));

  if (shards === 1) {
    await writeSafetensors(join(dir, WEIGHTS_FILE), tensors, dtype);
    return;
  }
  const pad = (n: number) => String(n).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (const [i, shard] of splitShards([...tensors], shards).entries()) {
    const name = `model-${pad(i + 1)}-of-${pad(shards)}.safetensors`;
    totalSize += await writeSafetensors(join(dir, name), shard, dtype);
    for (const [tensor] of shard) weightMap[tensor] = name;
  }
  await writeFile(
    join(dir, WEIGHTS_INDEX_FILE),
    sortedJson({ metadata: { total_size: totalSize }, weight_map: weightMap }),
  );
}
