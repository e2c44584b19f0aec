/**
 * `swarm-node doctor`: what this machine can run — every backend, ok or why not (the GPU adapter
 * where there is one), the memory there is, and the memory plan of the model for each backend that
 * works: what fits and the micro-batches it would use. `--json` for scripts.
 */
import { freemem, totalmem } from 'node:os';
import {
  availableMemory,
  BACKEND_NAMES,
  type BackendInfo,
  type BackendName,
  BackendUnavailableError,
  DEFAULT_LORA,
  describeBackend,
  EMBEDDED_CONFIG,
  embeddedShape,
  type MemoryPlan,
  type ModelShape,
  openModelFolder,
  parameterShapes,
  planMemory,
  pretrainedShape,
  selectBackend,
  weightCopiesOn,
} from '@swarm-node/sapo';
import { Command } from 'commander';
import { integer } from '../config.js';

interface DoctorOptions {
  model?: string;
  contextLength?: number;
  loraRank: number;
  json: boolean;
}

/** What `swarm-node doctor --json` prints. */
export interface DoctorReport {
  backends: { name: BackendName; ok: boolean; description: string; info?: BackendInfo }[];
  /** What `--backend auto` picks here. */
  auto: string;
  memory: { freeBytes: number; totalBytes: number };
  model: { source: string; parameters: number; trainableParameters: number; contextLength: number };
  /** The memory plan on each backend that works. */
  plans: Partial<Record<BackendName, MemoryPlan>>;
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('what this machine can run: backends (GPU adapter), memory, and the memory plan of the model')
    .option('--model <dir>', 'plan for this Hugging Face model folder (default: the embedded model)')
    .option(
      '--context-length <n>',
      'longest prompt + completion in tokens (default 384 for --model)',
      integer('--context-length', 16),
    )
    .option('--lora-rank <r>', 'LoRA rank, for --model', integer('--lora-rank', 1, 1024), DEFAULT_LORA.rank)
    .option('--json', 'print one JSON object', false)
    .action(async (options: DoctorOptions) => {
      const report = await diagnose(options);
      console.log(options.json ? JSON.stringify(report, null, 2) : formatReport(report));
    });
}

async function diagnose(options: DoctorOptions): Promise<DoctorReport> {
  const backends: DoctorReport['backends'] = [];
  for (const name of BACKEND_NAMES) {
    try {
      const info = await selectBackend({ backend: name });
      backends.push({ name, ok: true, description: describeBackend({ ...info, notes: [] }), info });
    } catch (error) {
      if (!(error instanceof BackendUnavailableError)) throw error;
      backends.push({ name, ok: false, description: error.reason });
    }
  }
  const auto = describeBackend(await selectBackend({ backend: 'auto' }));

  const { shape, model } = await modelShape(options);
  const plans: DoctorReport['plans'] = {};
  for (const { name, ok, info } of backends) {
    if (!ok || info === undefined) continue;
    const maxTensorBytes = info.adapter?.limits.maxStorageBufferBindingSize;
    plans[name] = planMemory(
      shape,
      {
        contextLength: model.contextLength,
        sampleRows: 8,
        microBatchRows: 4,
        reference: false,
        weightCopies: weightCopiesOn(info.tfBackend),
      },
      availableMemory(name, maxTensorBytes === undefined ? {} : { maxTensorBytes }),
    );
  }
  return { backends, auto, memory: { freeBytes: freemem(), totalBytes: totalmem() }, model, plans };
}

async function modelShape(options: DoctorOptions): Promise<{ shape: ModelShape; model: DoctorReport['model'] }> {
  if (options.model === undefined) {
    const parameters = [...parameterShapes(EMBEDDED_CONFIG).values()].reduce(
      (sum, s) => sum + s.reduce((a, b) => a * b, 1),
      0,
    );
    return {
      shape: embeddedShape(EMBEDDED_CONFIG, parameters),
      model: {
        source: 'embedded',
        parameters,
        trainableParameters: parameters,
        contextLength: EMBEDDED_CONFIG.contextLength,
      },
    };
  }
  const folder = await openModelFolder(options.model);
  try {
    const shape = pretrainedShape(folder.config, { ...DEFAULT_LORA, rank: options.loraRank });
    const contextLength = Math.min(options.contextLength ?? 384, folder.config.maxPositions);
    return {
      shape,
      model: {
        source: `${options.model} (${folder.config.architecture}, ${folder.config.layers} layers, d ${folder.config.hiddenSize})`,
        parameters: shape.frozenParameters + shape.trainableParameters,
        trainableParameters: shape.trainableParameters,
        contextLength,
      },
    };
  } finally {
    await folder.close();
  }
}

function formatReport(report: DoctorReport): string {
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  const width = Math.max(...report.backends.map((b) => b.name.length));
  const lines = ['backends'];
  for (const { name, ok, description } of report.backends) {
    lines.push(`  ${name.padEnd(width)}  ${ok ? 'ok ' : 'no '}  ${description}`);
  }
  lines.push(`  ${'auto'.padEnd(width)}  →    ${report.auto}`);
  lines.push('memory', `  ${gib(report.memory.freeBytes)} free of ${gib(report.memory.totalBytes)}`);
  const { model } = report;
  lines.push(
    'model',
    `  ${model.source}: ${(model.parameters / 1e6).toFixed(2)} M parameters, ${(model.trainableParameters / 1e6).toFixed(2)} M trained, context ${model.contextLength} tokens`,
  );
  lines.push('memory plan');
  for (const [name, plan] of Object.entries(report.plans)) {
    lines.push(
      `  ${name.padEnd(width)}  ${plan.fits ? 'fits' : 'no  '}  ${plan.summary.replace(/^memory plan: /, '')}`,
    );
  }
  return lines.join('\n');
}
