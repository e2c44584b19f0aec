/**
 * Safetensors files as Hugging Face writes them: an 8-byte little-endian header length, a JSON
 * header (`{name: {dtype, shape, data_offsets: [begin, end]}}`, offsets relative to the data
 * section, and an optional `__metadata__` of strings), then the tensors' raw little-endian bytes.
 *
 * A pre-trained model's file is far larger than any buffer we want to hold (a 0.5 B model is 2 GB
 * in fp32), so the reader checks the whole header when it opens the file, then reads one tensor's
 * bytes at a time at its offset, and the writer takes one tensor's values at a time. Weights are
 * read and written as F32, F16 or BF16 and held as fp32. Typed arrays use the host's byte order:
 * like checkpoint.ts, this assumes a little-endian host (x86, ARM).
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { ModelFolderError } from './config.js';

/** The dtypes weights are read and written in. */
export type WeightDtype = 'F32' | 'F16' | 'BF16';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['F32', 'F16', 'BF16'];

/**
 * Bytes per element of every dtype safetensors defines, so that the header of a file holding
 * other tensors besides weights (integer buffers, say) can still be checked in full.
 */
const ELEMENT_BYTES = new Map<unknown, number>([
  ['BOOL', 1],
  ['U8', 1],
  ['I8', 1],
  ['F8_E5M2', 1],
  ['F8_E4M3', 1],
  ['I16', 2],
  ['U16', 2],
  ['F16', 2],
  ['BF16', 2],
  ['I32', 4],
  ['U32', 4],
  ['F32', 4],
  ['I64', 8],
  ['U64', 8],
  ['F64', 8],
]);
/** The safetensors library's own limit: a larger header is a corrupt length, not a real header. */
const MAX_HEADER_BYTES = 100_000_000;
/** Reads go to the file in pieces of at most this many bytes (a single read is capped at 2 GiB). */
const READ_CHUNK = 64 * 1024 * 1024;
const FINGERPRINT_BLOCKS = 16;
const FINGERPRINT_BLOCK_BYTES = 4096;
const BROKEN = 'download the file again';

/** One tensor of a checked header. `begin` and `end` are byte positions in the file. */
export interface TensorInfo {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** A tensor's values, or a function that makes them when the writer gets to it (one tensor in memory at a time). */
export type TensorData = Float32Array | (() => Float32Array | Promise<Float32Array>);

export interface TensorEntry {
  shape: readonly number[];
  data: TensorData;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isCounts = (value: unknown): value is number[] => Array.isArray(value) && value.every(isCount);
export const elementCount = (shape: readonly number[]) => shape.reduce((product, dim) => product * dim, 1);

/**
 * The first bytes of a safetensors file for `header`: its length as a little-endian u64, then its
 * JSON, padded with spaces to a multiple of 8 as safetensors writers do, so that the data section
 * starts aligned. Shared with checkpoint.ts.
 */
export function encodeHeader(header: Record<string, unknown>): Uint8Array {
  const text = new TextEncoder().encode(JSON.stringify(header));
  const length = Math.ceil(text.length / 8) * 8;
  const out = new Uint8Array(8 + length).fill(0x20, 8 + text.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(length), true);
  out.set(text, 8);
  return out;
}

/** A safetensors file whose header has been checked, open for reading tensors one at a time. */
export class SafetensorsReader {
  readonly file: string;
  /** The file's size in bytes. */
  readonly size: number;
  /** The file's first bytes as on disk: the length prefix and the JSON header. */
  readonly header: Uint8Array;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly #handle: FileHandle;

  private constructor(
    file: string,
    handle: FileHandle,
    size: number,
    header: Uint8Array,
    metadata: Record<string, string>,
    tensors: Map<string, TensorInfo>,
  ) {
    this.file = file;
    this.#handle = handle;
    this.size = size;
    this.header = header;
    this.metadata = metadata;
    this.tensors = tensors;
  }

  /**
   * Opens `file` and checks its header: every entry's dtype, shape and offsets, sizes that match
   * the shapes, no two tensors sharing bytes, and a file long enough for all of them (a truncated
   * download is refused here, not halfway through loading). Only the header is read.
   */
  static async open(file: string): Promise<SafetensorsReader> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      const problem = missing ? 'does not exist' : `cannot be read (${(error as Error).message})`;
      throw new ModelFolderError(file, `${file} ${problem}; pass a complete model folder`, { cause: error });
    }
    try {
      const { size } = await handle.stat();
      const fail = (problem: string) => new ModelFolderError(file, `${file} ${problem}; ${BROKEN}`);
      if (size < 8) throw fail(`is cut short at ${size} bytes, before its header`);
      const prefix = await readAt(handle, file, new Uint8Array(8), 0);
      const length = new DataView(prefix.buffer).getBigUint64(0, true);
      if (length > BigInt(MAX_HEADER_BYTES))
        throw fail(`has a header length of ${length} bytes, over the 100 MB limit`);
      if (length > BigInt(size - 8))
        throw fail(`is cut short: its header should be ${length} bytes but ${size - 8} follow`);
      const header = new Uint8Array(8 + Number(length));
      header.set(prefix);
      await readAt(handle, file, header.subarray(8), 8);
      const { metadata, tensors } = parseHeader(header, size, fail);
      return new SafetensorsReader(file, handle, size, header, metadata, tensors);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** A tensor's values as fp32, read from its bytes alone (F32, F16 or BF16). */
  async readTensor(name: string): Promise<Float32Array> {
    const info = this.tensors.get(name);
    if (!info)
      throw new ModelFolderError(this.file, `${this.file} has no tensor ${name}; pass a complete model folder`);
    const { dtype, begin, end } = info;
    if (dtype === 'F32') {
      const values = new Float32Array((end - begin) / 4);
      await readAt(this.#handle, this.file, new Uint8Array(values.buffer), begin);
      return values;
    }
    if (dtype === 'F16' || dtype === 'BF16') {
      const bits = new Uint16Array((end - begin) / 2);
      await readAt(this.#handle, this.file, new Uint8Array(bits.buffer), begin);
      return dtype === 'F16' ? f16ToF32(bits) : bf16ToF32(bits);
    }
    throw new ModelFolderError(
      this.file,
      `${this.file} stores ${name} as ${dtype}; only F32, F16 and BF16 weights are read: pass an unquantised model`,
    );
  }

  /**
   * SHA-256 (hex) of the file's size, its header and 16 blocks of 4 KiB spread evenly over its
   * data (all of it when that is no more). The header alone tells apart shapes and dtypes but not
   * weights: a fine-tuned model and its base share every header byte; a few sampled blocks tell
   * them apart without reading a 2 GB file.
   */
  async fingerprint(): Promise<string> {
    const hash = createHash('sha256').update(`${this.size}\n`).update(this.header);
    const start = this.header.length;
    const span = this.size - start;
    if (span <= FINGERPRINT_BLOCKS * FINGERPRINT_BLOCK_BYTES) {
      hash.update(await readAt(this.#handle, this.file, new Uint8Array(span), start));
    } else {
      const stride = (span - FINGERPRINT_BLOCK_BYTES) / (FINGERPRINT_BLOCKS - 1);
      for (let k = 0; k < FINGERPRINT_BLOCKS; k++) {
        const at = start + Math.floor(k * stride);
        hash.update(await readAt(this.#handle, this.file, new Uint8Array(FINGERPRINT_BLOCK_BYTES), at));
      }
    }
    return hash.digest('hex');
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}

/** The checked entries of a whole header (`bytes`, length prefix included) of a file of `size` bytes. */
function parseHeader(
  bytes: Uint8Array,
  size: number,
  fail: (problem: string) => ModelFolderError,
): { metadata: Record<string, string>; tensors: Map<string, TensorInfo> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8)));
  } catch {
    throw fail('has a header that is not UTF-8 JSON');
  }
  if (!isRecord(header)) throw fail('has a header that is not a JSON object');
  const { __metadata__: metadata = {}, ...entries } = header;
  if (!isRecord(metadata) || !Object.values(metadata).every((value) => typeof value === 'string')) {
    throw fail('has a __metadata__ that is not an object of strings');
  }

  const start = bytes.length;
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(entries)) {
    const { dtype, shape, data_offsets: offsets } = isRecord(entry) ? entry : {};
    if (!isCounts(shape) || !isCounts(offsets) || offsets.length !== 2) {
      throw fail(`has no valid shape and data_offsets for tensor ${name}`);
    }
    const width = ELEMENT_BYTES.get(dtype);
    if (width === undefined)
      throw fail(`stores tensor ${name} in dtype ${JSON.stringify(dtype)}, which safetensors does not define`);
    const [begin = 0, end = 0] = offsets;
    if (end - begin !== elementCount(shape) * width) {
      throw fail(
        `has bytes ${begin}-${end} for tensor ${name}, not the ${elementCount(shape) * width} its ${dtype} shape [${shape}] takes`,
      );
    }
    tensors.set(name, { dtype: dtype as string, shape, begin: start + begin, end: start + end });
  }

  let last = start;
  let lastName = '';
  for (const [name, { begin, end }] of [...tensors].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end)) {
    if (begin < last) throw fail(`has tensors ${lastName} and ${name} sharing bytes`);
    [last, lastName] = [end, name];
  }
  if (last > size) throw fail(`is cut short: it has ${size - start} of its ${last - start} data bytes`);
  return { metadata: metadata as Record<string, string>, tensors };
}

/** Fills `target` with the file's bytes from `position`, in pieces; a file that ends first is truncated. */
async function readAt(handle: FileHandle, file: string, target: Uint8Array, position: number): Promise<Uint8Array> {
  for (let done = 0; done < target.length; ) {
    const { bytesRead } = await handle.read(target, done, Math.min(READ_CHUNK, target.length - done), position + done);
    if (bytesRead === 0) {
      throw new ModelFolderError(file, `${file} is cut short at ${position + done} bytes while reading; ${BROKEN}`);
    }
    done += bytesRead;
  }
  return target;
}

/**
 * Writes `tensors` to `file` in `dtype`, with `__metadata__` {format: 'pt'} as transformers does
 * and the tensors sorted by name as the safetensors library does. Each tensor's values are asked
 * for, converted and written in turn, so only one is in memory at a time. Returns the bytes of
 * tensor data written (what an index's `total_size` sums).
 */
export async function writeSafetensors(
  file: string,
  tensors: Iterable<[string, TensorEntry]>,
  dtype: WeightDtype,
): Promise<number> {
  const width = ELEMENT_BYTES.get(dtype) as number;
  const sorted = [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, { shape }] of sorted) {
    if (!isCounts(shape))
      throw new ModelFolderError(file, `cannot write ${file}: ${name} has shape ${JSON.stringify(shape)}`);
    const bytes = elementCount(shape) * width;
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(encodeHeader(header));
    for (const [name, { shape, data }] of sorted) {
      const values = typeof data === 'function' ? await data() : data;
      if (values.length !== elementCount(shape)) {
        throw new ModelFolderError(
          file,
          `cannot write ${file}: ${name} has ${values.length} values, not the ${elementCount(shape)} of shape [${shape}]`,
        );
      }
      const encoded = dtype === 'F32' ? values : dtype === 'F16' ? f32ToF16(values) : f32ToBf16(values);
      await handle.writeFile(new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength));
    }
  } finally {
    await handle.close();
  }
  return offset;
}

let halfTable: Float32Array | undefined;
/** Every fp16 bit pattern's value: zeros, subnormals (frac × 2^-24), normals, ±Infinity and NaN. */
function halfValues(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    halfTable[bits] =
      exponent === 0
        ? sign * fraction * 2 ** -24
        : exponent === 31
          ? fraction === 0
            ? sign * Infinity
            : Number.NaN
          : sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return halfTable;
}

/** fp16 bit patterns to fp32 values, exactly (every fp16 value is an fp32 value). */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const table = halfValues();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i] as number] as number;
  return out;
}

/** bf16 bit patterns to fp32 values, exactly: a bf16 is the upper half of an fp32. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = (bits[i] as number) << 16;
  return new Float32Array(out.buffer);
}

/**
 * fp32 values to fp16 bit patterns, rounded to nearest, ties to even, as numpy and PyTorch do:
 * too large to ±Infinity, too small to subnormals or ±0, NaN stays NaN.
 */
export function f32ToF16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < words.length; i++) out[i] = halfBits(words[i] as number);
  return out;
}

/** One fp32 bit pattern's fp16 bits (numpy's npy_floatbits_to_halfbits). */
function halfBits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exponent = f & 0x7f800000;
  if (exponent >= 0x47800000) {
    // NaN keeps a non-zero fraction so that it stays NaN; everything else overflows to Infinity.
    const fraction = f & 0x007fffff;
    return exponent === 0x7f800000 && fraction !== 0 ? sign | 0x7c00 | (fraction >>> 13 || 1) : sign | 0x7c00;
  }
  if (exponent <= 0x38000000) {
    if (exponent < 0x33000000) return sign;
    // A subnormal: the implicit bit made explicit, shifted by the exponent's shortfall; the bits
    // shifted out still count towards rounding.
    let fraction = (0x00800000 + (f & 0x007fffff)) >>> (113 - (exponent >>> 23));
    if ((fraction & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) fraction += 0x1000;
    return sign + (fraction >>> 13);
  }
  let fraction = f & 0x007fffff;
  if ((fraction & 0x3fff) !== 0x1000) fraction += 0x1000;
  // A carry out of the fraction raises the exponent, up to Infinity: the right result.
  return sign + ((exponent - 0x38000000) >>> 13) + (fraction >>> 13);
}

/** fp32 values to bf16 bit patterns, rounded to nearest, ties to even, as PyTorch does; NaN stays NaN. */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < words.length; i++) {
    const f = words[i] as number;
    out[i] = (f & 0x7fffffff) > 0x7f800000 ? (f >>> 16) | 0x40 : (f + 0x7fff + ((f >>> 16) & 1)) >>> 16;
  }
  return out;
}
