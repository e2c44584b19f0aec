import './polyfill.js';
import { readFileSync } from 'node:fs';
import { SapoError } from '@swarm-node/sapo';
import { TaskError } from '@swarm-node/tasks';
import { Command, CommanderError } from 'commander';
import { doctorCommand } from './commands/doctor.js';
import { evalCommand } from './commands/eval.js';
import { exportCommand } from './commands/export.js';
import { idCommand, pskCommand, statusCommand } from './commands/node-info.js';
import { bootstrapCommand, startCommand } from './commands/start.js';
import { SwarmLaunchError, swarmCommand, watchLauncher } from './commands/swarm.js';
import { tasksCommand } from './commands/tasks.js';
import { NodeError } from './errors.js';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Exit codes: 0 success, 1 failure at run time, 2 bad usage (flags, values). */
export const EXIT_USAGE = 2;
export const EXIT_RUNTIME = 1;

export function createProgram(): Command {
  return new Command('swarm-node')
    .description('A peer-to-peer swarm reinforcement-learning node: gossip rollouts, not gradients.')
    .version(version)
    .addCommand(startCommand())
    .addCommand(bootstrapCommand())
    .addCommand(swarmCommand())
    .addCommand(idCommand())
    .addCommand(statusCommand())
    .addCommand(pskCommand())
    .addCommand(doctorCommand())
    .addCommand(evalCommand())
    .addCommand(exportCommand())
    .addCommand(tasksCommand());
}

/** Runs the command line and resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  // A node that `swarm-node swarm` started stops when the launcher is gone (commands/swarm.ts).
  watchLauncher();
  const program = createProgram();
  program.exitOverride();
  for (const command of program.commands) exitOverrideAll(command);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit with 0; commander already printed its message.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (error instanceof TaskError) {
      console.error(`error: ${error.message}`);
      return EXIT_USAGE;
    }
    if (error instanceof NodeError) {
      console.error(`error: ${error.message}`);
      return error.isUsage ? EXIT_USAGE : EXIT_RUNTIME;
    }
    if (error instanceof SwarmLaunchError) {
      console.error(`error: ${error.message}`);
      return error.exitCode;
    }
    // A bad checkpoint, an unusable backend: the message says what to do.
    if (error instanceof SapoError) {
      console.error(`error: ${error.message}`);
      return EXIT_RUNTIME;
    }
    throw error;
  }
}

function exitOverrideAll(command: Command): void {
  command.exitOverride();
  for (const child of command.commands) exitOverrideAll(child);
}
