/**
 * @swarm-node/node: the swarm-node process — the libp2p host, the wire protocol, the gossip
 * transport with its validators and peer scoring, the operator's HTTP surface, and the command line.
 * The only package that knows about libp2p.
 */
import './polyfill.js';

export { createProgram, EXIT_RUNTIME, EXIT_USAGE, main } from './cli.js';
export type { NodeReport, NodeSpec, SwarmReport } from './commands/swarm.js';
export { DEFAULT_BOOTSTRAP, DEFAULT_DATA_DIR } from './config.js';
export { NodeError, type NodeErrorCode } from './errors.js';
export { GossipTransport, type GossipTransportOptions } from './gossip-transport.js';
export { createHost, dhtProtocol, type Host, type HostOptions, SCORE_THRESHOLDS, TOPIC_SCORE } from './host.js';
export { type Identity, loadIdentity, loadOrCreateIdentity } from './identity.js';
export { type StatusServer, startStatusServer } from './status-server.js';
export { type NodeOptions, type NodeStatus, type PeerWait, type Role, SwarmNode, startNode } from './swarm-node.js';
export {
  decodeMessage,
  encodeMessage,
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  swarmIdProblem,
  TOPICS,
  topicName,
} from './wire/index.js';
