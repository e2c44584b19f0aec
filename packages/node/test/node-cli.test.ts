import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../../sapo/test/fixtures/tiny-models.js';
import { BIN } from './helpers/processes.js';

// The node commands as a person runs them: real processes, real files, real ports.
const swarmNode = (...args: string[]) => {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
};
const LOOPBACK = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-status'];

describe('swarm-node node commands', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'node-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('id makes an identity once and shows the same peer id after', () => {
    const first = swarmNode('id', '--data-dir', join(dir, 'id'));
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/created a new identity/);
    const second = swarmNode('id', '--data-dir', join(dir, 'id'), '--json');
    expect(JSON.parse(second.stdout)).toMatchObject({ peerId: first.stdout.trim(), created: false });
  });

  it('start runs the given rounds on the embedded defaults, saves, and says where', () => {
    const { code, stdout } = swarmNode('start', '--data-dir', join(dir, 'run'), '--rounds', '2', ...LOOPBACK);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^swarm-node node 12D3KooW\S+ in swarm "main"/);
    expect(stdout).toMatch(/model +embedded base model/);
    expect(stdout.match(/^round \d+ +reward/gm)).toHaveLength(2);
    expect(stdout).toMatch(/^stopped: .*checkpoint=.*step-\d+\.safetensors/m);
  });

  it('start --model trains a model folder, export writes it merged or as adapters, and another model in the data dir is refused', async () => {
    const model = (await writeTinyModel(join(dir, 'tiny'), { architecture: 'llama' })).dir;
    const data = join(dir, 'lora');
    const run = swarmNode(
      'start',
      '--model',
      model,
      '--data-dir',
      data,
      '--rounds',
      '2',
      '--lora-rank',
      '4',
      ...LOOPBACK,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/model +.*tiny, LoRA adapters of [\d.]+ M parameters/);
    expect(run.stdout).toMatch(/memory +[\d.]+ GiB of [\d.]+ GiB/);
    expect(run.stdout).toMatch(/^stopped: .*checkpoint=.*step-\d+\.safetensors/m);

    const merged = swarmNode('export', '--model', model, '--data-dir', data, '--out', join(dir, 'merged'), '--merge');
    expect(merged.code).toBe(0);
    expect(merged.stdout).toMatch(/^wrote .*merged: .* with the adapters merged in \(F32\)/);
    // The merged folder is a model folder a node can start from.
    const again = swarmNode(
      'start',
      '--model',
      join(dir, 'merged'),
      '--data-dir',
      join(dir, 'merged-run'),
      '--rounds',
      '1',
      ...LOOPBACK,
    );
    expect(again.code).toBe(0);
    expect(swarmNode('export', '--model', model, '--data-dir', data, '--out', join(dir, 'peft')).stdout).toMatch(
      /PEFT/,
    );

    // eval: the folder's base alone, then with the adapters the node trained; adapters without their base are refused.
    const checkpoint = /checkpoint=(\S+\.safetensors)/.exec(run.stdout)?.[1] as string;
    const fast = ['--tasks', '1', '--samples', '2', '--max-new-tokens', '4', '--families', 'reverse'];
    const base = swarmNode('eval', '--model', model, ...fast);
    expect(base.code).toBe(0);
    expect(base.stdout).toMatch(/^.*tiny without adapters \(the base\), backend wasm/);
    expect(base.stdout).toMatch(/^\| reverse( \| \d+ % \(\d+ %\)){5} \|$/m);
    const trained = JSON.parse(
      swarmNode('eval', '--model', model, '--checkpoint', checkpoint, ...fast, '--json').stdout,
    );
    expect(trained).toMatchObject({ model, checkpoint, step: expect.any(Number), samples: 2 });
    expect(trained.parameters).toBeGreaterThan(0);
    expect(trained.cells).toHaveLength(5);
    const alone = swarmNode('eval', '--checkpoint', checkpoint, ...fast);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/holds LoRA adapters of a model folder \(.*\): pass that folder as --model/);

    const embedded = swarmNode('start', '--data-dir', data, '--rounds', '1', ...LOOPBACK);
    expect(embedded.code).toBe(1);
    expect(embedded.stderr).toMatch(
      /holds checkpoints of another model: start with the model they were trained on, or give this one its own --data-dir/,
    );
    const bad = swarmNode('start', '--model', model, '--lora-targets', 'q_proj,nope', '--data-dir', data, ...LOOPBACK);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--lora-targets names projections among q_proj, .*; unknown: nope/);
  }, 120_000);

  it('doctor lists every backend, ok or why not, and the memory plan on each that works', async () => {
    const human = swarmNode('doctor');
    expect(human.code).toBe(0);
    for (const name of ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'])
      expect(human.stdout).toMatch(new RegExp(`^  ${name} +(ok|no) `, 'm'));
    expect(human.stdout).toMatch(/^ {2}wasm +ok +wasm \(SIMD/m);
    expect(human.stdout).toMatch(/^memory plan\n {2}\S+ +fits /m);
    const model = (await writeTinyModel(join(dir, 'doctor-model'), { architecture: 'qwen2' })).dir;
    const report = JSON.parse(swarmNode('doctor', '--model', model, '--json').stdout);
    expect(report.model).toMatchObject({ contextLength: 384 });
    expect(report.plans.wasm).toMatchObject({ fits: true, microBatchRows: 4 });
    for (const backend of report.backends) expect(backend.description.length).toBeGreaterThan(0); // a reason for each one that is not ok
  });

  it('refuses a bootstrap address without a peer id, before touching the network (exit 2)', () => {
    const { code, stderr } = swarmNode(
      'start',
      '--data-dir',
      join(dir, 'bad'),
      '--bootstrap',
      '/ip4/127.0.0.1/tcp/4117',
      ...LOOPBACK,
    );
    expect(code).toBe(2);
    expect(stderr).toMatch(/has no \/p2p\/<peer id>/);
    expect(
      swarmNode('start', '--data-dir', join(dir, 'bad'), '--bootstrap', 'not-an-address', ...LOOPBACK).stderr,
    ).toMatch(/is not a multiaddr/);
  });

  it('says when the port is in use (exit 1)', async () => {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const { code, stderr } = swarmNode(
        'bootstrap',
        '--data-dir',
        join(dir, 'port'),
        '--listen',
        `/ip4/127.0.0.1/tcp/${port}`,
        '--no-mdns',
        '--no-status',
      );
      expect(code).toBe(1);
      expect(stderr).toMatch(/port is in use/);
    } finally {
      server.close();
    }
  });

  it('says when the data directory is unusable, and when no node answers status (exit 1)', async () => {
    await writeFile(join(dir, 'a-file'), 'x');
    const unusable = swarmNode('start', '--data-dir', join(dir, 'a-file', 'data'), ...LOOPBACK);
    expect(unusable.code).toBe(1);
    expect(unusable.stderr).toMatch(/data directory .* is not writable/);
    const psk = swarmNode('start', '--data-dir', join(dir, 'psk'), '--psk', join(dir, 'a-file'), ...LOOPBACK);
    expect(psk.code).toBe(2);
    expect(psk.stderr).toMatch(/is not a libp2p swarm key; make one with `swarm-node psk <file>`/);
    const status = swarmNode('status', '--data-dir', join(dir, 'nobody'));
    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(/no running node found/);
  });

  it('refuses a damaged checkpoint instead of starting fresh', async () => {
    const data = join(dir, 'damaged');
    expect(swarmNode('start', '--data-dir', data, '--rounds', '1', ...LOOPBACK).code).toBe(0);
    const { readdir, truncate } = await import('node:fs/promises');
    const [file] = await readdir(join(data, 'checkpoints'));
    await truncate(join(data, 'checkpoints', file as string), 1000);
    const { code, stderr } = swarmNode('start', '--data-dir', data, '--rounds', '1', ...LOOPBACK);
    expect(code).toBe(1);
    expect(stderr).toMatch(/refusing to start from a fresh model/);
  });

  it('shows every setting with its default and environment variable in --help', () => {
    const { code, stdout } = swarmNode('start', '--help');
    expect(code).toBe(0);
    expect(stdout).toMatch(/--local-groups <n>[^-]*\(default: 6, env:\s+SWARM_NODE_LOCAL_GROUPS\)/);
    expect(stdout).toMatch(/--no-mdns[^-]*env:\s+SWARM_NODE_NO_MDNS/);
    expect(stdout).toMatch(/--status-host <host>[^-]*\(default:\s+"127\.0\.0\.1"/);
    expect(swarmNode('bootstrap', '--help').stdout).toMatch(/tcp\/4117/);
  });
});
