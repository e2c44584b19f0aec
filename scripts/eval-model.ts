/**
 * Pass rates of a checkpoint on every task family and difficulty: the table in docs/MODEL.md.
 * The same as `swarm-node eval` (see `npx swarm-node eval --help` for the flags):
 *
 *   npm run eval:model                                   # the embedded base model
 *   npm run eval:model -- --checkpoint path --tasks 32 --samples 8
 */
import { main } from '@swarm-node/node';

process.exitCode = await main([process.argv[0] as string, 'swarm-node', 'eval', ...process.argv.slice(2)]);
