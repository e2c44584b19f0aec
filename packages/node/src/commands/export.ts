/**
 * `swarm-node export`: what a node trained on a model folder, for use elsewhere — the base with the
 * adapters merged in (`--merge`: a Hugging Face folder transformers loads, or `--model` of another
 * node), or the adapters alone as a PEFT folder.
 */
import { join } from 'node:path';
import {
  CheckpointError,
  latestCheckpoint,
  selectBackend,
  WEIGHT_DTYPES,
  type WeightDtype,
  writeAdapterFolder,
  writeMergedFolder,
} from '@swarm-node/sapo';
import { Command, Option } from 'commander';
import { DEFAULT_DATA_DIR } from '../config.js';
import { CHECKPOINT_DIR } from '../swarm-node.js';
import { openModelFolderLearner } from './model-folder.js';

interface ExportOptions {
  model: string;
  dataDir: string;
  checkpoint?: string;
  out: string;
  merge: boolean;
  dtype: WeightDtype;
}

export function exportCommand(): Command {
  return new Command('export')
    .description(
      'write what a node trained on --model: the adapters merged into a model folder (--merge), or a PEFT adapter folder',
    )
    .requiredOption('--model <dir>', 'the Hugging Face model folder the node trained (its base)')
    .requiredOption('--out <dir>', 'the folder to write')
    .option('--data-dir <dir>', "the node's data dir: its latest checkpoint is exported", DEFAULT_DATA_DIR)
    .option('--checkpoint <file>', 'export this adapter checkpoint instead of the data dir’s latest')
    .option('--merge', 'fold the adapters into the base weights: a complete model folder', false)
    .addOption(new Option('--dtype <dtype>', 'weight dtype of a merged folder').choices(WEIGHT_DTYPES).default('F32'))
    .action(async (options: ExportOptions) => {
      const file = options.checkpoint ?? (await latestCheckpoint(join(options.dataDir, CHECKPOINT_DIR)));
      if (file === null) {
        throw new CheckpointError(
          'CHECKPOINT_NOT_FOUND',
          options.dataDir,
          `no checkpoint in ${join(options.dataDir, CHECKPOINT_DIR)}: nothing trained to export; pass the node's --data-dir or --checkpoint`,
        );
      }
      const backend = await selectBackend({ backend: 'auto' });
      const { learner, policy } = await openModelFolderLearner(options.model, file, backend);
      try {
        if (options.merge) await writeMergedFolder(policy, options.model, options.out, { dtype: options.dtype });
        else await writeAdapterFolder(policy, options.model, options.out);
      } finally {
        learner.dispose();
        policy.dispose();
      }
      console.log(
        `wrote ${options.out}: ${options.merge ? `${options.model} with the adapters merged in (${options.dtype})` : 'LoRA adapters in PEFT format'}, from ${file} (step ${learner.steps})`,
      );
    });
}
