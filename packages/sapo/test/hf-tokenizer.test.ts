import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as TokenizersJs } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SapoError } from '../src/errors.js';
import { HfTokenizer, HfTokenizerError, type HfTokenizerFiles } from '../src/hf/tokenizer.js';
import { TokenizerError } from '../src/tokenizer.js';
import { buildTinyTokenizer } from './fixtures/tiny-tokenizer.js';

const QWEN = buildTinyTokenizer();
const LLAMA = buildTinyTokenizer({ variant: 'llama' });
const SYSTEM = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.';
const TEXTS = [
  'What is 12 + 345? The answer is 357.',
  "The careful student's answer,\n\n  it's héllo 🙂!",
  '  spaces , before . punctuation\r\n\ttabs  ',
  '世界 \u00e9 \ufeff',
  '',
];

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'hf-tokenizer-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes a model folder's tokenizer files; `undefined` leaves a file out. */
async function folder(name: string, files: Record<string, unknown>): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    if (content !== undefined) {
      await writeFile(join(dir, file), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
    }
  }
  return dir;
}

function qwenFolder(name: string, extra: Record<string, unknown> = {}): Promise<string> {
  return folder(name, {
    'tokenizer.json': QWEN.tokenizerJson,
    'tokenizer_config.json': QWEN.tokenizerConfig,
    ...extra,
  });
}

/** The ids of a special token and of plain text, straight from the library. */
function reference(files: HfTokenizerFiles) {
  const tokenizer = new TokenizersJs(files.tokenizerJson as object, files.tokenizerConfig as object);
  return {
    special: (token: string) => tokenizer.token_to_id(token) as number,
    text: (text: string) => tokenizer.encode(text, { add_special_tokens: false }).ids,
  };
}

describe('the tiny tokenizer fixture', () => {
  it('is a byte-level BPE whose merges really apply', () => {
    const model = QWEN.tokenizerJson.model as { vocab: Record<string, number>; merges: string[] };
    expect(model.merges).toHaveLength(300);
    expect(Object.keys(model.vocab)).toHaveLength(256 + 300);
    const tokenizer = new HfTokenizer(QWEN);
    const text = 'The careful student checks the answer.';
    expect(tokenizer.encodeCompletion(text, { eos: false }).length).toBeLessThan(text.length / 3);
  });

  it('is deterministic', () => {
    expect(buildTinyTokenizer()).toEqual(QWEN);
    expect(new HfTokenizer(buildTinyTokenizer()).id).toBe(new HfTokenizer(QWEN).id);
  });

  // Token strings the Rust `tokenizers` 0.22.2 (npm @anush008/tokenizers 0.6.0) gave for TEXTS[0]
  // and TEXTS[1], special tokens added: an implementation independent of @huggingface/tokenizers.
  // Qwen2 splits numbers into digits, Llama 3 into groups of up to three.
  const SECOND = ['The', 'Ġcareful', 'Ġstudent', "'s", 'Ġanswer', ',', 'Ċ', 'Ċ', 'Ġ', 'Ġit', "'s", 'Ġ', 'h', 'Ã', '©'];
  const RUST = {
    qwen2: [
      ['What', 'Ġis', 'Ġ', '1', '2', 'Ġ+', 'Ġ', '3', '4', '5', '?', 'ĠThe', 'Ġanswer', 'Ġis', 'Ġ', '3', '5', '7', '.'],
      [...SECOND, 'l', 'l', 'o', 'Ġ', 'ð', 'Ł', 'Ļ', 'Ĥ', '!'],
    ],
    llama: [
      [
        '<|begin_of_text|>',
        'What',
        'Ġis',
        'Ġ',
        '12',
        'Ġ+',
        'Ġ',
        '3',
        '4',
        '5',
        '?',
        'ĠThe',
        'Ġanswer',
        'Ġis',
        'Ġ',
        '3',
        '5',
        '7',
        '.',
      ],
      ['<|begin_of_text|>', ...SECOND, 'l', 'l', 'o', 'Ġ', 'ð', 'Ł', 'Ļ', 'Ĥ', '!'],
    ],
  };

  it.each(['qwen2', 'llama'] as const)('encodes as the Rust tokenizers does (%s)', (variant) => {
    const files = variant === 'qwen2' ? QWEN : LLAMA;
    const tokenizer = new HfTokenizer(files);
    const names = new TokenizersJs(files.tokenizerJson, files.tokenizerConfig);
    // The Llama variant has no chat template, so its prompt is the text with special tokens added.
    const encode = (text: string) =>
      variant === 'qwen2' ? tokenizer.encodeCompletion(text, { eos: false }) : tokenizer.encodePrompt(text);
    for (const [i, tokens] of RUST[variant].entries()) {
      expect(encode(TEXTS[i] as string).map((id) => names.id_to_token(id))).toEqual(tokens);
    }
  });
});

describe('HfTokenizer', () => {
  it('loads a folder and names the tokenizer by its content', async () => {
    const tokenizer = await HfTokenizer.fromFolder(await qwenFolder('load'));
    expect(tokenizer.id).toMatch(/^hf-[0-9a-f]{16}$/);
    // Parsed objects give the same id as the file: whitespace does not count.
    expect(new HfTokenizer(QWEN).id).toBe(tokenizer.id);
    expect(new HfTokenizer(LLAMA).id).not.toBe(tokenizer.id);
    // 256 bytes, 300 merges, 3 special tokens.
    expect(tokenizer.vocabSize).toBe(559);
  });

  it.each(TEXTS)('round-trips %j', (text) => {
    for (const files of [QWEN, LLAMA]) {
      const tokenizer = new HfTokenizer(files);
      const ids = tokenizer.encodeCompletion(text);
      expect(ids.at(-1)).toBe(tokenizer.eos);
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize)).toBe(true);
      expect(tokenizer.decode(ids)).toBe(text);
      expect(tokenizer.encodeCompletion(text, { eos: false })).toEqual(ids.slice(0, -1));
    }
  });

  it('normalises as the model does: Qwen2 to NFC, Llama 3 not at all', () => {
    const decomposed = 'cafe\u0301';
    const roundTrip = (files: typeof QWEN) => {
      const tokenizer = new HfTokenizer(files);
      return tokenizer.decode(tokenizer.encodeCompletion(decomposed));
    };
    expect(roundTrip(QWEN)).toBe('caf\u00e9');
    expect(roundTrip(LLAMA)).toBe(decomposed);
  });

  it("renders Qwen2.5's chat template into ChatML, with its special tokens as single ids", async () => {
    const tokenizer = await HfTokenizer.fromFolder(await qwenFolder('chat'));
    const { special, text } = reference(QWEN);
    const [start, end] = [special('<|im_start|>'), special('<|im_end|>')];
    const prompt = 'What is 2 + 3?';
    expect(tokenizer.encodePrompt(prompt)).toEqual([
      start,
      ...text(`system\n${SYSTEM}`),
      end,
      ...text('\n'),
      start,
      ...text(`user\n${prompt}`),
      end,
      ...text('\n'),
      start,
      ...text('assistant\n'),
    ]);
    const rendered = new TokenizersJs(QWEN.tokenizerJson, QWEN.tokenizerConfig).decode(tokenizer.encodePrompt(prompt));
    expect(rendered).toBe(
      `<|im_start|>system\n${SYSTEM}<|im_end|>\n<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n`,
    );
  });

  it('prompts a model without a chat template with BOS and the text', () => {
    const tokenizer = new HfTokenizer(LLAMA);
    const { special, text } = reference(LLAMA);
    expect(tokenizer.bos).toBe(special('<|begin_of_text|>'));
    expect(tokenizer.eos).toBe(special('<|end_of_text|>'));
    expect(tokenizer.encodePrompt('What is 2 + 3?')).toEqual([tokenizer.bos, ...text('What is 2 + 3?')]);
  });

  it('reads the special ids from tokenizer_config.json and generation_config.json', async () => {
    const { special } = reference(QWEN);
    const [text, start, end] = [special('<|endoftext|>'), special('<|im_start|>'), special('<|im_end|>')];

    const alone = await HfTokenizer.fromFolder(await qwenFolder('special-alone'));
    expect([alone.eos, alone.eosIds, alone.bos, alone.pad]).toEqual([end, [end], -1, text]);

    // Qwen2.5-Instruct's generation_config.json: both ids stop; the pad is then another token.
    const list = await HfTokenizer.fromFolder(
      await qwenFolder('special-list', { 'generation_config.json': { bos_token_id: text, eos_token_id: [end, text] } }),
    );
    expect([list.eos, list.eosIds, list.bos, list.pad]).toEqual([end, [end, text], -1, start]);

    const one = await HfTokenizer.fromFolder(
      await qwenFolder('special-one', { 'generation_config.json': { eos_token_id: text } }),
    );
    expect(one.eosIds).toEqual([end, text]);

    // Qwen2.5 base pads with its EOS; SmolLM2 and GPT-2 use it as BOS too.
    const base = new HfTokenizer({
      ...QWEN,
      tokenizerConfig: { ...QWEN.tokenizerConfig, eos_token: '<|endoftext|>', bos_token: '<|endoftext|>' },
    });
    expect([base.eos, base.eosIds, base.bos, base.pad]).toEqual([text, [text], -1, start]);

    // AddedToken objects, as older tokenizer_config.json files write special tokens.
    const objects = new HfTokenizer({
      ...LLAMA,
      tokenizerConfig: { ...LLAMA.tokenizerConfig, eos_token: { __type: 'AddedToken', content: '<|end_of_text|>' } },
    });
    expect(objects.eos).toBe(new HfTokenizer(LLAMA).eos);
  });

  it('decodes up to the first stop id, without special tokens or ids it does not have', () => {
    const tokenizer = new HfTokenizer({ ...QWEN, generationConfig: { eos_token_id: [558, 556] } });
    const { special, text } = reference(QWEN);
    const answer = text('The answer is 5.');
    expect(tokenizer.decode([...answer, special('<|im_end|>'), ...text(' and more')])).toBe('The answer is 5.');
    expect(tokenizer.decode([...answer, special('<|endoftext|>'), ...text(' and more')])).toBe('The answer is 5.');
    expect(tokenizer.decode([special('<|im_start|>'), ...answer, tokenizer.vocabSize, 10_000, -1, 1.5])).toBe(
      'The answer is 5.',
    );
    expect(tokenizer.decode([])).toBe('');
    expect(tokenizer.decode([special('<|im_end|>')])).toBe('');
    // A sampled id sequence need not be valid UTF-8: half an emoji decodes to U+FFFD.
    expect(tokenizer.decode(tokenizer.encodeCompletion('🙂', { eos: false }).slice(0, 2))).toBe('\ufffd');
  });

  it('refuses text with a lone surrogate', () => {
    for (const tokenizer of [new HfTokenizer(QWEN), new HfTokenizer(LLAMA)]) {
      expect(() => tokenizer.encodePrompt('a\ud800b')).toThrow(TokenizerError);
      expect(() => tokenizer.encodeCompletion('a\udc00')).toThrow(/lone UTF-16 surrogate/);
    }
  });

  it('uses chat_template.jinja over the template in tokenizer_config.json', async () => {
    const template =
      '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';
    const tokenizer = await HfTokenizer.fromFolder(await qwenFolder('jinja', { 'chat_template.jinja': template }));
    const { special, text } = reference(QWEN);
    expect(tokenizer.encodePrompt('hi')).toEqual([
      special('<|im_start|>'),
      ...text('user\nhi'),
      special('<|im_end|>'),
      ...text('\n'),
      special('<|im_start|>'),
      ...text('assistant\n'),
    ]);
  });
});

describe('HfTokenizer errors', () => {
  async function failure(files: Record<string, unknown>): Promise<HfTokenizerError> {
    const dir = await folder(`bad-${Math.random().toString(36).slice(2)}`, files);
    const error = await HfTokenizer.fromFolder(dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(HfTokenizerError);
    expect(error).toBeInstanceOf(SapoError);
    return error as HfTokenizerError;
  }

  it('names a missing tokenizer.json or tokenizer_config.json', async () => {
    const noTokenizer = await failure({ 'tokenizer_config.json': QWEN.tokenizerConfig });
    expect(noTokenizer.code).toBe('TOKENIZER_NOT_FOUND');
    expect(noTokenizer.file).toMatch(/tokenizer\.json$/);
    expect(noTokenizer.message).toContain(noTokenizer.file);

    const noConfig = await failure({ 'tokenizer.json': QWEN.tokenizerJson });
    expect(noConfig.code).toBe('TOKENIZER_NOT_FOUND');
    expect(noConfig.file).toMatch(/tokenizer_config\.json$/);
  });

  it('names a file that is not JSON, or not an object', async () => {
    const truncated = await failure({
      'tokenizer.json': JSON.stringify(QWEN.tokenizerJson).slice(0, 1000),
      'tokenizer_config.json': QWEN.tokenizerConfig,
    });
    expect([truncated.code, truncated.message]).toEqual([
      'TOKENIZER_UNREADABLE',
      expect.stringMatching(/fetch it again/),
    ]);
    expect(truncated.file).toMatch(/tokenizer\.json$/);

    const list = await failure({ 'tokenizer.json': QWEN.tokenizerJson, 'tokenizer_config.json': [] });
    expect([list.code, list.file]).toEqual(['TOKENIZER_UNREADABLE', expect.stringMatching(/tokenizer_config\.json$/)]);

    const generation = await failure({ ...files(QWEN), 'generation_config.json': '{"eos_token_id": ' });
    expect([generation.code, generation.file]).toEqual([
      'TOKENIZER_UNREADABLE',
      expect.stringMatching(/generation_config\.json$/),
    ]);
  });

  it('refuses a tokenizer it cannot run', async () => {
    const error = await failure({
      ...files(QWEN),
      'tokenizer.json': { ...QWEN.tokenizerJson, model: { type: 'Mystery' } },
    });
    expect([error.code, error.file]).toEqual(['TOKENIZER_UNSUPPORTED', expect.stringMatching(/tokenizer\.json$/)]);
  });

  it('refuses special tokens that do not belong to the tokenizer', async () => {
    const foreign = await failure({
      ...files(QWEN),
      'tokenizer_config.json': { ...QWEN.tokenizerConfig, eos_token: '</s>' },
    });
    expect([foreign.code, foreign.message]).toEqual(['TOKENIZER_UNSUPPORTED', expect.stringContaining('"</s>"')]);

    const none = await failure({
      ...files(QWEN),
      'tokenizer_config.json': { ...QWEN.tokenizerConfig, eos_token: null },
    });
    expect([none.code, none.message]).toEqual(['TOKENIZER_UNSUPPORTED', expect.stringContaining('no eos_token')]);

    const outOfRange = await failure({ ...files(QWEN), 'generation_config.json': { eos_token_id: [558, 151645] } });
    expect([outOfRange.code, outOfRange.file]).toEqual([
      'TOKENIZER_UNSUPPORTED',
      expect.stringMatching(/generation_config\.json$/),
    ]);
  });

  it('refuses, at load, a chat template that does not parse or render', async () => {
    const syntax = await failure({
      ...files(QWEN),
      'tokenizer_config.json': { ...QWEN.tokenizerConfig, chat_template: '{% for m in messages %}{{ m.content }' },
    });
    expect([syntax.code, syntax.file]).toEqual([
      'TOKENIZER_TEMPLATE',
      expect.stringMatching(/tokenizer_config\.json$/),
    ]);

    const raising = await failure({
      ...files(QWEN),
      'chat_template.jinja': "{{ raise_exception('Conversation roles must alternate') }}",
    });
    expect([raising.code, raising.file]).toEqual([
      'TOKENIZER_TEMPLATE',
      expect.stringMatching(/chat_template\.jinja$/),
    ]);
    expect(raising.message).toContain('Conversation roles must alternate');
  });
});

function files(tokenizer: typeof QWEN): Record<string, unknown> {
  return { 'tokenizer.json': tokenizer.tokenizerJson, 'tokenizer_config.json': tokenizer.tokenizerConfig };
}
