/**
 * @swarm-node/node: the swarm-node process. For now, the command line; the libp2p host, wire
 * protocol and operator surface arrive with the node issue.
 */
export { createProgram, EXIT_USAGE, main } from './cli.js';
