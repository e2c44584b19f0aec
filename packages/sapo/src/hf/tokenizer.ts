/**
 * A Hugging Face model folder's tokenizer behind the learner's `Tokenizer` interface:
 * `tokenizer.json` through `@huggingface/tokenizers` (pure JavaScript, no network) and prompts
 * through the model's chat template (`@huggingface/jinja`), so an instruct model sees exactly what
 * it was trained on, as transformers' `apply_chat_template` would give it.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as TokenizersJs } from '@huggingface/tokenizers';
import { SapoError } from '../errors.js';
import { type Tokenizer, TokenizerError } from '../tokenizer.js';

/**
 * A model folder's tokenizer files that cannot be used as they are. `file` is the path of the file
 * at fault. Codes: TOKENIZER_NOT_FOUND, TOKENIZER_UNREADABLE (not JSON, or not the file it should
 * be), TOKENIZER_UNSUPPORTED (a tokenizer or special token this library cannot use) and
 * TOKENIZER_TEMPLATE (the chat template does not parse or render).
 */
export class HfTokenizerError extends SapoError {
  readonly file: string;

  constructor(code: string, file: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.file = file;
  }
}

/** The parsed files of a tokenizer, as `HfTokenizer.fromFolder` reads them. */
export interface HfTokenizerFiles {
  /** `tokenizer.json`. */
  tokenizerJson: unknown;
  /** `tokenizer_config.json`: special tokens and the chat template. */
  tokenizerConfig: unknown;
  /** `generation_config.json`, when the folder has one: more stop ids (`eos_token_id`). */
  generationConfig?: unknown;
  /** `chat_template.jinja`, when the folder has one; recent transformers save the template there. */
  chatTemplate?: string;
}

type Json = Record<string, unknown>;

const FILES = {
  tokenizer: 'tokenizer.json',
  config: 'tokenizer_config.json',
  generation: 'generation_config.json',
  template: 'chat_template.jinja',
} as const;

/**
 * A Hugging Face tokenizer. Ids follow `tokenizer.json`; the special ids follow these rules, which
 * the `Tokenizer` interface leaves open:
 *
 * - `eos` is `tokenizer_config.json`'s `eos_token` (what a chat model ends its turn with), else
 *   the first of `generation_config.json`'s `eos_token_id`; `eosIds` lists every stop id of both
 *   files, `eos` first. Qwen2.5-Instruct stops at `<|im_end|>` and `<|endoftext|>`.
 * - `bos` is `bos_token`'s id, or -1 when the model has none (Qwen2) or its BOS is also a stop id
 *   (GPT-2 and SmolLM2 use `<|endoftext|>` for both). -1 is never a token.
 * - `pad` is only a filler for batch rows past their end (masked, so its value does not matter),
 *   but samplers exclude it, so it is never a stop id: `pad_token`'s id unless that is one
 *   (Qwen2.5 base pads with its EOS), else the first special token that is not, else `eos`.
 */
export class HfTokenizer implements Tokenizer {
  /** `hf-` and 16 hex digits of the SHA-256 of `tokenizer.json`'s JSON (whitespace does not count). */
  readonly id: string;
  /** Ids the tokenizer can produce: the model's `vocab_size` may be larger (padded embeddings). */
  readonly vocabSize: number;
  readonly pad: number;
  readonly bos: number;
  readonly eos: number;
  /** Every id that ends a completion, `eos` first. */
  readonly eosIds: readonly number[];
  readonly #tokenizer: TokenizersJs;
  readonly #template: Template | undefined;
  readonly #templateFile: string;
  readonly #specialTokens: Json;
  readonly #stop: ReadonlySet<number>;

  /**
   * Reads `dir`'s `tokenizer.json` and `tokenizer_config.json`, and its `generation_config.json`
   * and `chat_template.jinja` when present.
   */
  static async fromFolder(dir: string): Promise<HfTokenizer> {
    const [tokenizerJson, tokenizerConfig, generationConfig, chatTemplate] = await Promise.all([
      readJson(join(dir, FILES.tokenizer), true),
      readJson(join(dir, FILES.config), true),
      readJson(join(dir, FILES.generation), false),
      readText(join(dir, FILES.template)),
    ]);
    return new HfTokenizer(
      {
        tokenizerJson,
        tokenizerConfig,
        ...(generationConfig === undefined ? {} : { generationConfig }),
        ...(chatTemplate === undefined ? {} : { chatTemplate }),
      },
      dir,
    );
  }

  /** `dir` only names the files in error messages. */
  constructor(files: HfTokenizerFiles, dir = '') {
    const file = (name: string) => join(dir, name);
    const tokenizerJson = object(files.tokenizerJson, file(FILES.tokenizer));
    const config = object(files.tokenizerConfig, file(FILES.config));
    const generation =
      files.generationConfig === undefined ? {} : object(files.generationConfig, file(FILES.generation));
    try {
      this.#tokenizer = new TokenizersJs(tokenizerJson, config);
    } catch (cause) {
      throw new HfTokenizerError(
        'TOKENIZER_UNSUPPORTED',
        file(FILES.tokenizer),
        `${file(FILES.tokenizer)} cannot be loaded (${String(cause)}); use the tokenizer.json saved with the model by a recent transformers or tokenizers`,
        { cause },
      );
    }
    this.id = `hf-${createHash('sha256').update(JSON.stringify(tokenizerJson)).digest('hex').slice(0, 16)}`;
    let maxId = -1;
    for (const id of this.#tokenizer.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    const tokenId = (key: string): number | undefined => {
      const text = tokenText(config[key]);
      if (text === undefined) return undefined;
      const id = this.#tokenizer.token_to_id(text);
      if (id === undefined) {
        throw new HfTokenizerError(
          'TOKENIZER_UNSUPPORTED',
          file(FILES.config),
          `${file(FILES.config)} names ${key} ${JSON.stringify(text)}, which ${FILES.tokenizer} does not have; the two files are from different tokenizers`,
        );
      }
      return id;
    };
    const stopIds = [tokenId('eos_token'), ...ids(generation.eos_token_id, this.vocabSize, file(FILES.generation))];
    this.eosIds = [...new Set(stopIds.filter((id) => id !== undefined))];
    const eos = this.eosIds[0];
    if (eos === undefined) {
      throw new HfTokenizerError(
        'TOKENIZER_UNSUPPORTED',
        file(FILES.config),
        `${file(FILES.config)} has no eos_token (nor ${FILES.generation} an eos_token_id): without one a completion cannot end; add the model's eos_token`,
      );
    }
    this.eos = eos;
    this.#stop = new Set(this.eosIds);
    const bos = tokenId('bos_token');
    this.bos = bos === undefined || this.#stop.has(bos) ? -1 : bos;
    const specials = [...this.#tokenizer.get_added_tokens_decoder().values()].filter((token) => token.special);
    const pad = [tokenId('pad_token'), ...specials.map((token) => token.id)].find(
      (id) => id !== undefined && !this.#stop.has(id),
    );
    this.pad = pad ?? eos;

    this.#specialTokens = Object.fromEntries(
      ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'].flatMap((key) => {
        const text = tokenText(config[key]);
        return text === undefined ? [] : [[key, text]];
      }),
    );
    this.#templateFile = files.chatTemplate === undefined ? file(FILES.config) : file(FILES.template);
    const source = files.chatTemplate ?? templateSource(config.chat_template);
    try {
      this.#template = source === undefined ? undefined : new Template(source);
    } catch (cause) {
      throw this.#templateError(cause);
    }
    // Render once now, so that a template that cannot render fails at load, not mid-training.
    if (this.#template !== undefined) this.#render('');
  }

  encodePrompt(prompt: string): number[] {
    checkText(prompt, 'prompt');
    if (this.#template === undefined) return this.#tokenizer.encode(prompt).ids;
    // The rendered template already holds its special tokens (transformers encodes it the same way).
    return this.#tokenizer.encode(this.#render(prompt), { add_special_tokens: false }).ids;
  }

  encodeCompletion(completion: string, options: { eos?: boolean } = {}): number[] {
    checkText(completion, 'completion');
    const ids = this.#tokenizer.encode(completion, { add_special_tokens: false }).ids;
    return options.eos === false ? ids : [...ids, this.eos];
  }

  /**
   * Text up to the first stop id, without special tokens. Ids the tokenizer does not have (a
   * padded embedding's spare rows) are dropped. Spaces are kept exactly as generated, whatever
   * `clean_up_tokenization_spaces` says: that clean-up deletes real spaces (`1 , 2` becomes
   * `1, 2`), and text shared with peers must re-encode to what was sampled.
   */
  decode(ids: readonly number[]): string {
    const end = ids.findIndex((id) => this.#stop.has(id));
    const kept = (end < 0 ? ids : ids.slice(0, end)).filter(
      (id) => Number.isInteger(id) && id >= 0 && this.#tokenizer.id_to_token(id) !== undefined,
    );
    if (kept.length === 0) return '';
    return this.#tokenizer.decode(kept, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  #render(prompt: string): string {
    try {
      return (this.#template as Template).render({
        ...this.#specialTokens,
        messages: [{ role: 'user', content: prompt }],
        add_generation_prompt: true,
      });
    } catch (cause) {
      throw this.#templateError(cause);
    }
  }

  #templateError(cause: unknown): HfTokenizerError {
    return new HfTokenizerError(
      'TOKENIZER_TEMPLATE',
      this.#templateFile,
      `the chat template in ${this.#templateFile} cannot render a user message (${String(cause)}); use the file saved with the model, or remove chat_template to prompt with plain text`,
      { cause },
    );
  }
}

/** A special token as tokenizer_config.json writes it: a string, or an AddedToken object. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as Json).content === 'string') {
    return (value as Json).content as string;
  }
  return undefined;
}

/** `chat_template`: one template, or (older files) a list of named ones, of which 'default' is used. */
function templateSource(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((entry) => (entry as Json | null)?.name === 'default') as Json | undefined;
    if (typeof named?.template === 'string') return named.template;
  }
  return undefined;
}

/** `eos_token_id`: absent, one id, or a list of them. */
function ids(value: unknown, vocabSize: number, file: string): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((id) => Number.isInteger(id) && id >= 0 && id < vocabSize)) {
    throw new HfTokenizerError(
      'TOKENIZER_UNSUPPORTED',
      file,
      `${file} has eos_token_id ${JSON.stringify(value)}, not ids of the tokenizer's ${vocabSize}; the folder mixes files of different models`,
    );
  }
  return list as number[];
}

function object(value: unknown, file: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HfTokenizerError(
      'TOKENIZER_UNREADABLE',
      file,
      `${file} is not a JSON object; use the file saved with the model`,
    );
  }
  return value as Json;
}

async function readJson(file: string, required: boolean): Promise<unknown> {
  const text = await readText(file);
  if (text === undefined) {
    if (!required) return undefined;
    throw new HfTokenizerError(
      'TOKENIZER_NOT_FOUND',
      file,
      `${file} not found: a model folder needs the tokenizer files saved with the model (tokenizer.json and tokenizer_config.json)`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new HfTokenizerError(
      'TOKENIZER_UNREADABLE',
      file,
      `${file} is not valid JSON (${String(cause)}); the download may be incomplete, fetch it again`,
      { cause },
    );
  }
}

/** The file's text, or undefined when there is no such file. */
async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HfTokenizerError('TOKENIZER_UNREADABLE', file, `${file} cannot be read (${String(cause)})`, { cause });
  }
}

function checkText(text: string, what: string): void {
  if (typeof text !== 'string') throw new TokenizerError(`the ${what} must be a string, got ${typeof text}`);
  if (!text.isWellFormed()) {
    throw new TokenizerError(
      `the ${what} contains a lone UTF-16 surrogate, which has no UTF-8 bytes; drop or repair it`,
    );
  }
}
