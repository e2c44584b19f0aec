/**
 * The nodes of `swarm-node swarm`: N alike from its flags, or each its own from `--config swarm.json`.
 *
 *   {
 *     "rounds": 30,
 *     "nodes": [
 *       { "name": "sharer", "count": 3, "localGroups": 4, "externalGroups": 4 },
 *       { "name": "free-rider", "share": false },
 *       { "name": "judge", "roles": ["evaluator"] },
 *       { "name": "lora", "model": "models/tiny-qwen2", "backend": "wasm", "groupSize": 4 }
 *     ]
 *   }
 *
 * The file's top-level keys are the launcher's flags in camelCase (rounds, localGroups, heldOutEvery,
 * swarm, basePort, …): a flag given on the command line beats the file's key, as with `start --config`.
 * Each entry of `nodes` is a name, a count (default 1: copies are named name-1, name-2, …) and any
 * of NODE_SETTINGS, checked as `swarm-node start` checks its flags; a node's own key beats the
 * launcher's flag and the file's top level. A node whose roles lack the solver trains nothing: it
 * re-checks and relays what it hears until the training nodes are done (the bootstrap peer is such
 * a relay too).
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Option } from 'commander';
import { settingValue } from '../config.js';
import { NodeError } from '../errors.js';
import type { Role } from '../swarm-node.js';
import { startCommand } from './start.js';

/** The `swarm-node start` settings a node's entry may give; the launcher sets the rest (network, status, rounds, data dir). */
export const NODE_SETTINGS = [
  'localGroups',
  'externalGroups',
  'groupSize',
  'learningRate',
  'passes',
  'beta',
  'heldOutEvery',
  'heldOutDifficulty',
  'fixedDifficulty',
  'backend',
  'model',
  'loraRank',
  'loraAlpha',
  'loraTargets',
  'contextLength',
  'maxNewTokens',
  'roles',
  'share',
  'seed',
] as const;

type NodeSetting = (typeof NODE_SETTINGS)[number];
type Typed = 'localGroups' | 'externalGroups' | 'heldOutEvery' | 'model' | 'roles' | 'share';

/** What one node runs with: I, J and the held-out period always (the launcher's by default), the rest where given. */
export type NodeSpec = {
  name: string;
  localGroups: number;
  externalGroups: number;
  heldOutEvery: number;
  /** A model folder (absolute) or 'embedded'. */
  model?: string;
  roles?: Role[];
  /** false: a free rider (`start --no-share`). */
  share?: boolean;
} & { [K in Exclude<NodeSetting, Typed>]?: number | string | string[] };

export type NodeDefaults = Pick<NodeSpec, 'localGroups' | 'externalGroups' | 'heldOutEvery'>;

/** Whether a node trains (its roles include the solver), so the launcher waits for its rounds. */
export const trains = (spec: NodeSpec): boolean => spec.roles === undefined || spec.roles.includes('solver');

const MAX_NODES = 64;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/;

/** `count` nodes alike, named node-1, node-2, …: `--nodes N` without a config file. */
export function uniformSpecs(count: number, defaults: NodeDefaults): NodeSpec[] {
  return Array.from({ length: count }, (_, i) => ({ name: `node-${i + 1}`, ...defaults }));
}

/** The config file's `nodes`, checked and expanded (counts), or a BAD_CONFIG error naming the file and the key. */
export function nodeSpecs(file: string, entries: unknown, defaults: NodeDefaults): NodeSpec[] {
  const bad = (message: string) => new NodeError('BAD_CONFIG', `${file}: ${message}`);
  if (!Array.isArray(entries) || entries.length === 0) {
    throw bad(
      'nodes must be a non-empty list of nodes, e.g. [{ "name": "a", "count": 2 }, { "name": "b", "share": false }]',
    );
  }
  const options = startOptions();
  const specs: NodeSpec[] = [];
  entries.forEach((entry: unknown, i) => {
    const at = `nodes[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw bad(`${at} must be an object such as { "name": "a", "count": 2 }`);
    }
    const { name, count = 1, ...given } = entry as Record<string, unknown>;
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw bad(
        `${at}.name must be 1 to 40 letters, digits, - or _ (it names the node's files), got ${JSON.stringify(name)}`,
      );
    }
    if (!Number.isInteger(count) || (count as number) < 1 || (count as number) > MAX_NODES) {
      throw bad(`${at}.count must be an integer from 1 to ${MAX_NODES}, got ${JSON.stringify(count)}`);
    }
    const settings: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(given)) {
      const option = options.get(key);
      if (!(NODE_SETTINGS as readonly string[]).includes(key) || option === undefined) {
        throw bad(
          option === undefined
            ? `${at}: unknown key ${JSON.stringify(key)}; a node's keys are name, count, ${NODE_SETTINGS.join(', ')}`
            : `${at}.${key} is the launcher's, the same for every node${key === 'rounds' ? ': give "rounds" at the top of the file or --rounds' : ''}`,
        );
      }
      settings[key] =
        key === 'model' ? modelFolder(file, `${at}.model`, value) : settingValue(file, `${at}.${key}`, option, value);
    }
    if (settings.seed !== undefined && count !== 1) {
      throw bad(`${at}.seed is one node's, but count is ${count}: give each seeded node an entry of its own`);
    }
    for (let k = 1; k <= (count as number); k++) {
      specs.push({ name: count === 1 ? name : `${name}-${k}`, ...defaults, ...settings } as NodeSpec);
    }
  });
  const names = specs.map((spec) => spec.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i || n === 'bootstrap');
  if (twice !== undefined) {
    throw bad(`two nodes would be named ${JSON.stringify(twice)} (bootstrap is the launcher's own): rename one`);
  }
  if (specs.length > MAX_NODES) throw bad(`nodes add up to ${specs.length}; at most ${MAX_NODES}`);
  if (!specs.some(trains)) {
    throw bad('no node trains: give at least one node the solver role (leave "roles" out for all three)');
  }
  return specs;
}

/** The `swarm-node start` flags that give a node its spec. */
export function startArgs(spec: NodeSpec): string[] {
  const options = startOptions();
  return NODE_SETTINGS.flatMap((key) => {
    const value = spec[key];
    const option = options.get(key) as Option;
    if (value === undefined || (key === 'model' && value === 'embedded')) return [];
    // A negated flag (--no-share) says false; a plain one (none here yet) says true.
    if (typeof value === 'boolean') return value === option.negate ? [] : [option.long as string];
    return [option.long as string, Array.isArray(value) ? value.join(',') : String(value)];
  });
}

let known: Map<string, Option> | null = null;
/** `swarm-node start`'s options by key: what a node's settings are checked and passed by. */
function startOptions(): Map<string, Option> {
  known ??= new Map(startCommand().options.map((option) => [option.attributeName(), option]));
  return known;
}

function modelFolder(file: string, key: string, value: unknown): string {
  if (value === 'embedded') return value;
  if (typeof value !== 'string' || value === '') {
    throw new NodeError('BAD_CONFIG', `${file}: ${key} must be "embedded" or the path of a Hugging Face model folder`);
  }
  const folder = resolve(value);
  let isFolder = false;
  try {
    isFolder = statSync(folder).isDirectory();
  } catch {}
  if (!isFolder) {
    throw new NodeError(
      'BAD_CONFIG',
      `${file}: ${key}: no model folder at ${folder} (relative paths are from the current folder); give a Hugging Face folder or "embedded"`,
    );
  }
  return folder;
}
