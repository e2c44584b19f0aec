/**
 * Tokenizers turn a prompt and a completion into token ids and back. The learner re-tokenizes
 * every peer's text with its own tokenizer (peers' models may differ), so this is the only
 * place where text meets the model.
 */
import { SapoError } from './errors.js';

export interface Tokenizer {
  /** Stored in checkpoints; a checkpoint only loads with the tokenizer it was trained with. */
  readonly id: string;
  /** Ids it produces: 0 to vocabSize − 1. A model's vocabulary may be larger (padded embeddings), never smaller. */
  readonly vocabSize: number;
  /** A filler for masked batch positions; may equal a real id (e.g. EOS), so samplers never exclude it by id alone. */
  readonly pad: number;
  /** The id a prompt starts with, or -1 when the model has none (Qwen2). */
  readonly bos: number;
  /** The end-of-sequence id appended to finished completions. */
  readonly eos: number;
  /** Every id that ends a completion (EOS first), where there are several (chat models' end-of-turn). Default [eos]. */
  readonly eosIds?: readonly number[];
  /** The ids a completion is generated after: BOS, the prompt, and the prompt/answer separator. */
  encodePrompt(prompt: string): number[];
  /**
   * The completion's ids, ending with EOS unless `eos` is false (default true): the learner drops
   * it for text whose sampler stopped at its token limit, not at EOS.
   */
  encodeCompletion(completion: string, options?: { eos?: boolean }): number[];
  /** Text of generated ids; stops at EOS and skips special ids. */
  decode(ids: readonly number[]): string;
}

/** Text the tokenizer cannot encode without changing it (code UNENCODABLE_TEXT). */
export class TokenizerError extends SapoError {
  constructor(message: string) {
    super('UNENCODABLE_TEXT', message);
  }
}

const NEWLINE = 10;
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/**
 * UTF-8 bytes (ids 0-255) plus PAD, BOS and EOS (256-258). A prompt is `BOS prompt \n`, a
 * completion `completion EOS` (or without EOS when it did not finish). Text must be well-formed Unicode: a lone surrogate has no UTF-8
 * bytes (TextEncoder would silently turn it into U+FFFD), so it is refused instead.
 */
export class ByteTokenizer implements Tokenizer {
  readonly id = 'bytes-v1';
  readonly vocabSize = 259;
  readonly pad = 256;
  readonly bos = 257;
  readonly eos = 258;

  encodePrompt(prompt: string): number[] {
    return [this.bos, ...bytes(prompt, 'prompt'), NEWLINE];
  }

  encodeCompletion(completion: string, options: { eos?: boolean } = {}): number[] {
    const ids = [...bytes(completion, 'completion')];
    return options.eos === false ? ids : [...ids, this.eos];
  }

  decode(ids: readonly number[]): string {
    const end = ids.indexOf(this.eos);
    const kept = (end < 0 ? ids : ids.slice(0, end)).filter((id) => id >= 0 && id < 256);
    // Sampled bytes need not be valid UTF-8; undecodable sequences become U+FFFD.
    return decoder.decode(Uint8Array.from(kept));
  }
}

function bytes(text: string, what: string): Uint8Array {
  if (typeof text !== 'string') throw new TokenizerError(`the ${what} must be a string, got ${typeof text}`);
  if (!text.isWellFormed()) {
    throw new TokenizerError(
      `the ${what} contains a lone UTF-16 surrogate, which has no UTF-8 bytes; drop or repair it`,
    );
  }
  return encoder.encode(text);
}
