#!/usr/bin/env node
// Thin launcher: the command line is compiled TypeScript in ../dist.
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/cli.js', import.meta.url);
try {
  const { main } = await import(cli.href);
  process.exitCode = await main(process.argv);
} catch (error) {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && error.message.includes(fileURLToPath(cli))) {
    console.error('swarm-node is not built yet: run `npm run build` in the repository root.');
    process.exitCode = 1;
  } else {
    throw error;
  }
}
