import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ByteTokenizer,
  CheckpointError,
  learnerCheckpoint,
  Policy,
  type PolicyConfig,
  SapoLearner,
  saveCheckpoint,
  selectBackend,
} from '@swarm-node/sapo';
import { CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EvalReport, evalCommand } from '../src/commands/eval.js';

const TINY: PolicyConfig = { vocabSize: 259, contextLength: 48, layers: 1, dModel: 16, heads: 2, mlpRatio: 2 };
const FAST = ['--backend', 'cpu', '--tasks', '1', '--samples', '2', '--max-new-tokens', '4', '--families', 'reverse'];

let dir: string;
let checkpoint: string;

async function save(config: PolicyConfig, into: string): Promise<string> {
  const learner = new SapoLearner(Policy.create(config, { seed: 5 }), new ByteTokenizer());
  const state = await learnerCheckpoint(learner, { note: 'eval-command test' });
  const file = await saveCheckpoint(into, { ...state, step: 3 });
  state.release();
  learner.dispose();
  learner.policy.dispose();
  return file;
}

/** Runs `swarm-node eval ...args` in this process; resolves to what it printed, or rejects with its error. */
async function run(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...parts: unknown[]) => void out.push(parts.join(' ')));
  const command = evalCommand()
    .exitOverride()
    .configureOutput({ writeOut: (text) => void out.push(text), writeErr: (text) => void err.push(text) });
  try {
    await command.parseAsync(args, { from: 'user' });
    return { stdout: out.join('\n'), stderr: err.join('') };
  } finally {
    log.mockRestore();
  }
}

beforeAll(async () => {
  await selectBackend({ backend: 'cpu' });
  dir = await mkdtemp(join(tmpdir(), 'swarm-node-eval-'));
  checkpoint = await save(TINY, join(dir, 'good'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('swarm-node eval', () => {
  it('prints the checkpoint, its step and size, the backend, and the pass-rate table', async () => {
    const { stdout } = await run('--checkpoint', checkpoint, ...FAST);
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(
      /^checkpoint .*step-0000000003\.safetensors: step 3, \d+ parameters, backend cpu \(pure JS\)$/,
    );
    expect(lines[1]).toBe('1 tasks x 2 samples per cell, at most 4 new tokens, temperature 1, seed 2026');
    expect(stdout).toContain('| family | d1 | d2 | d3 | d4 | d5 |\n|---|---|---|---|---|---|\n| reverse | ');
    expect(stdout).toMatch(/^\| reverse( \| \d+ % \(\d+ %\)){5} \|$/m);
    expect(stdout).toMatch(/pass rate \(share of groups with signal\); \d+ s$/);
  });

  it('prints one JSON document with --json, the same for the same seed', async () => {
    const first = JSON.parse(
      (await run('--checkpoint', checkpoint, ...FAST, '--json', '--seed', '9')).stdout,
    ) as EvalReport;
    expect(first).toMatchObject({
      checkpoint,
      step: 3,
      tasks: 1,
      samples: 2,
      maxNewTokens: 4,
      seed: 9,
      temperature: 1,
    });
    expect(first.backend.name).toBe('cpu');
    expect(first.parameters).toBeGreaterThan(0);
    expect(first.cells.map((cell) => [cell.family, cell.difficulty])).toEqual(
      [1, 2, 3, 4, 5].map((d) => ['reverse', d]),
    );
    const again = JSON.parse(
      (await run('--checkpoint', checkpoint, ...FAST, '--json', '--seed', '9')).stdout,
    ) as EvalReport;
    expect(again.cells).toEqual(first.cells);
  });

  it('refuses a truncated checkpoint with a CheckpointError, never evaluating a fresh model', async () => {
    const truncated = join(dir, 'truncated.safetensors');
    const bytes = await readFile(checkpoint);
    await writeFile(truncated, bytes.subarray(0, bytes.length - 100));
    const log = vi.spyOn(console, 'log');
    const error = await run('--checkpoint', truncated, ...FAST).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error).toMatchObject({ code: 'CHECKPOINT_TRUNCATED', file: truncated });
    expect((error as Error).message).toMatch(/is cut short.*refusing to start from a fresh model/);
    expect(log).not.toHaveBeenCalled();
    log.mockRestore();
    await expect(run('--checkpoint', join(dir, 'missing.safetensors'), ...FAST)).rejects.toMatchObject({
      code: 'CHECKPOINT_NOT_FOUND',
    });
  });

  it('refuses a checkpoint whose model does not fit the tokenizer', async () => {
    const policy = Policy.create({ ...TINY, vocabSize: 300 }, { seed: 5 });
    const other = await saveCheckpoint(join(dir, 'other'), {
      step: 0,
      config: { ...policy.config },
      tokenizer: 'bytes-v1',
      weights: policy.params,
      optimizer: new Map(),
    });
    policy.dispose();
    await expect(run('--checkpoint', other, ...FAST)).rejects.toMatchObject({
      name: 'CheckpointError',
      code: 'CHECKPOINT_MISMATCH',
      message: expect.stringMatching(/vocabulary has 300 ids, the tokenizer 259/),
    });
  });

  it('refuses bad flags as usage errors that name what is valid', async () => {
    const usage = async (args: string[], message: RegExp) => {
      const error = await run(...args).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CommanderError);
      expect((error as CommanderError).message).toMatch(message);
    };
    await usage(['--tasks', '0'], /--tasks <n>' argument '0' is invalid\. tasks must be a positive integer/);
    await usage(['--samples', 'many'], /samples must be a positive integer/);
    await usage(['--max-new-tokens', '2.5'], /max-new-tokens must be a positive integer/);
    await usage(['--seed', '-1'], /seed must be an integer from 0 to 4294967295/);
    await usage(['--families', 'reverse,nope'], /unknown task family "nope"; valid families: reverse, sort, count/);
    await usage(
      ['--backend', 'tpu'],
      /unknown backend "tpu"; valid backends: auto, tensorflow-gpu, webgpu, tensorflow, wasm, cpu/,
    );
    await usage(['--seed', '4294967295', '--tasks', '2'], /task seeds within 0 to 4294967295/);
  });

  it('shows its defaults in --help', async () => {
    const error = await run('--help').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'commander.helpDisplayed' });
  });
});
