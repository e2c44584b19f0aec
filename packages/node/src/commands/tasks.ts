import { familyNames, getFamily, listFamilies, MAX_SEED, type Task } from '@swarm-node/tasks';
import { Command, InvalidArgumentError, Option } from 'commander';

/** Parses a whole number; the task library checks the range and names the valid one. */
function wholeNumber(name: string) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${name} must be a whole number.`);
    return Number(value);
  };
}

const familyOption = () =>
  new Option('-f, --family <name>', 'task family').choices(familyNames()).makeOptionMandatory();
const seedOption = () =>
  new Option('-s, --seed <n>', `seed, 0 to ${MAX_SEED}`).argParser(wholeNumber('seed')).makeOptionMandatory();
const difficultyOption = () =>
  new Option('-d, --difficulty <n>', 'difficulty level (see `tasks list`)')
    .argParser(wholeNumber('difficulty'))
    .makeOptionMandatory();

interface TaskOptions {
  family: string;
  seed: number;
  difficulty: number;
}

export function tasksCommand(): Command {
  const tasks = new Command('tasks').description('list, sample and score the verifiable task families');

  tasks
    .command('list')
    .description('list the task families with their difficulty ranges')
    .option('--json', 'print JSON for programs', false)
    .action((options: { json: boolean }) => {
      const families = listFamilies();
      if (options.json) {
        console.log(JSON.stringify(families, null, 2));
        return;
      }
      const width = Math.max(...families.map((family) => family.name.length));
      for (const { name, difficulty, version, description } of families) {
        console.log(
          `${name.padEnd(width)}  difficulty ${difficulty.min}-${difficulty.max}  v${version}  ${description}`,
        );
      }
    });

  tasks
    .command('sample')
    .description('show the task a seed gives: prompt and reference answer')
    .addOption(familyOption())
    .addOption(seedOption())
    .addOption(difficultyOption())
    .addOption(
      new Option('-n, --count <n>', 'how many tasks, from consecutive seeds')
        .argParser(wholeNumber('count'))
        .default(1),
    )
    .option('--json', 'print one JSON object per task, one per line', false)
    .action((options: TaskOptions & { count: number; json: boolean }, command: Command) => {
      const family = getFamily(options.family);
      const first = family.generate(options.seed, options.difficulty); // validates seed and difficulty
      if (options.count < 1 || options.seed + options.count - 1 > MAX_SEED) {
        command.error(`error: --count must be at least 1 and keep seeds within 0 to ${MAX_SEED}`, { exitCode: 2 });
      }
      for (let i = 0; i < options.count; i++) {
        const task = i === 0 ? first : family.generate(options.seed + i, options.difficulty);
        console.log(options.json ? JSON.stringify(task) : describe(task));
      }
    });

  tasks
    .command('score')
    .description("score a completion against a task's verifier (reward 0 to 1)")
    .addOption(familyOption())
    .addOption(seedOption())
    .addOption(difficultyOption())
    .requiredOption(
      '-c, --completion <text>',
      'the completion, free text; the answer is read as described in docs/TASKS.md',
    )
    .option('--json', 'print JSON for programs', false)
    .action((options: TaskOptions & { completion: string; json: boolean }) => {
      const family = getFamily(options.family);
      const task = family.generate(options.seed, options.difficulty);
      const reward = family.score(task, options.completion);
      console.log(
        options.json
          ? JSON.stringify({ reward, answer: task.answer })
          : `reward ${reward} (reference answer: ${task.answer})`,
      );
    });

  return tasks;
}

function describe(task: Task): string {
  return [
    `${task.family} seed=${task.seed} difficulty=${task.difficulty} v${task.generatorVersion}`,
    `  prompt: ${task.prompt}`,
    `  answer: ${task.answer}`,
  ].join('\n');
}
