import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, describe, expect, it } from 'vitest';
import { createHost, type Host } from '../src/host.js';
import { BIN } from './helpers/processes.js';

// Hosts on loopback with pre-shared keys made by `swarm-node psk`.
describe('a private swarm', () => {
  const hosts: Host[] = [];
  let dir = '';
  afterAll(async () => {
    await Promise.all(hosts.map((h) => h.stop()));
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  const host = async (psk: Uint8Array) => {
    const h = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      swarmId: 'private',
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      minPeers: 0,
      psk,
    });
    hosts.push(h);
    return h;
  };

  it('lets in peers with the same key and no one else', async () => {
    dir = await mkdtemp(join(tmpdir(), 'psk-'));
    for (const name of ['ours', 'theirs']) {
      expect(spawnSync(process.execPath, [BIN, 'psk', join(dir, name)]).status).toBe(0);
    }
    const ours = await readFile(join(dir, 'ours'));
    const [a, b, stranger] = [await host(ours), await host(ours), await host(await readFile(join(dir, 'theirs')))];
    const address = multiaddr((a as Host).addresses()[0] as string);
    await expect((b as Host).libp2p.dial(address)).resolves.toBeDefined();
    await expect((stranger as Host).libp2p.dial(address, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
    expect((a as Host).libp2p.getPeers().map(String)).toEqual([(b as Host).libp2p.peerId.toString()]);
  });
});
