import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { NetworkStatus } from '../src/network-status.js';
import { SwarmNode } from '../src/swarm-node.js';
import { BIN, eventually, fetchStatus } from './helpers/processes.js';

const LOOPBACK = { listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, statusPort: 0 };
const network = async (url: string) => (await fetchStatus(url)).network as NetworkStatus;
const swarmNodeStatus = async (url: string) =>
  (await promisify(execFile)(process.execPath, [BIN, 'status', '--url', url], { encoding: 'utf8' })).stdout;

// A seed and a peer in one process (the peer relays only: no model to load), asked over HTTP.
describe('a node’s network status', () => {
  const nodes: SwarmNode[] = [];
  let dir = '';
  afterAll(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('shows direct and relayed peers, relay reservations and the seeds, in /status and `swarm-node status`', async () => {
    dir = await mkdtemp(join(tmpdir(), 'network-status-'));
    const seed = await SwarmNode.start({ dataDir: join(dir, 'seed'), mode: 'bootstrap', ...LOOPBACK });
    nodes.push(seed);
    const seedAddress = seed.host.addresses()[0] as string;
    const peer = await SwarmNode.start({
      dataDir: join(dir, 'peer'),
      roles: ['evaluator'],
      bootstrap: [seedAddress],
      ...LOOPBACK,
    });
    nodes.push(peer);
    const [peerUrl, seedUrl] = [peer.statusUrl as string, seed.statusUrl as string];

    // A peer given seeds listens on /p2p-circuit: it reserves a slot on the seed, direct on loopback.
    const held = await eventually(async () => {
      const now = await network(peerUrl);
      return now.relayReservations.held.length > 0 ? now : undefined;
    }, 'the peer to hold a reservation on the seed');
    expect(held).toMatchObject({
      reachability: 'private/unknown',
      relayReservations: { held: [seed.peerId], granted: null },
      peers: { direct: 1, relayed: 0 },
      seeds: [{ address: seedAddress, connected: true, diagnosis: null, nextTry: null }],
    });
    const atSeed = await network(seedUrl);
    expect(atSeed.relayReservations.granted).toBeGreaterThanOrEqual(1);
    expect(atSeed).toMatchObject({ relayReservations: { held: [] }, peers: { direct: 1, relayed: 0 }, seeds: [] });

    const peerText = await swarmNodeStatus(peerUrl);
    expect(peerText).toMatch(/^ {2}peers +1 direct, 0 relayed/m);
    expect(peerText).toMatch(/^ {2}reach +private\/unknown/m);
    expect(peerText).toContain(`  relay     reservation on ${seed.peerId}`);
    expect(peerText).toContain(`  seed      ${seedAddress} connected`);
    expect(await swarmNodeStatus(seedUrl)).toMatch(/^ {2}relay +[1-9]\d* reservation\(s\) held here/m);
  });
});
