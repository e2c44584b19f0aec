import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { ProposedTask } from '@swarm-node/roles';
import { afterAll, describe, expect, it } from 'vitest';
import { createHost, type Host, SCORE_THRESHOLDS } from '../src/host.js';
import { type SwarmNode, startNode } from '../src/swarm-node.js';
import { decodeMessage, encodeMessage, MAX_MESSAGE_BYTES, topicName } from '../src/wire/index.js';
import { eventually } from './helpers/processes.js';

// A real training node and a real libp2p peer that lies, on loopback.
const SWARM = 'hostile-test';

describe('a hostile peer', () => {
  let honest: SwarmNode | undefined;
  let hostile: Host | undefined;
  let dir = '';

  afterAll(async () => {
    await hostile?.stop();
    await honest?.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('is rejected for forged rewards, undecodable and oversized messages, and graylisted; the honest node runs on', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hostile-'));
    honest = await startNode({
      dataDir: join(dir, 'honest'),
      swarmId: SWARM,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      statusPort: null,
      checkpointEvery: 1000,
    });
    const rounds: number[] = [];
    honest.on('round', (metrics) => rounds.push(metrics.round));
    void honest.run();

    hostile = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      swarmId: SWARM,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: honest.host.addresses(),
      mdns: false,
    });
    const tasksTopic = topicName(SWARM, 'tasks');
    const rolloutsTopic = topicName(SWARM, 'rollouts');
    // The liar listens to the honest node's tasks, to forge rollouts on tasks it really published.
    const published: ProposedTask[] = [];
    hostile.pubsub.addEventListener('message', (event) => {
      if (event.detail.topic !== tasksTopic) return;
      const decoded = decodeMessage('tasks', event.detail.data);
      if (decoded.ok && 'task' in decoded.message) published.push(decoded.message.task);
    });
    hostile.pubsub.subscribe(tasksTopic);
    hostile.pubsub.subscribe(rolloutsTopic);
    const liar = hostile.libp2p.peerId.toString();
    await eventually(
      async () => (published.length >= 3 ? true : undefined),
      'the honest node’s tasks to reach the liar',
    );

    const publish = (data: Uint8Array) => hostile?.pubsub.publish(rolloutsTopic, data);
    const [target] = published as [ProposedTask];
    // One lie of each kind: together they cost enough to graylist the liar, after which the honest
    // node drops everything it sends unread (so more lies would not even be counted).
    await publish(
      encodeMessage('rollouts', {
        task: target,
        producer: liar,
        round: target.round,
        policyVersion: 0,
        time: Date.now(),
        completions: new Array(8).fill('<answer>definitely wrong</answer>'), // each claimed worth full reward
        rewards: new Array(8).fill(1),
      }),
    );
    await publish(Uint8Array.of(0x12, 0xff, 0xff, 0xff, 0x0f));
    await publish(new Uint8Array(MAX_MESSAGE_BYTES.rollouts + 1));

    const node = honest;
    const status = await eventually(async () => {
      const current = node.status();
      const received = current.rollouts.received.rollouts ?? {};
      const caught =
        (received['reject:reward-mismatch'] ?? 0) === 1 &&
        (received['reject:undecodable'] ?? 0) === 1 &&
        (received['reject:oversized'] ?? 0) === 1;
      return caught ? current : undefined;
    }, 'every lie to be rejected');
    expect(status.rollouts.received.rollouts?.accept).toBeUndefined();
    expect(status.externalGroupsUsed).toBe(0);
    // Gossipsub caches scores for a moment (they are refreshed each heartbeat): wait for the fall.
    const pubsub = honest.host.pubsub;
    const score = await eventually(
      async () => {
        const current = pubsub.getScore(liar);
        return current < SCORE_THRESHOLDS.graylistThreshold ? current : undefined;
      },
      "the liar's score to fall below the graylist threshold",
      10_000,
    );
    expect(score).toBeLessThan(SCORE_THRESHOLDS.graylistThreshold);

    // The honest node keeps training after the attack.
    const after = rounds.length;
    await eventually(async () => (rounds.length >= after + 2 ? true : undefined), 'two more honest rounds');
  });
});
