/**
 * Pass rates of a checkpoint on every task family and difficulty: the table in docs/MODEL.md.
 *
 *   npm run eval:model                                   # the embedded base model
 *   npm run eval:model -- --checkpoint path --tasks 32 --samples 8
 *
 * For each family and difficulty it samples `samples` completions (temperature 1, as the solver
 * does) for each of `tasks` tasks and reports the pass rate, and the share of groups with signal
 * (neither all right nor all wrong): the groups SAPO can learn from. The work is done by
 * evaluatePassRates in @swarm-node/roles; `swarm-node eval` is the same for operators.
 */
import { parseArgs } from 'node:util';
import { evaluatePassRates, formatPassRateTable, type PassRateCell } from '@swarm-node/roles';
import {
  ByteTokenizer,
  EMBEDDED_MODEL_PATH,
  loadCheckpoint,
  Policy,
  type PolicyConfig,
  selectBackend,
} from '@swarm-node/sapo';
import { getFamily } from '@swarm-node/tasks';

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
const started = performance.now();
// A family's row is printed as soon as its last difficulty is done; the header with the first row.
let row: PassRateCell[] = [];
let first = true;
evaluatePassRates(policy, tokenizer, {
  tasks: taskCount,
  samples,
  maxNewTokens: Number(values['max-new-tokens']),
  seed,
  onCell(cell) {
    row.push(cell);
    if (cell.difficulty < getFamily(cell.family).difficulty.max) return;
    const lines = formatPassRateTable(row).split('\n');
    console.log((first ? lines : lines.slice(2)).join('\n'));
    first = false;
    row = [];
  },
});
console.log(`\npass rate (share of groups with signal); ${((performance.now() - started) / 1000).toFixed(0)} s`);
policy.dispose();
