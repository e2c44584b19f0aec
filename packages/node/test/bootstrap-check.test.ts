import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { generateKey } from '@libp2p/pnet';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, describe, expect, it } from 'vitest';
import { type Diagnosis, diagnoseDial, type SeedReport } from '../src/bootstrap-check.js';
import { createHost, type Host } from '../src/host.js';
import { BIN, eventually } from './helpers/processes.js';

const swarmKey = () => {
  const key = new Uint8Array(95);
  generateKey(key);
  return key;
};

/** A port nothing listens on: one the system just gave out and took back. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A port where TCP connections get no answer, as behind a firewall that drops them: a process that
 * listens with an accept queue of 2 and then never runs again, its queue filled by two connections,
 * so that the kernel drops every later SYN.
 */
async function silentPort(sockets: Socket[], children: ChildProcess[]): Promise<number> {
  const child = spawn(process.execPath, [
    '-e',
    `require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () {
      process.stdout.write(this.address().port + '\\n', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0));
    });`,
  ]);
  children.push(child);
  const port = await new Promise<number>((resolve) => child.stdout.once('data', (data) => resolve(Number(data))));
  for (let i = 0; i < 2; i++) {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    await new Promise((resolve) => socket.once('connect', resolve));
  }
  return port;
}

// Real libp2p hosts on loopback, each dialling a seed that is wrong in one way.
describe('a bootstrap peer that cannot be used is diagnosed', () => {
  const hosts: Host[] = [];
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    for (const socket of sockets) socket.destroy();
    await Promise.all([...hosts.map((h) => h.stop()), ...servers.map((s) => new Promise((r) => s.close(r)))]);
  });

  const host = async (swarmId: string, psk?: Uint8Array, privateKey?: PrivateKey, listen = '/ip4/127.0.0.1/tcp/0') => {
    const h = await createHost({
      privateKey: privateKey ?? (await generateKeyPair('Ed25519')),
      swarmId,
      listen: [listen],
      mdns: false,
      minPeers: 0,
      ...(psk === undefined ? {} : { psk }),
    });
    hosts.push(h);
    return h;
  };
  const addressOf = (h: Host) => h.addresses()[0] as string;
  /** A dial from a new host of swarm "main", so that no case shares a connection with another. */
  const diagnose = async (address: string, psk?: Uint8Array) =>
    diagnoseDial((await host('main', psk)).libp2p, multiaddr(address), { swarmId: 'main', psk: psk !== undefined });

  it('says refused, unresolvable, no answer, another peer id, another swarm, a stalled handshake and another key apart', async () => {
    const [seed, otherSwarm, pskSeed] = [await host('main'), await host('other'), await host('main', swarmKey())];
    const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString();
    const port = await closedPort();
    // Accepts TCP connections and never says a word, like a wrong service or a stuck process.
    const blackhole = createServer((socket) => sockets.push(socket));
    servers.push(blackhole);
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const blackholePort = (blackhole.address() as { port: number }).port;
    const seedTcp = addressOf(seed).replace(/\/p2p\/.*$/, '');
    const silent = await silentPort(sockets, children);

    const [ok, refused, unresolvable, noAnswer, wrongPeer, swarm, stalled, keyHere, keyThere, otherKey] =
      await Promise.all([
        diagnose(addressOf(seed)),
        diagnose(`/ip4/127.0.0.1/tcp/${port}/p2p/${stranger}`),
        diagnose(`/dns4/no-such-seed.invalid/tcp/4117/p2p/${stranger}`),
        diagnose(`/ip4/127.0.0.1/tcp/${silent}/p2p/${stranger}`),
        diagnose(`${seedTcp}/p2p/${stranger}`),
        diagnose(addressOf(otherSwarm)),
        diagnose(`/ip4/127.0.0.1/tcp/${blackholePort}/p2p/${stranger}`),
        diagnose(addressOf(seed), swarmKey()),
        diagnose(addressOf(pskSeed)),
        diagnose(addressOf(pskSeed), swarmKey()),
      ]);
    expect(ok).toBeNull();
    expect(refused).toMatchObject({ problem: 'refused', message: expect.stringContaining(`127.0.0.1:${port}`) });
    expect(unresolvable).toMatchObject({
      problem: 'unresolvable',
      message: expect.stringContaining('no-such-seed.invalid'),
    });
    expect(noAnswer).toMatchObject({
      problem: 'timed-out',
      message: expect.stringContaining(`no answer from 127.0.0.1:${silent}`),
    });
    // It names the peer that is there, so the operator can tell a typo from a reinstalled seed.
    expect(wrongPeer).toMatchObject({
      problem: 'wrong-peer-id',
      message: expect.stringContaining(`is ${seed.libp2p.peerId}, not ${stranger}`),
    });
    expect(swarm).toMatchObject({ problem: 'different-swarm', message: expect.stringContaining('--swarm other') });
    expect(stalled).toMatchObject({
      problem: 'handshake-failed',
      message: expect.stringContaining(`127.0.0.1:${blackholePort} accepts connections but the libp2p handshake`),
    });
    // Another key garbles the handshake (one side resets it or both wait, as it happens): the
    // diagnosis points at --psk, and says when this node has none.
    for (const diagnosis of [keyHere, keyThere, otherKey] as Diagnosis[]) {
      expect(diagnosis).toMatchObject({
        problem: 'handshake-failed',
        message: expect.stringMatching(/different pre-shared key \(--psk/),
      });
    }
    expect(keyThere?.message).toContain('this node has none');
    // A seed of another swarm is no use: the dialler does not stay connected to it.
    const swarmDialler = hosts.find((h) => h.libp2p.getConnections(otherSwarm.libp2p.peerId).length > 0);
    expect(swarmDialler).toBeUndefined();
  });

  it('tells a seed’s diagnosis once, not again while it stays the same, and when the seed answers', async () => {
    const key = await generateKeyPair('Ed25519');
    const port = await closedPort();
    const seedAddress = `/ip4/127.0.0.1/tcp/${port}/p2p/${peerIdFromPrivateKey(key)}`;
    const node = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      swarmId: 'main',
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      // The keeper is off: this test redials, as the keeper would.
      minPeers: 0,
      bootstrap: [seedAddress],
    });
    hosts.push(node);
    const reports: SeedReport[] = [];
    node.seeds.onReport((report) => reports.push(report));
    const redialUntil = <T>(probe: () => T | undefined, what: string) =>
      eventually(async () => {
        node.seeds.redial(new Set(node.libp2p.getPeers().map(String)));
        await new Promise((resolve) => setTimeout(resolve, 200));
        return probe();
      }, what);

    const first = await redialUntil(() => node.seeds.states()[0]?.nextTry ?? undefined, 'a first diagnosis');
    expect(node.seeds.alone()).toBe(true);
    // Backoff passed, dialled again, the same diagnosis: nothing new is told.
    await redialUntil(() => {
      const next = node.seeds.states()[0]?.nextTry;
      return next !== null && next !== first ? next : undefined;
    }, 'a second diagnosis');
    expect(reports.map((r) => r.diagnosis?.problem)).toEqual(['refused']);
    expect(reports[0]).toMatchObject({ address: seedAddress, nextTry: expect.any(Date) });

    await host('main', undefined, key, `/ip4/127.0.0.1/tcp/${port}`);
    await redialUntil(() => (reports.length > 1 ? true : undefined), 'the seed to answer');
    expect(reports.map((r) => r.diagnosis?.problem ?? 'answers')).toEqual(['refused', 'answers']);
    expect(node.seeds.states()).toEqual([{ address: seedAddress, connected: true, diagnosis: null, nextTry: null }]);
  });
});

describe('swarm-node start with a seed that does not answer', () => {
  let dir = '';
  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('tells the person why, once, and trains its rounds alone', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bootstrap-check-'));
    const port = await closedPort();
    const seed = `/ip4/127.0.0.1/tcp/${port}/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519'))}`;
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [
        BIN,
        'start',
        '--data-dir',
        dir,
        '--rounds',
        '2',
        '--bootstrap',
        seed,
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
      ].concat(['--no-mdns', '--no-status']),
      { encoding: 'utf8', timeout: 240_000 },
    );
    const escaped = seed.replaceAll('/', '\\/');
    expect(stderr).toMatch(
      new RegExp(
        `^bootstrap peer ${escaped} unreachable \\(refused\\): nothing listens at 127\\.0\\.0\\.1:${port}`,
        'm',
      ),
    );
    expect(stderr.match(/unreachable/g)).toHaveLength(1);
    expect(stderr).toMatch(/^no bootstrap peer answers: training alone until one does/m);
    expect(stdout.match(/^round \d+ +reward/gm)).toHaveLength(2);
  });

  it('logs each seed’s diagnosis and the training alone as JSON events with --json, for every --bootstrap given', async () => {
    const seeds = await Promise.all(
      [0, 1].map(
        async () =>
          `/ip4/127.0.0.1/tcp/${await closedPort()}/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519'))}`,
      ),
    );
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BIN, 'start', '--data-dir', join(dir, 'json'), '--rounds', '2', '--json', '--no-mdns', '--no-status']
        .concat(['--listen', '/ip4/127.0.0.1/tcp/0'])
        .concat(seeds.flatMap((seed) => ['--bootstrap', seed])),
      { encoding: 'utf8', timeout: 240_000 },
    );
    const events = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { event: string; [key: string]: unknown });
    const told = events.filter((e) => e.event === 'seed');
    expect(told.map((e) => e.address).sort()).toEqual([...seeds].sort());
    for (const event of told) {
      expect(event).toMatchObject({ problem: 'refused', message: expect.stringMatching(/^nothing listens at/) });
      expect(Date.parse(event.nextTry as string)).toBeGreaterThan(Date.parse(event.time as string));
    }
    expect(events.filter((e) => e.event === 'alone')).toMatchObject([
      { note: expect.stringMatching(/training alone/) },
    ]);
    // Told once both had failed, not after the first.
    const index = (test: (e: { event: string }) => boolean) => events.findIndex(test);
    expect(index((e) => e.event === 'alone')).toBeGreaterThan(events.findLastIndex((e) => e.event === 'seed'));
    expect(events.filter((e) => e.event === 'round')).toHaveLength(2);
  });
});
