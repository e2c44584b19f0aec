/**
 * One node of the gossip benchmark (scripts/bench/gossip.ts): a real swarm-node host and gossip
 * transport, no model. It publishes `groups` rollouts a round from `startAt`, records when each
 * peer's rollout arrives, and reports on stdout (one JSON line per event).
 *
 *   argv: <seed multiaddr | -> <rounds> <periodMs> <groups> <startAt epoch ms>
 */
import { generateKeyPair } from '@libp2p/crypto/keys';
import { createHost, GossipTransport, topicName } from '@swarm-node/node';
import type { RolloutMessage } from '@swarm-node/roles';

const [seed = '-', roundsText = '10', periodText = '2000', groupsText = '6', startText = '0'] = process.argv.slice(2);
const [rounds, periodMs, groups, startAt] = [roundsText, periodText, groupsText, startText].map(Number) as [
  number,
  number,
  number,
  number,
];
const SWARM = 'bench';

let transport: GossipTransport | undefined;
const host = await createHost({
  privateKey: await generateKeyPair('Ed25519'),
  swarmId: SWARM,
  listen: ['/ip4/127.0.0.1/tcp/0'],
  bootstrap: seed === '-' ? [] : [seed],
  mdns: false,
  role: seed === '-' ? 'bootstrap' : 'peer',
  minPeers: 6,
  scoredTopics: [topicName(SWARM, 'rollouts')],
  appSpecificScore: (peer) => transport?.applicationScore(peer) ?? 0,
});
transport = new GossipTransport({ host, swarmId: SWARM });
const me = transport.peerId;
/** Latency in ms of every peer rollout received, keyed `producer/round/group`. */
const received: [string, number][] = [];
// What is measured is the network: accept without re-verification (its cost is in bench:tasks).
transport.subscribe('rollouts', (message) => {
  const rollout = message as RolloutMessage;
  received.push([`${rollout.producer}/${rollout.round}/${rollout.task.index}`, Date.now() - rollout.time]);
  return 'accept';
});
transport.subscribe('tasks', () => 'ignore');
console.log(JSON.stringify({ event: 'ready', peerId: me, address: host.addresses()[0] }));

/** A rollout as the embedded model makes them: G = 8 completions of about 40 bytes. */
function rollout(round: number, index: number): RolloutMessage {
  const completions = Array.from(
    { length: 8 },
    (_, i) => `<answer>${(round * 7919 + index * 104_729 + i * 31).toString(36)}</answer> done`,
  );
  return {
    task: { family: 'arithmetic', seed: 0, difficulty: 2, generatorVersion: 1, proposer: me, round, index },
    producer: me,
    round,
    policyVersion: round,
    time: Date.now(),
    completions,
    rewards: completions.map((_, i) => i % 2),
  };
}

await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt - Date.now())));
const wireBefore = await wireBytes();
const mesh = host.pubsub.getMeshPeers(topicName(SWARM, 'rollouts')).length;
for (let round = 0; round < rounds; round++) {
  const started = Date.now();
  for (let index = 0; index < groups; index++) await transport.publish('rollouts', rollout(round, index));
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, periodMs - (Date.now() - started))));
}
// Let the last messages arrive everywhere.
await new Promise((resolve) => setTimeout(resolve, 5000));
console.log(
  JSON.stringify({
    event: 'done',
    peerId: me,
    mesh,
    peers: host.libp2p.getPeers().length,
    payloadSent: transport.traffic().sent,
    wireSent: (await wireBytes()) - wireBefore,
    received,
  }),
);
await host.stop();
process.exit(0);

/** Bytes this process has written to all its connections (libp2p's counter over every protocol: gossip, DHT, identify, ping). */
async function wireBytes(): Promise<number> {
  const metric = await host.registry.getSingleMetric('libp2p_data_transfer_bytes_total')?.get();
  return (metric?.values ?? []).filter((v) => v.labels.protocol === 'global sent').reduce((sum, v) => sum + v.value, 0);
}
