/**
 * Settings for `start` and `bootstrap`: each comes from a flag, else a `SWARM_NODE_*` environment
 * variable, else the JSON config file (`--config`), else its default — in that order.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { NodeError } from './errors.js';

/** Where a node keeps its identity and checkpoints unless told otherwise. */
export const DEFAULT_DATA_DIR = join(homedir(), '.swarm-node');

/** The seed peers a node dials when none are given. None are run yet: a node on the defaults finds peers on its LAN (mDNS). */
export const DEFAULT_BOOTSTRAP: readonly string[] = [];

/** Parses a whole number from `min` to `max` for a flag. */
export function integer(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value.trim());
    if (!/^\d+$/.test(value.trim()) || n < min || n > max) {
      throw new InvalidArgumentError(
        max === Number.MAX_SAFE_INTEGER
          ? min === 1
            ? `${name} must be a positive integer.`
            : `${name} must be an integer of at least ${min}.`
          : `${name} must be an integer from ${min} to ${max}.`,
      );
    }
    return n;
  };
}

export function positiveNumber(name: string) {
  return (value: string): number => {
    const number = Number(value);
    if (value.trim() === '' || !Number.isFinite(number) || number <= 0) {
      throw new InvalidArgumentError(`${name} must be a positive number.`);
    }
    return number;
  };
}

export function nonNegativeNumber(name: string) {
  return (value: string): number => {
    const number = Number(value);
    if (value.trim() === '' || !Number.isFinite(number) || number < 0) {
      throw new InvalidArgumentError(`${name} must be a number of at least 0.`);
    }
    return number;
  };
}

const list = (value: string): string[] =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);

/**
 * A comma-separated list that a repeated flag adds to (`--bootstrap A --bootstrap B` keeps both),
 * where the default is replaced, not added to: commander hands the default in as `previous` first.
 */
const listParsers = new WeakSet<(value: string, previous: string[] | undefined) => string[]>();
const repeatableList = (defaults: readonly string[]) => {
  const parse = (value: string, previous: string[] | undefined): string[] =>
    previous === undefined || previous === defaults ? list(value) : [...previous, ...list(value)];
  listParsers.add(parse);
  return parse;
};

/**
 * An option that can also come from `SWARM_NODE_<FLAG>` (--data-dir: SWARM_NODE_DATA_DIR). For a
 * negated flag the variable keeps the "no" (SWARM_NODE_NO_MDNS): any value of it turns the thing off.
 */
export function setting(flags: string, description: string): Option {
  const option = new Option(flags, description);
  return option.env(`SWARM_NODE_${option.name().replaceAll('-', '_').toUpperCase()}`);
}

/** Options every long-running command shares: where it keeps state and how it reaches the swarm. */
export function addNetworkOptions(command: Command, defaults: { dataDir: string; listen: string }): Command {
  const listen = list(defaults.listen);
  const seeds = [...DEFAULT_BOOTSTRAP];
  return command
    .addOption(new Option('--config <file>', 'JSON file of settings (keys as the long flags in camelCase)'))
    .addOption(setting('--data-dir <dir>', 'identity, checkpoints and status address').default(defaults.dataDir))
    .addOption(setting('--swarm <id>', 'swarm id: names the topics and the DHT').default('main'))
    .addOption(
      setting('--listen <addrs>', 'comma-separated multiaddrs to listen on (or the flag repeated)')
        .default(listen, defaults.listen)
        .argParser(repeatableList(listen)),
    )
    .addOption(
      setting(
        '--announce <addrs>',
        'comma-separated multiaddrs to tell peers instead (or the flag repeated)',
      ).argParser(repeatableList([])),
    )
    .addOption(
      setting(
        '--bootstrap <addrs>',
        'comma-separated seed multiaddrs, each ending /p2p/<peer id> (or the flag repeated)',
      )
        .default(seeds, DEFAULT_BOOTSTRAP.length === 0 ? 'none' : DEFAULT_BOOTSTRAP.join(','))
        .argParser(repeatableList(seeds)),
    )
    .addOption(setting('--no-mdns', 'do not look for peers on the local network'))
    .addOption(setting('--upnp', 'ask the router to forward a port (UPnP / NAT-PMP), so peers can dial in directly'))
    .addOption(setting('--psk <file>', 'pre-shared key file: only peers with the same key can connect'))
    .addOption(
      setting('--min-peers <n>', 'keep dialling until this many peers are connected')
        .default(4)
        .argParser(integer('--min-peers', 0)),
    )
    .addOption(
      setting('--max-connections <n>', 'connection limit (default: 100, bootstrap 2000)').argParser(
        integer('--max-connections', 1),
      ),
    )
    .addOption(setting('--status-host <host>', 'address of the /status and /metrics HTTP server').default('127.0.0.1'))
    .addOption(
      setting('--status-port <port>', 'its port; 0 picks a free one (written to <data-dir>/status.address)')
        .default(0)
        .argParser(integer('--status-port', 0, 65535)),
    )
    .addOption(setting('--no-status', 'do not serve /status and /metrics'))
    .addOption(new Option('--json', 'log one JSON object per line, for machines').default(false));
}

/**
 * The command's options with the config file applied: a key fills an option only where neither a
 * flag nor an environment variable set it. Unknown keys and values of the wrong type are errors.
 * `settings`: the file's settings when the caller has read it (and kept some keys for itself).
 */
export function resolveSettings<T extends object>(command: Command, settings?: Record<string, unknown>): T {
  const values = command.opts<T>() as Record<string, unknown>;
  const file = values.config as string | undefined;
  if (file === undefined) return values as T;
  const options = new Map(command.options.filter((o) => o.long !== '--config').map((o) => [o.attributeName(), o]));
  for (const [key, value] of Object.entries(settings ?? readConfigFile(file))) {
    const option = options.get(key);
    if (option === undefined) {
      throw new NodeError(
        'BAD_CONFIG',
        `${file}: unknown setting ${JSON.stringify(key)}; known settings are ${[...options.keys()].join(', ')}`,
      );
    }
    const source = command.getOptionValueSource(key);
    if (source === 'cli' || source === 'env') continue;
    values[key] = settingValue(file, key, option, value);
  }
  return values as T;
}

/** The JSON object of settings in a config file. */
export function readConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new NodeError('BAD_CONFIG', `cannot read the config file ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new NodeError('BAD_CONFIG', `the config file ${file} must hold a JSON object of settings`);
  }
  return parsed as Record<string, unknown>;
}

/** A config file's value for an option, parsed as its flag would be; `key` names it in errors. */
export function settingValue(file: string, key: string, option: Option, value: unknown): unknown {
  // A flag without a value (--json, --no-mdns): commander's isBoolean() leaves out negated flags.
  if (!option.required && !option.optional) {
    if (typeof value !== 'boolean') throw new NodeError('BAD_CONFIG', `${file}: ${key} must be true or false`);
    return value;
  }
  const text = Array.isArray(value) && value.every((v) => typeof v === 'string') ? value.join(',') : value;
  if (typeof text !== 'string' && typeof text !== 'number') {
    throw new NodeError(
      'BAD_CONFIG',
      `${file}: ${key} must be a ${listParsers.has(option.parseArg as never) ? 'list of strings' : 'string or number'}`,
    );
  }
  if (option.parseArg === undefined) return String(text);
  try {
    return option.parseArg(String(text), undefined);
  } catch (error) {
    throw new NodeError('BAD_CONFIG', `${file}: ${key}: ${(error as Error).message}`);
  }
}
