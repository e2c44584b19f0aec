import { evaluatePassRates, formatPassRateTable, PASS_RATE_DEFAULTS, type PassRateCell } from '@swarm-node/roles';
import {
  BACKEND_NAMES,
  type BackendInfo,
  type BackendName,
  ByteTokenizer,
  type CausalLM,
  CheckpointError,
  describeBackend,
  EMBEDDED_MODEL_PATH,
  loadCheckpoint,
  Policy,
  type PolicyConfig,
  parseBackendName,
  selectBackend,
  type Tokenizer,
  UnknownBackendError,
} from '@swarm-node/sapo';
import { familyNames, getFamily, MAX_SEED } from '@swarm-node/tasks';
import { Command, InvalidArgumentError, Option } from 'commander';
import { integer } from '../config.js';
import { openModelFolderLearner } from './model-folder.js';

function familyList(value: string): string[] {
  const names = value
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (names.length === 0) throw new InvalidArgumentError(`name at least one family: ${familyNames().join(', ')}.`);
  const unknown = names.filter((name) => !familyNames().includes(name));
  if (unknown.length > 0) {
    throw new InvalidArgumentError(
      `unknown task famil${unknown.length === 1 ? 'y' : 'ies'} ${unknown.map((n) => JSON.stringify(n)).join(', ')}; valid families: ${familyNames().join(', ')}.`,
    );
  }
  return [...new Set(names)];
}

function backendName(value: string): BackendName | 'auto' {
  try {
    return parseBackendName(value);
  } catch (error) {
    if (error instanceof UnknownBackendError) throw new InvalidArgumentError(`${error.message}.`);
    throw error;
  }
}

interface EvalOptions {
  checkpoint: string;
  model?: string;
  tasks: number;
  samples: number;
  maxNewTokens: number;
  seed: number;
  backend: BackendName | 'auto';
  families?: string[];
  json: boolean;
}

/** What `swarm-node eval --json` prints. */
export interface EvalReport {
  /** The checkpoint evaluated; null for a model folder's base without adapters. */
  checkpoint: string | null;
  /** The Hugging Face model folder (--model), or null for the embedded model. */
  model: string | null;
  step: number;
  /** The policy's trainable parameters: the whole embedded model, or a folder's LoRA adapters. */
  parameters: number;
  backend: BackendInfo;
  tasks: number;
  samples: number;
  maxNewTokens: number;
  seed: number;
  temperature: 1;
  cells: PassRateCell[];
  seconds: number;
}

/** A policy to evaluate, with the tokenizer its prompts go through. */
interface Evaluated {
  policy: CausalLM;
  tokenizer: Tokenizer;
  step: number;
  release(): void;
}

/**
 * The embedded model's policy in a checkpoint file. A missing, truncated, corrupt or mismatched
 * file throws a CheckpointError; it never falls back to a fresh model.
 */
async function embeddedPolicy(file: string): Promise<Evaluated> {
  const tokenizer = new ByteTokenizer();
  const checkpoint = await loadCheckpoint(file);
  try {
    if (checkpoint.config.kind === 'lora') {
      throw new CheckpointError(
        'CHECKPOINT_MISMATCH',
        file,
        `${file} holds LoRA adapters of a model folder (${String(checkpoint.config.base)}): pass that folder as --model`,
      );
    }
    if (checkpoint.tokenizer !== tokenizer.id)
      throw new RangeError(`it was trained with tokenizer "${checkpoint.tokenizer}"`);
    const config = checkpoint.config as unknown as PolicyConfig;
    if (config.vocabSize !== tokenizer.vocabSize) {
      throw new RangeError(`its vocabulary has ${String(config.vocabSize)} ids, the tokenizer ${tokenizer.vocabSize}`);
    }
    const policy = new Policy(config, checkpoint.weights);
    return { policy, tokenizer, step: checkpoint.step, release: () => policy.dispose() };
  } catch (error) {
    if (error instanceof CheckpointError) throw error;
    throw new CheckpointError(
      'CHECKPOINT_MISMATCH',
      file,
      `checkpoint ${file} does not hold a policy model for this tokenizer (${(error as Error).message}); pass a different checkpoint`,
      { cause: error },
    );
  } finally {
    // The policy copied the weights into variables.
    for (const tensor of [...checkpoint.weights.values(), ...checkpoint.optimizer.values()]) tensor.dispose();
  }
}

/** A model folder's base, with a node's adapters from `checkpoint` when given. */
async function folderPolicy(model: string, checkpoint: string | null, backend: BackendInfo): Promise<Evaluated> {
  const { learner, policy } = await openModelFolderLearner(model, checkpoint, backend);
  return {
    policy,
    tokenizer: learner.tokenizer,
    step: learner.steps,
    release: () => {
      learner.dispose();
      policy.dispose();
    },
  };
}

export function evalCommand(): Command {
  return new Command('eval')
    .description(
      "measure a checkpoint's pass rate per task family and difficulty, and the share of groups with signal (neither all right nor all wrong)",
    )
    .addOption(
      new Option('-c, --checkpoint <file>', 'checkpoint file to evaluate').default(
        EMBEDDED_MODEL_PATH,
        'the embedded base model',
      ),
    )
    .addOption(
      new Option(
        '--model <dir>',
        'a Hugging Face model folder (Llama, Qwen2): its base, or with --checkpoint the LoRA adapters a node trained on it',
      ),
    )
    .addOption(
      new Option('--tasks <n>', 'tasks per family and difficulty')
        .argParser(integer('tasks', 1))
        .default(PASS_RATE_DEFAULTS.tasks),
    )
    .addOption(
      new Option('--samples <n>', 'completions per task (temperature 1)')
        .argParser(integer('samples', 1))
        .default(PASS_RATE_DEFAULTS.samples),
    )
    .addOption(
      new Option('--max-new-tokens <n>', 'most tokens per completion')
        .argParser(integer('max-new-tokens', 1))
        .default(PASS_RATE_DEFAULTS.maxNewTokens),
    )
    .addOption(
      new Option('-s, --seed <n>', `seed of the tasks and the sampler, 0 to ${MAX_SEED}`)
        .argParser(integer('seed', 0, MAX_SEED))
        .default(PASS_RATE_DEFAULTS.seed),
    )
    .addOption(
      new Option('--backend <name>', `tensor backend: auto (the best that works), ${BACKEND_NAMES.join(', ')}`)
        .argParser(backendName)
        .default('auto'),
    )
    .addOption(
      new Option('-f, --families <names>', 'only these families, comma-separated (default: all)').argParser(familyList),
    )
    .option('--json', 'print one JSON document for programs', false)
    .action(async (options: EvalOptions, command: Command) => {
      if (options.seed + options.tasks - 1 > MAX_SEED) {
        command.error(`error: --seed plus --tasks must keep task seeds within 0 to ${MAX_SEED}`, { exitCode: 2 });
      }
      const backend = await selectBackend({ backend: options.backend });
      // With --model, the default checkpoint (the embedded model's) means none: the folder's base alone.
      const checkpoint =
        options.model !== undefined && command.getOptionValueSource('checkpoint') === 'default'
          ? null
          : options.checkpoint;
      const { policy, tokenizer, step, release } =
        options.model === undefined
          ? await embeddedPolicy(options.checkpoint)
          : await folderPolicy(options.model, checkpoint, backend);
      const parameters = policy.parameterCount();
      const { tasks, samples, maxNewTokens, seed, json } = options;
      if (!json) {
        const what =
          options.model === undefined
            ? `checkpoint ${options.checkpoint}: step ${step}, ${parameters} parameters`
            : `${options.model} ${checkpoint === null ? 'without adapters (the base)' : `with the adapters of ${checkpoint}: step ${step}, ${parameters} adapter parameters`}`;
        console.log(`${what}, backend ${describeBackend(backend)}`);
        console.log(
          `${tasks} tasks x ${samples} samples per cell, at most ${maxNewTokens} new tokens, temperature 1, seed ${seed}\n`,
        );
      }
      const started = performance.now();
      // People see each family's row as soon as its last difficulty is done, the header with the first.
      let row: PassRateCell[] = [];
      let first = true;
      let cells: PassRateCell[];
      try {
        cells = evaluatePassRates(policy, tokenizer, {
          tasks,
          samples,
          maxNewTokens,
          seed,
          ...(options.families === undefined ? {} : { families: options.families }),
          onCell(cell) {
            if (json) return;
            row.push(cell);
            if (cell.difficulty < getFamily(cell.family).difficulty.max) return;
            const lines = formatPassRateTable(row).split('\n');
            console.log((first ? lines : lines.slice(2)).join('\n'));
            first = false;
            row = [];
          },
        });
      } finally {
        release();
      }
      const seconds = (performance.now() - started) / 1000;
      if (json) {
        const report: EvalReport = {
          checkpoint,
          model: options.model ?? null,
          step,
          parameters,
          backend,
          tasks,
          samples,
          maxNewTokens,
          seed,
          temperature: 1,
          cells,
          seconds,
        };
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      console.log(`\npass rate (share of groups with signal); ${seconds.toFixed(0)} s`);
    });
}
