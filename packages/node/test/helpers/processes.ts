/**
 * Real `swarm-node` processes for tests: spawn one with --json logs, wait for its events, ask its
 * /status, stop it with a signal.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/swarm-node.js', import.meta.url));

export interface LogLine {
  event: string;
  [key: string]: unknown;
}

export interface NodeProcess {
  child: ChildProcess;
  lines: LogLine[];
  stderr: string[];
  /** Resolves with the first log line (already seen or to come) that satisfies `test`. */
  waitFor(test: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<number | null>;
}

/** `wrapper` runs the node through another command that execs it, e.g. ['ip', 'netns', 'exec', 'ns1']. */
export function spawnNode(args: string[], env: Record<string, string> = {}, wrapper: string[] = []): NodeProcess {
  const [command = process.execPath, ...rest] = [...wrapper, process.execPath, BIN, ...args, '--json'];
  const child = spawn(command, rest, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines: LogLine[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      lines.push({ event: 'text', text });
    }
    for (const wake of waiters) wake();
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (text) => stderr.push(text));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  exited.then(() => {
    for (const wake of waiters) wake();
  });
  const waitFor = (test: (line: LogLine) => boolean, what: string, timeoutMs = 60_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; stderr: ${stderr.join('\n')}`));
      }, timeoutMs);
      const check = () => {
        const found = lines.find(test);
        if (found !== undefined) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        } else if (child.exitCode !== null) {
          clearTimeout(timer);
          waiters.delete(check);
          reject(new Error(`process exited (${child.exitCode}) before ${what}; stderr: ${stderr.join('\n')}`));
        }
      };
      waiters.add(check);
      check();
    });
  return { child, lines, stderr, waitFor, exited };
}

export async function fetchStatus(url: string): Promise<Record<string, unknown> & { peerId: string }> {
  const response = await fetch(`${url}/status`);
  return (await response.json()) as Record<string, unknown> & { peerId: string };
}

/** Polls `probe` until it returns a value that is not undefined. */
export async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

export async function stopNode(node: NodeProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (node.child.exitCode === null) node.child.kill(signal);
  return node.exited;
}
