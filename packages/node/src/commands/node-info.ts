/**
 * `swarm-node id` (create or show the node's identity), `swarm-node psk` (make a private swarm's
 * key) and `swarm-node status` (ask a running node, through its HTTP surface, what it is doing).
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKey } from '@libp2p/pnet';
import { Command, Option } from 'commander';
import { DEFAULT_DATA_DIR } from '../config.js';
import { NodeError } from '../errors.js';
import { loadOrCreateIdentity } from '../identity.js';
import { type NodeStatus, STATUS_ADDRESS_FILE } from '../swarm-node.js';

export function idCommand(): Command {
  return new Command('id')
    .description("create the node's identity if it has none, and print its peer id")
    .addOption(
      new Option('--data-dir <dir>', 'the data directory').default(DEFAULT_DATA_DIR).env('SWARM_NODE_DATA_DIR'),
    )
    .option('--json', 'print JSON for programs', false)
    .action(async (options: { dataDir: string; json: boolean }) => {
      const identity = await loadOrCreateIdentity(options.dataDir);
      if (options.json) {
        console.log(JSON.stringify({ peerId: identity.peerId, file: identity.file, created: identity.created }));
        return;
      }
      if (identity.created)
        console.error(`created a new identity in ${identity.file} (keep it: it is this node's peer id)`);
      console.log(identity.peerId);
    });
}

export function pskCommand(): Command {
  return new Command('psk')
    .description(
      'write a new pre-shared key for a private swarm: only nodes started with --psk <file> of the same key can connect',
    )
    .argument('<file>', 'where to write it (never overwritten)')
    .action(async (file: string) => {
      const key = new Uint8Array(95);
      generateKey(key);
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(file, 'wx', 0o600);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        throw new NodeError(
          code === 'EEXIST' ? 'BAD_CONFIG' : 'DATA_DIR_UNUSABLE',
          code === 'EEXIST'
            ? `${file} exists; a key is never overwritten — choose another name`
            : `cannot write ${file}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      try {
        await handle.writeFile(key);
      } finally {
        await handle.close();
      }
      console.error(`wrote a new swarm key to ${file}; give it (privately) to every node of the swarm`);
    });
}

export function statusCommand(): Command {
  return new Command('status')
    .description('show what a running node is doing (peers, round, rewards, rollouts accepted and rejected)')
    .addOption(
      new Option('--data-dir <dir>', "the node's data directory (to find its status address)")
        .default(DEFAULT_DATA_DIR)
        .env('SWARM_NODE_DATA_DIR'),
    )
    .option('--url <url>', 'the status server, e.g. http://127.0.0.1:9464 (default: read from the data directory)')
    .option('--json', 'print the raw JSON', false)
    .action(async (options: { dataDir: string; url?: string; json: boolean }) => {
      const base = options.url ?? (await statusAddress(options.dataDir));
      let status: NodeStatus;
      try {
        const response = await fetch(new URL('/status', base), { signal: AbortSignal.timeout(5000) });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        status = (await response.json()) as NodeStatus;
      } catch (error) {
        throw new NodeError(
          'STATUS_UNREACHABLE',
          `no node answers at ${base} (${(error as Error).message}); is it running?`,
          { cause: error },
        );
      }
      if (options.json) {
        console.log(JSON.stringify(status, null, 2));
        return;
      }
      console.log(formatStatus(status));
    });
}

async function statusAddress(dataDir: string): Promise<string> {
  const file = join(dataDir, STATUS_ADDRESS_FILE);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    throw new NodeError(
      'STATUS_UNREACHABLE',
      `no running node found: ${file} does not exist. Is the node started with this --data-dir, and with its status server on?`,
    );
  }
}

export function formatStatus(status: NodeStatus): string {
  const fixed = (value: number | null) => (value === null ? '-' : value.toFixed(3));
  const reasons = (counts: Record<string, number>) =>
    Object.entries(counts)
      .map(([key, n]) => `${key} ${n}`)
      .join(', ') || 'none';
  const { peers, relayReservations: relay } = status.network;
  return [
    `${status.mode} ${status.peerId}, swarm "${status.swarmId}", up since ${status.startedAt}`,
    ...status.addresses.map((address) => `  address   ${address}`),
    `  peers     ${peers.direct} direct, ${peers.relayed} relayed${status.peers.length === 0 ? '' : ` (scores ${status.peers.map((p) => p.score.toFixed(1)).join(', ')})`}`,
    `  reach     ${status.network.reachability === 'public' ? 'public (a confirmed public address)' : 'private/unknown (no public address confirmed by AutoNAT v2)'}`,
    `  relay     ${relay.granted === null ? (relay.held.length === 0 ? 'no reservation' : `reservation on ${relay.held.join(', ')}`) : `${relay.granted} reservation(s) held here for nodes behind NAT`}`,
    ...status.network.seeds.map(
      (seed) =>
        `  seed      ${seed.address} ${seed.diagnosis !== null ? `${seed.diagnosis.problem}: ${seed.diagnosis.message}${seed.nextTry === null ? '' : ` (next try ${seed.nextTry})`}` : seed.connected ? 'connected' : 'not connected yet'}`,
    ),
    `  mesh      ${Object.entries(status.mesh)
      .map(([topic, n]) => `${topic} ${n}`)
      .join(', ')}`,
    ...(status.mode === 'peer'
      ? [
          `  round     ${status.round ?? '-'}, step ${status.policyVersion ?? '-'}, reward last 10 ${fixed(status.reward.last10)}, this run ${fixed(status.reward.run)}`,
          `  learned   from ${status.externalGroupsUsed} peers' groups; ${status.rollouts.sent} rollouts sent`,
        ]
      : []),
    `  rollouts  ${reasons(status.rollouts.received.rollouts ?? {})}`,
    `  tasks     ${reasons(status.rollouts.received.tasks ?? {})}`,
    ...(status.checkpoint === null ? [] : [`  saved     ${status.checkpoint}`]),
  ].join('\n');
}
