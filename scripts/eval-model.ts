/**
 * Pass rates of a checkpoint on every task family and difficulty: the table in docs/MODEL.md.
 *
 *   npm run eval:model                                   # the embedded base model
 *   npm run eval:model -- --checkpoint path --tasks 32 --samples 8
 *
 * For each family and difficulty it samples `samples` completions (temperature 1, as the solver
 * does) for each of `tasks` tasks and reports the pass rate, and the share of groups with signal
 * (neither all right nor all wrong): the groups SAPO can learn from.
 */
import { parseArgs } from 'node:util';
import {
  ByteTokenizer,
  EMBEDDED_MODEL_PATH,
  generate,
  loadCheckpoint,
  Policy,
  type PolicyConfig,
  selectBackend,
} from '@swarm-node/sapo';
import { FAMILIES } from '@swarm-node/tasks';

const { values } = parseArgs({
  options: {
    checkpoint: {
      type: 'string',
      default: EMBEDDED_MODEL_PATH,
    },
    tasks: { type: 'string', default: '32' },
    samples: { type: 'string', default: '8' },
    'max-new-tokens': { type: 'string', default: '64' },
    seed: { type: 'string', default: '2026' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const taskCount = Number(values.tasks);
const samples = Number(values.samples);
const seed = Number(values.seed);

await selectBackend({ backend: values.backend as 'wasm' });
const tokenizer = new ByteTokenizer();
const checkpoint = await loadCheckpoint(values.checkpoint, { tokenizer: tokenizer.id });
const policy = new Policy(checkpoint.config as unknown as PolicyConfig, checkpoint.weights);
for (const tensor of [...checkpoint.weights.values(), ...checkpoint.optimizer.values()]) tensor.dispose();

console.log(`${values.checkpoint}: step ${checkpoint.step}, ${policy.parameterCount()} parameters`);
console.log(`${taskCount} tasks x ${samples} samples per cell, temperature 1, seed ${seed}\n`);
console.log('| family | d1 | d2 | d3 | d4 | d5 |');
console.log('|---|---|---|---|---|---|');
const started = performance.now();
let cell = 0;
for (const family of FAMILIES) {
  const cells: string[] = [];
  for (let difficulty = family.difficulty.min; difficulty <= family.difficulty.max; difficulty++) {
    const tasks = Array.from({ length: taskCount }, (_, i) => family.generate(seed + i, difficulty));
    const prompts = tasks.flatMap((task) => new Array<number[]>(samples).fill(tokenizer.encodePrompt(task.prompt)));
    const completions = generate(policy, prompts, {
      maxNewTokens: Number(values['max-new-tokens']),
      seed: seed + cell++,
    });
    const rewards = completions.map((c, i) =>
      family.score(tasks[Math.floor(i / samples)] as (typeof tasks)[number], tokenizer.decode(c.tokens)),
    );
    const pass = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    let withSignal = 0;
    for (let t = 0; t < taskCount; t++) {
      const group = rewards.slice(t * samples, (t + 1) * samples);
      if (group.some((r) => r !== group[0])) withSignal++;
    }
    cells.push(`${(100 * pass).toFixed(0)} % (${((100 * withSignal) / taskCount).toFixed(0)} %)`);
  }
  console.log(`| ${family.name} | ${cells.join(' | ')} |`);
}
console.log(`\npass rate (share of groups with signal); ${((performance.now() - started) / 1000).toFixed(0)} s`);
policy.dispose();
