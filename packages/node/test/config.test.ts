import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNetworkOptions, resolveSettings } from '../src/config.js';

interface Settings {
  dataDir: string;
  swarm: string;
  listen: string[];
  bootstrap: string[];
  mdns: boolean;
  minPeers: number;
}

describe('settings', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const settings = async (args: string[], config?: unknown, env: Record<string, string> = {}) => {
    const file = join(dir, `config-${Math.random()}.json`);
    if (config !== undefined) await writeFile(file, typeof config === 'string' ? config : JSON.stringify(config));
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      const command = addNetworkOptions(new Command('start').exitOverride(), {
        dataDir: '/default',
        listen: '/ip4/0.0.0.0/tcp/0',
      });
      command.parse([...args, ...(config === undefined ? [] : ['--config', file])], { from: 'user' });
      return resolveSettings<Settings>(command);
    } finally {
      process.env = saved;
    }
  };

  it('come from a flag, else SWARM_NODE_* variables, else the config file, else the default', async () => {
    const config = {
      swarm: 'from-file',
      minPeers: 7,
      listen: ['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/tcp/2'],
      mdns: false,
    };
    const resolved = await settings(['--swarm', 'from-flag'], config, { SWARM_NODE_MIN_PEERS: '2' });
    expect(resolved.swarm).toBe('from-flag');
    expect(resolved.minPeers).toBe(2);
    expect(resolved.listen).toEqual(['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/tcp/2']);
    expect(resolved.mdns).toBe(false);
    expect(resolved.dataDir).toBe('/default');
    expect((await settings([])).bootstrap).toEqual([]);
  });

  it('add up a repeated list flag, commas or not, in place of the default', async () => {
    const [a, b, c] = ['/dns4/a/tcp/4117/p2p/A', '/dns4/b/tcp/4117/p2p/B', '/dns4/c/tcp/4117/p2p/C'];
    expect((await settings(['--bootstrap', a, '--bootstrap', `${b},${c}`])).bootstrap).toEqual([a, b, c]);
    expect((await settings(['--listen', '/ip4/127.0.0.1/tcp/1'])).listen).toEqual(['/ip4/127.0.0.1/tcp/1']);
    expect((await settings([])).listen).toEqual(['/ip4/0.0.0.0/tcp/0']);
    // The variable stands in for the flag: the command line, when given, replaces it.
    expect((await settings([], undefined, { SWARM_NODE_BOOTSTRAP: `${a},${b}` })).bootstrap).toEqual([a, b]);
    expect((await settings(['--bootstrap', c], undefined, { SWARM_NODE_BOOTSTRAP: a })).bootstrap).toEqual([c]);
  });

  it('refuse unknown keys, wrong types, bad values and broken files, naming the file', async () => {
    await expect(settings([], { swarmId: 'x' })).rejects.toThrow(
      /unknown setting "swarmId"; known settings are .*swarm/,
    );
    await expect(settings([], { mdns: 'no' })).rejects.toThrow(/mdns must be true or false/);
    await expect(settings([], { minPeers: -1 })).rejects.toThrow(
      /minPeers: --min-peers must be an integer of at least 0/,
    );
    await expect(settings([], { listen: { a: 1 } })).rejects.toThrow(/listen must be a list of strings/);
    await expect(settings([], '{ not json')).rejects.toThrow(/cannot read the config file .*config-/);
    await expect(settings([], [1, 2])).rejects.toThrow(/must hold a JSON object/);
  });
});
