/**
 * Checkpoints: the policy's weights, the optimizer's state and what they were trained with, one
 * safetensors file per step (`step-0000000042.safetensors`). The layout is an 8-byte
 * little-endian header length, a JSON header, then the tensors' raw little-endian bytes packed in
 * header order. Weights are named `model/<name>`, optimizer state `optimizer/<name>`; the header's
 * `__metadata__` holds the format, step, config, tokenizer, user metadata, the SHA-256 of the data
 * section (`sha256`) and the SHA-256 of the header itself (`header_sha256`, so that a flipped
 * byte in a shape or a name cannot load as a different model).
 *
 * Saves are atomic (temp file, fsync, rename, fsync the directory), so a crash at any moment
 * leaves the newest `step-*` file whole; loads are strict and either return every tensor or
 * throw a CheckpointError.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError } from './errors.js';
import { encodeHeader } from './hf/safetensors.js';

export interface Checkpoint {
  /** Optimizer steps taken, an integer >= 0. */
  step: number;
  /** The policy model's config (JSON-serialisable), checked on load. */
  config: Record<string, unknown>;
  /** Tokenizer id, e.g. 'bytes-v1', checked on load. */
  tokenizer: string;
  /** Model parameters by name. */
  weights: Map<string, tf.Tensor>;
  /** Optimizer state by name; may be empty. */
  optimizer: Map<string, tf.Tensor>;
  /** Free-form extra information (e.g. created-by, seed). */
  metadata?: Record<string, string>;
}

/** What loadCheckpoint compares the file against; every difference is a CHECKPOINT_MISMATCH. */
export interface CheckpointExpectation {
  config?: Record<string, unknown>;
  tokenizer?: string;
  /** Shapes of model weights by name (without the `model/` prefix). */
  shapes?: Map<string, number[]>;
}

type Group = 'weights' | 'optimizer';
type Dtype = 'float32' | 'int32';

/** One tensor of a checked header: where its bytes lie in the data section. */
interface Entry {
  group: Group;
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A file whose every byte has been checked, before any tensor is made from it. */
interface Parsed extends Omit<Checkpoint, 'weights' | 'optimizer'> {
  metadata: Record<string, string>;
  entries: Entry[];
  data: Uint8Array;
}

const FORMAT = 'swarm-node-checkpoint';
const FORMAT_VERSION = '1';
const RESERVED = new Set(['format', 'format_version', 'step', 'config', 'tokenizer', 'sha256', 'header_sha256']);
const PREFIX: Record<Group, string> = { weights: 'model/', optimizer: 'optimizer/' };
// Both stored dtypes take 4 bytes an element. Typed arrays use the host's byte order, as tfjs's
// own weight files do: this assumes a little-endian host (x86, ARM).
const DTYPES = new Map<unknown, Dtype>([
  ['F32', 'float32'],
  ['I32', 'int32'],
]);
const CODES = new Map<string, string>([...DTYPES].map(([code, dtype]) => [dtype, code as string]));
const FILE_NAME = /^step-(\d{10,})\.safetensors$/;
const TEMP_NAME = /^\.step-\d{10,}\.safetensors\.tmp-(\d+)-[0-9a-f]+$/;
const BROKEN = 'delete it or pass a different checkpoint; refusing to start from a fresh model';
const MISMATCH = 'pass a checkpoint made for this model and tokenizer; refusing to start from a fresh model';
const UNSAVED = '(unsaved)';

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');
const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isCounts = (value: unknown): value is number[] => Array.isArray(value) && value.every(isCount);
/** The JSON value of UTF-8 text, or undefined when it is not valid UTF-8 JSON. */
function parseJson(text: Uint8Array | string): unknown {
  try {
    return JSON.parse(typeof text === 'string' ? text : new TextDecoder('utf-8', { fatal: true }).decode(text));
  } catch {
    return undefined;
  }
}
const size = (shape: readonly number[]) => shape.reduce((product, dim) => product * dim, 1);
/** JSON with sorted keys, so that configs compare by content; undefined for an absent value. */
const canonical = (value: unknown): string | undefined =>
  JSON.stringify(value, (_key, inner) =>
    isRecord(inner) ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : 1))) : inner,
  );

export async function encodeCheckpoint(checkpoint: Checkpoint): Promise<Uint8Array> {
  const { step, config, tokenizer, metadata = {} } = checkpoint;
  const invalid = (problem: string) =>
    new CheckpointError('CHECKPOINT_INVALID', UNSAVED, `cannot save checkpoint: ${problem}`);
  if (!isCount(step)) throw invalid(`step must be an integer >= 0, got ${String(step)}`);
  if (typeof tokenizer !== 'string' || tokenizer === '') throw invalid('tokenizer must be a non-empty string id');
  if (!isRecord(config)) throw invalid('config must be a plain JSON object');
  for (const [key, value] of Object.entries(metadata)) {
    if (RESERVED.has(key)) throw invalid(`metadata key ${key} is reserved; rename it`);
    if (typeof value !== 'string') throw invalid(`metadata ${key} must be a string (safetensors stores strings)`);
  }

  const tensors: Record<string, unknown> = {};
  const chunks: Uint8Array[] = [];
  const dataHash = createHash('sha256');
  let offset = 0;
  for (const group of ['weights', 'optimizer'] as const) {
    for (const [name, tensor] of checkpoint[group]) {
      const dtype = CODES.get(tensor.dtype);
      if (!dtype) throw invalid(`${group} ${name} has dtype ${tensor.dtype}; only float32 and int32 can be stored`);
      const values = (await tensor.data()) as Float32Array | Int32Array;
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      tensors[PREFIX[group] + name] = { dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes.length] };
      chunks.push(bytes);
      dataHash.update(bytes);
      offset += bytes.length;
    }
  }

  const meta: Record<string, string> = {
    format: FORMAT,
    format_version: FORMAT_VERSION,
    step: String(step),
    config: JSON.stringify(config),
    tokenizer,
    ...metadata,
    sha256: dataHash.digest('hex'),
  };
  const header = { __metadata__: meta, ...tensors };
  meta.header_sha256 = sha256(JSON.stringify(header));
  const head = encodeHeader(header);
  const out = new Uint8Array(head.length + offset);
  out.set(head);
  let at = head.length;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Decodes and checks a whole checkpoint file's bytes; `source` names it in error messages. */
export function decodeCheckpoint(bytes: Uint8Array, source = '(in memory)'): Checkpoint {
  return materialize(parse(bytes, source));
}

function parse(bytes: Uint8Array, file: string): Parsed {
  const fail = (code: string, problem: string) =>
    new CheckpointError(`CHECKPOINT_${code}`, file, `checkpoint ${file} ${problem}; ${BROKEN}`);
  if (bytes.length < 8) throw fail('TRUNCATED', `is cut short at ${bytes.length} bytes`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  if (headerLength > BigInt(bytes.length - 8)) {
    throw fail('TRUNCATED', `is cut short: its header should be ${headerLength} bytes but ${bytes.length - 8} follow`);
  }
  const dataStart = 8 + Number(headerLength);
  const header = parseJson(bytes.subarray(8, dataStart));
  if (!isRecord(header)) throw fail('CORRUPT', 'has a header that is not a UTF-8 JSON object');
  const { __metadata__: meta, ...tensors } = header;
  if (!isRecord(meta) || meta.format !== FORMAT) {
    throw fail('UNSUPPORTED', `is not a swarm-node checkpoint (__metadata__.format is not ${FORMAT})`);
  }
  if (meta.format_version !== FORMAT_VERSION) {
    throw fail('UNSUPPORTED', `has format version ${String(meta.format_version)}; this build reads ${FORMAT_VERSION}`);
  }
  const { header_sha256: headerHash, ...unhashed } = meta;
  if (headerHash !== sha256(JSON.stringify({ ...header, __metadata__: unhashed }))) {
    throw fail('CORRUPT', 'has a header that does not match its header_sha256');
  }

  const field = (key: string) => {
    const value = meta[key];
    if (typeof value !== 'string') throw fail('CORRUPT', `has no string __metadata__.${key}`);
    return value;
  };
  const metadata: Record<string, string> = {};
  for (const key of Object.keys(meta)) if (!RESERVED.has(key)) metadata[key] = field(key);
  const step = field('step');
  if (!/^(0|[1-9]\d*)$/.test(step) || !isCount(Number(step))) throw fail('CORRUPT', `has step ${step}`);
  const config = parseJson(field('config'));
  if (!isRecord(config)) throw fail('CORRUPT', 'has a config that is not a JSON object');
  const tokenizer = field('tokenizer');

  const entries: Entry[] = [];
  let offset = 0;
  for (const [key, value] of Object.entries(tensors)) {
    const group = (['weights', 'optimizer'] as const).find((g) => key.startsWith(PREFIX[g]));
    if (!group) throw fail('CORRUPT', `has tensor ${key} outside ${PREFIX.weights} and ${PREFIX.optimizer}`);
    const { dtype: code, shape, data_offsets: offsets } = isRecord(value) ? value : {};
    if (!isCounts(shape) || !isCounts(offsets) || offsets.length !== 2) {
      throw fail('CORRUPT', `has no valid shape and data_offsets for tensor ${key}`);
    }
    const dtype = DTYPES.get(code);
    if (!dtype) throw fail('UNSUPPORTED', `stores tensor ${key} as ${String(code)}; only F32 and I32 are read`);
    const [begin = 0, end = 0] = offsets;
    if (begin !== offset || end < begin) {
      throw fail('CORRUPT', `has tensor ${key} at bytes ${begin}-${end}, not packed after the one before`);
    }
    if (end - begin !== size(shape) * 4) {
      throw fail('CORRUPT', `has ${end - begin} bytes for tensor ${key} of shape [${shape}]`);
    }
    entries.push({ group, name: key.slice(PREFIX[group].length), dtype, shape, begin, end });
    offset = end;
  }
  const data = bytes.subarray(dataStart);
  if (data.length < offset) throw fail('TRUNCATED', `is cut short: ${data.length} of ${offset} data bytes are there`);
  if (data.length > offset) throw fail('CORRUPT', `has ${data.length - offset} bytes after its last tensor`);
  if (sha256(data) !== field('sha256')) throw fail('CORRUPT', 'has data that does not match its sha256');
  return { step: Number(step), config, tokenizer, metadata, entries, data };
}

function checkExpected(parsed: Parsed, expect: CheckpointExpectation, file: string): void {
  const problems: string[] = [];
  if (expect.tokenizer !== undefined && expect.tokenizer !== parsed.tokenizer) {
    problems.push(`tokenizer is ${parsed.tokenizer}, expected ${expect.tokenizer}`);
  }
  if (expect.config) {
    const [found, wanted] = [parsed.config, expect.config];
    const differ = [...new Set([...Object.keys(found), ...Object.keys(wanted)])]
      .filter((key) => canonical(found[key]) !== canonical(wanted[key]))
      .map((key) => `${key} (${canonical(found[key]) ?? 'absent'}, expected ${canonical(wanted[key]) ?? 'absent'})`);
    if (differ.length > 0) problems.push(`config differs in ${differ.join(', ')}`);
  }
  const weights = new Map(parsed.entries.filter((e) => e.group === 'weights').map((e) => [e.name, e.shape]));
  for (const [name, shape] of expect.shapes ?? []) {
    const found = weights.get(name);
    if (!found) problems.push(`weight ${name} is missing`);
    else if (found.join() !== shape.join()) problems.push(`weight ${name} has shape [${found}], expected [${shape}]`);
  }
  if (problems.length > 0) {
    throw new CheckpointError(
      'CHECKPOINT_MISMATCH',
      file,
      `checkpoint ${file} does not fit this model: ${problems.join('; ')}; ${MISMATCH}`,
    );
  }
}

function materialize({ entries, data, ...rest }: Parsed): Checkpoint {
  const checkpoint: Checkpoint = { ...rest, weights: new Map(), optimizer: new Map() };
  try {
    for (const { group, name, dtype, shape, begin, end } of entries) {
      // A copy per tensor: aligned for the typed array, and freed when the caller disposes it.
      const buffer = new Uint8Array(data.subarray(begin, end)).buffer;
      const values = dtype === 'float32' ? new Float32Array(buffer) : new Int32Array(buffer);
      checkpoint[group].set(name, tf.tensor(values, shape, dtype));
    }
  } catch (error) {
    for (const tensor of [...checkpoint.weights.values(), ...checkpoint.optimizer.values()]) tensor.dispose();
    throw error;
  }
  return checkpoint;
}

/** Reads, checks and decodes a checkpoint file; nothing is returned unless all of it is sound. */
export async function loadCheckpoint(file: string, expect: CheckpointExpectation = {}): Promise<Checkpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CheckpointError(
      missing ? 'CHECKPOINT_NOT_FOUND' : 'CHECKPOINT_UNREADABLE',
      file,
      missing
        ? `checkpoint ${file} does not exist; check the path or pass a different checkpoint`
        : `checkpoint ${file} cannot be read (${(error as Error).message}); fix it or pass a different checkpoint`,
      { cause: error },
    );
  }
  const parsed = parse(bytes, file);
  checkExpected(parsed, expect, file);
  return materialize(parsed);
}

/** Writes `dir/step-<step>.safetensors` atomically, then keeps only the newest `keep` (default 3). */
export async function saveCheckpoint(
  dir: string,
  checkpoint: Checkpoint,
  options: { keep?: number } = {},
): Promise<string> {
  const { keep = 3 } = options;
  if (!Number.isSafeInteger(keep) || keep < 1) {
    throw new CheckpointError('CHECKPOINT_INVALID', UNSAVED, `cannot save checkpoint: keep must be >= 1, got ${keep}`);
  }
  const bytes = await encodeCheckpoint(checkpoint);
  await mkdir(dir, { recursive: true });
  const name = `step-${String(checkpoint.step).padStart(10, '0')}.safetensors`;
  const file = join(dir, name);
  const temp = join(dir, `.${name}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  // Makes the rename itself durable. Windows cannot open a directory to sync it.
  if (process.platform !== 'win32') {
    const handle = await open(dir, 'r');
    await handle.sync().finally(() => handle.close());
  }
  await prune(dir, keep, name);
  return file;
}

/** The newest checkpoint file in `dir` by step, or null when there is none (or no `dir`). */
export async function latestCheckpoint(dir: string): Promise<string | null> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const [newest] = byStepNewestFirst(names);
  return newest === undefined ? null : join(dir, newest);
}

function byStepNewestFirst(names: string[]): string[] {
  return names
    .flatMap((name) => {
      const match = FILE_NAME.exec(name);
      return match ? [{ name, step: Number(match[1]) }] : [];
    })
    .sort((a, b) => b.step - a.step)
    .map(({ name }) => name);
}

/** Deletes checkpoints beyond the newest `keep` (never the one just saved) and dead saves' temp files. */
async function prune(dir: string, keep: number, saved: string): Promise<void> {
  const names = await readdir(dir);
  const old = byStepNewestFirst(names)
    .slice(keep)
    .filter((name) => name !== saved);
  const orphans = names.filter((name) => {
    const pid = TEMP_NAME.exec(name)?.[1];
    return pid !== undefined && !isRunning(Number(pid));
  });
  await Promise.all([...old, ...orphans].map((name) => rm(join(dir, name), { force: true })));
}

/**
 * Deletes the temp files of saves that never finished in `dir` and returns their names. Call it at
 * start, before this process saves, and only when no other process saves into `dir`: unlike the
 * pruning after a save, it does not ask whether the writer still runs (in a container the node is
 * always pid 1, so a crashed save's pid is "running" again after every restart).
 */
export async function removeUnfinishedSaves(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const temps = names.filter((name) => TEMP_NAME.test(name));
  await Promise.all(temps.map((name) => rm(join(dir, name), { force: true })));
  return temps;
}

/** A temp file's writer, while it runs, may still rename it; one whose writer died is a crashed save's leftover. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
