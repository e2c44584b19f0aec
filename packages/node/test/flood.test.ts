import { generateKeyPair } from '@libp2p/crypto/keys';
import { deriveSeed, type ProposedTask, Relay, type RolloutMessage } from '@swarm-node/roles';
import { afterAll, describe, expect, it } from 'vitest';
import { GossipTransport } from '../src/gossip-transport.js';
import { createHost, type Host } from '../src/host.js';
import { encodeMessage, topicName } from '../src/wire/index.js';
import { eventually } from './helpers/processes.js';

// A real relay (what a bootstrap node runs) and two real libp2p peers on loopback: one floods
// well-formed rollouts on tasks nobody proposed, one sends a few such rollouts (an honest race).
const SWARM = 'flood-test';

describe('a flood of messages that are only ignored', () => {
  const hosts: Host[] = [];
  afterAll(async () => {
    for (const host of hosts.reverse()) await host.stop();
  });

  const peer = async (bootstrap: string[]) => {
    const host = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      swarmId: SWARM,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap,
      mdns: false,
      minPeers: 0,
    });
    hosts.push(host);
    return host;
  };
  const rolloutOn = (author: string, round: number): Uint8Array => {
    const task: ProposedTask = {
      family: 'count',
      seed: deriveSeed(author, round, 0),
      difficulty: 1,
      generatorVersion: 1,
      proposer: author,
      round,
      index: 0,
    };
    const message: RolloutMessage = {
      task,
      producer: author,
      round,
      policyVersion: 0,
      time: Date.now(),
      completions: ['<answer>1</answer>', '<answer>2</answer>'],
      rewards: [0, 0],
    };
    return encodeMessage('rollouts', message);
  };

  it('costs a sustained stream of ignores application score, and a few honest ones nothing', async () => {
    let transport: GossipTransport | undefined;
    const relayHost = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      swarmId: SWARM,
      role: 'bootstrap',
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      minPeers: 0,
      scoredTopics: [topicName(SWARM, 'tasks'), topicName(SWARM, 'rollouts')],
      appSpecificScore: (id) => transport?.applicationScore(id) ?? 0,
    });
    hosts.push(relayHost);
    transport = new GossipTransport({ host: relayHost, swarmId: SWARM });
    const relay = new Relay(transport);
    const flooder = await peer(relayHost.addresses());
    const honest = await peer(relayHost.addresses());
    const topic = topicName(SWARM, 'rollouts');
    for (const host of [flooder, honest]) host.pubsub.subscribe(topic);
    const flooderId = flooder.libp2p.peerId.toString();
    const honestId = honest.libp2p.peerId.toString();
    await eventually(
      async () => (relayHost.pubsub.getMeshPeers(topic).length >= 2 ? true : undefined),
      'both peers in the relay’s mesh',
    );

    const node = transport;
    const ignored = () => relay.evaluator.counts['ignore:task-before-join'] ?? 0;
    // An honest race: a few rollouts arrive before their tasks (here: tasks never sent at all).
    for (let round = 0; round < 5; round++) await honest.pubsub.publish(topic, rolloutOn(honestId, round));
    await eventually(async () => (ignored() >= 5 ? true : undefined), 'the honest rollouts to be checked');
    expect(node.applicationScore(honestId)).toBe(0);

    // The flood: every one well-formed, every one on a task nobody proposed. The first 256 ignores
    // are free, each further one costs a tenth of a reject; once graylisted, the rest go unread.
    for (let round = 0; round < 1000; round++) await flooder.pubsub.publish(topic, rolloutOn(flooderId, round));
    await eventually(
      async () => (node.applicationScore(flooderId) < -80 ? true : undefined),
      'the flood to cost the flooder application score',
    );
    const { rollouts } = node.counts;
    expect((rollouts['ignore:roles'] ?? 0) + (rollouts['ignore:rate-limited'] ?? 0)).toBeGreaterThan(256 + 80);
    expect(rollouts['reject:roles'] ?? 0).toBe(0);
    expect(relay.evaluator.counts.accept).toBeUndefined();
    expect(node.applicationScore(honestId)).toBe(0);
    const score = await eventually(
      async () => (relayHost.pubsub.getScore(flooderId) < 0 ? relayHost.pubsub.getScore(flooderId) : undefined),
      'the flooder’s gossipsub score to go negative',
      10_000,
    );
    expect(score).toBeLessThan(0);
    expect(relayHost.pubsub.getScore(honestId)).toBeGreaterThanOrEqual(0);
  });
});
