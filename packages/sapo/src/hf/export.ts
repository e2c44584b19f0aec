/**
 * What a trained pre-trained model leaves for use elsewhere: a merged Hugging Face folder (the base
 * with the adapters folded in, W + (α/r)·B·A, loadable by transformers or by swarm-node itself as
 * a new base), or the adapters alone as a PEFT folder (`adapter_config.json` and
 * `adapter_model.safetensors`, PEFT's names), which PeftModel.from_pretrained puts on the base.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PretrainedPolicy } from '../pretrained.js';
import { openModelFolder, writeModelFolder } from './folder.js';
import { type TensorEntry, type WeightDtype, writeSafetensors } from './safetensors.js';

/** A chat template some folders keep beside tokenizer_config.json; copied as it is. */
const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

/**
 * Writes `policy` merged into a model folder at `out`: config, generation config and tokenizer
 * from the base folder `base`, weights in `dtype` (default F32), one
 * merged tensor in memory at a time.
 */
export async function writeMergedFolder(
  policy: PretrainedPolicy,
  base: string,
  out: string,
  options: { dtype?: WeightDtype; shards?: number } = {},
): Promise<void> {
  const folder = await openModelFolder(base);
  try {
    const tensors = new Map<string, TensorEntry>(
      folder.tensorNames.map((name) => [
        name,
        { shape: [...folder.shapeOf(name)], data: () => policy.mergedWeight(name) },
      ]),
    );
    await writeModelFolder(out, {
      config: folder.config,
      generation: folder.generation,
      tokenizerJson: folder.tokenizerFiles.tokenizerJson?.json,
      tokenizerConfig: folder.tokenizerFiles.tokenizerConfig?.json,
      tensors,
      dtype: options.dtype ?? 'F32',
      ...(options.shards === undefined ? {} : { shards: options.shards }),
    });
    await copyFile(join(base, CHAT_TEMPLATE_FILE), join(out, CHAT_TEMPLATE_FILE)).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    });
  } finally {
    await folder.close();
  }
}

/** Writes `policy`'s adapters at `out` as PEFT does for a LoRA on the causal LM at `base`. */
export async function writeAdapterFolder(policy: PretrainedPolicy, base: string, out: string): Promise<void> {
  const { rank, alpha, targets } = policy.lora;
  await mkdir(out, { recursive: true });
  await writeFile(
    join(out, 'adapter_config.json'),
    `${JSON.stringify(
      {
        peft_type: 'LORA',
        task_type: 'CAUSAL_LM',
        base_model_name_or_path: base,
        r: rank,
        lora_alpha: alpha,
        lora_dropout: 0,
        target_modules: [...targets],
        bias: 'none',
        fan_in_fan_out: false,
        inference_mode: true,
      },
      null,
      2,
    )}\n`,
  );
  // PEFT names the adapters of `model.layers.0.self_attn.q_proj` `base_model.model.model.layers.0…`.
  const tensors = new Map<string, TensorEntry>(
    [...policy.params].map(([name, variable]) => [
      `base_model.model.${name}`,
      { shape: [...variable.shape], data: () => variable.dataSync() as Float32Array },
    ]),
  );
  await writeSafetensors(join(out, 'adapter_model.safetensors'), tensors, 'F32');
}
