/**
 * Pass rates of a policy on the task families, per family and difficulty: the table in
 * docs/MODEL.md, printed by `npm run eval:model` and `swarm-node eval`.
 *
 * Each cell (family × difficulty) samples `samples` completions (temperature 1) for each of `tasks`
 * tasks, seeded `seed`, `seed + 1`, …, and reports the pass rate (mean reward) and the share of
 * groups with signal (neither all right nor all wrong): the groups SAPO can learn from.
 */
import { type CausalLM, generate, type Tokenizer } from '@swarm-node/sapo';
import { FAMILIES, getFamily, MAX_SEED, type TaskFamily } from '@swarm-node/tasks';

/** One cell of the table. */
export interface PassRateCell {
  family: string;
  difficulty: number;
  /** Mean reward over all `tasks × samples` completions, 0 to 1. */
  passRate: number;
  /** Share of the `tasks` groups whose rewards are not all equal, 0 to 1. */
  signalShare: number;
  /** Tasks sampled in this cell. */
  tasks: number;
  /** Completions per task. */
  samples: number;
}

export interface PassRateOptions {
  /** Tasks per cell, generated from seeds `seed` to `seed + tasks - 1`. Default 32. */
  tasks?: number;
  /** Completions sampled per task (a group). Default 8. */
  samples?: number;
  /** Most tokens generated per completion. Default 64. */
  maxNewTokens?: number;
  /** Seeds the tasks and the sampler, 0 to MAX_SEED. Default 2026. */
  seed?: number;
  /** Only these families (by name), in the registry's order. Default: every family. An unknown name throws UnknownFamilyError. */
  families?: readonly string[];
  /** Only these difficulties, where a family has them. Default: each family's whole range. */
  difficulties?: readonly number[];
  /** Called after each cell, e.g. to show progress: `done` of `total` cells are finished. */
  onCell?: (cell: PassRateCell, done: number, total: number) => void;
}

/** The defaults of PassRateOptions: those of the table in docs/MODEL.md. */
export const PASS_RATE_DEFAULTS = Object.freeze({ tasks: 32, samples: 8, maxNewTokens: 64, seed: 2026 });

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/** The cells asked for, each with its index in the full table: the sampler's seed does not depend on filters. */
function plan(options: PassRateOptions): { family: TaskFamily; difficulty: number; index: number }[] {
  if (options.families !== undefined && options.families.length === 0) {
    throw new RangeError(`families must name at least one family; known families: ${FAMILIES.map((f) => f.name)}`);
  }
  const chosen = new Set(options.families?.map((name) => getFamily(name).name) ?? FAMILIES.map((f) => f.name));
  const families = FAMILIES.filter((family) => chosen.has(family.name));
  const wanted = options.difficulties === undefined ? undefined : new Set(options.difficulties);
  if (wanted !== undefined) {
    const lowest = Math.min(...families.map((f) => f.difficulty.min));
    const highest = Math.max(...families.map((f) => f.difficulty.max));
    if (wanted.size === 0)
      throw new RangeError(`difficulties must name at least one difficulty, ${lowest} to ${highest}`);
    for (const difficulty of wanted) {
      if (
        !families.some(
          (f) => Number.isInteger(difficulty) && difficulty >= f.difficulty.min && difficulty <= f.difficulty.max,
        )
      ) {
        throw new RangeError(
          `difficulty ${difficulty} is not a level of the families evaluated; use integers from ${lowest} to ${highest}`,
        );
      }
    }
  }
  const cells: { family: TaskFamily; difficulty: number; index: number }[] = [];
  let index = 0;
  for (const family of FAMILIES) {
    for (let difficulty = family.difficulty.min; difficulty <= family.difficulty.max; difficulty++, index++) {
      if (chosen.has(family.name) && (wanted === undefined || wanted.has(difficulty))) {
        cells.push({ family, difficulty, index });
      }
    }
  }
  return cells;
}

/**
 * Samples the policy on every family and difficulty asked for and scores the completions with the
 * families' verifiers. Deterministic: the same policy, tokenizer and options give the same cells,
 * and a cell's numbers do not depend on which other cells are evaluated. Throws a RangeError for
 * an option out of range and an UnknownFamilyError (a TaskError) for an unknown family.
 */
export function evaluatePassRates(
  policy: CausalLM,
  tokenizer: Tokenizer,
  options: PassRateOptions = {},
): PassRateCell[] {
  const taskCount = positive('tasks', options.tasks ?? PASS_RATE_DEFAULTS.tasks);
  const samples = positive('samples', options.samples ?? PASS_RATE_DEFAULTS.samples);
  const maxNewTokens = positive('maxNewTokens', options.maxNewTokens ?? PASS_RATE_DEFAULTS.maxNewTokens);
  const seed = options.seed ?? PASS_RATE_DEFAULTS.seed;
  if (!Number.isInteger(seed) || seed < 0 || seed + taskCount - 1 > MAX_SEED) {
    throw new RangeError(
      `seed must be an integer from 0 to ${MAX_SEED - taskCount + 1} (for ${taskCount} tasks), got ${seed}`,
    );
  }
  const planned = plan(options);
  const cells: PassRateCell[] = [];
  for (const { family, difficulty, index } of planned) {
    const tasks = Array.from({ length: taskCount }, (_, i) => family.generate(seed + i, difficulty));
    const prompts = tasks.flatMap((task) => new Array<number[]>(samples).fill(tokenizer.encodePrompt(task.prompt)));
    const completions = generate(policy, prompts, { maxNewTokens, seed: seed + index });
    const rewards = completions.map((c, i) =>
      family.score(tasks[Math.floor(i / samples)] as (typeof tasks)[number], tokenizer.decode(c.tokens)),
    );
    let withSignal = 0;
    for (let t = 0; t < taskCount; t++) {
      const group = rewards.slice(t * samples, (t + 1) * samples);
      if (group.some((r) => r !== group[0])) withSignal++;
    }
    const cell: PassRateCell = {
      family: family.name,
      difficulty,
      passRate: rewards.reduce((a, b) => a + b, 0) / rewards.length,
      signalShare: withSignal / taskCount,
      tasks: taskCount,
      samples,
    };
    cells.push(cell);
    options.onCell?.(cell, cells.length, planned.length);
  }
  return cells;
}

/**
 * The cells as a markdown table: a row per family (in the order they first appear), a column per
 * difficulty (`d1` …), each cell `pass rate (share of groups with signal)` in whole percent, e.g.
 * `38 % (75 %)`; `-` where a family has no cell for a difficulty.
 */
export function formatPassRateTable(cells: readonly PassRateCell[]): string {
  const difficulties = [...new Set(cells.map((cell) => cell.difficulty))].sort((a, b) => a - b);
  const rows = new Map<string, Map<number, PassRateCell>>();
  for (const cell of cells) {
    const row = rows.get(cell.family) ?? new Map<number, PassRateCell>();
    row.set(cell.difficulty, cell);
    rows.set(cell.family, row);
  }
  const percent = (value: number) => `${value.toFixed(0)} %`;
  const text = (cell: PassRateCell | undefined) =>
    cell === undefined
      ? '-'
      : // The signal count is a whole number of groups: recomputing it gives the script's rounding exactly.
        `${percent(100 * cell.passRate)} (${percent((100 * Math.round(cell.signalShare * cell.tasks)) / cell.tasks)})`;
  return [
    `| family | ${difficulties.map((d) => `d${d}`).join(' | ')} |`,
    `|${'---|'.repeat(difficulties.length + 1)}`,
    ...[...rows].map(([family, row]) => `| ${family} | ${difficulties.map((d) => text(row.get(d))).join(' | ')} |`),
  ].join('\n');
}
