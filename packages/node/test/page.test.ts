import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventHistory, type StatusServer, startStatusServer } from '../src/status-server.js';
import { BIN } from './helpers/processes.js';

// The live pages: a node's (GET / of its status server) and the launcher's page of the whole
// swarm, in headless Chromium (Debian's chromium, driven by playwright-core; nothing is
// downloaded). Where /usr/bin/chromium (or $SWARM_NODE_CHROMIUM) is missing the browser tests are
// skipped with the reason printed, except under CI (CI or SWARM_NODE_REQUIRE_BROWSER set), where
// they must run: .ci/run installs it. The process test needs `npm run build`.

const CHROMIUM = process.env.SWARM_NODE_CHROMIUM ?? '/usr/bin/chromium';
const REQUIRED = Boolean(process.env.CI) || process.env.SWARM_NODE_REQUIRE_BROWSER === '1';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM && !REQUIRED) {
  console.warn(
    `page.test.ts: skipping the browser tests: no Chromium at ${CHROMIUM} (install Debian's chromium, or set SWARM_NODE_CHROMIUM)`,
  );
}
/** Every wait here is for something to happen, not a measure of how fast: as long as a slow machine needs. */
const WAIT_MS = 240_000;

let browser: Browser | null = null;

async function openBrowser(): Promise<Browser> {
  if (!HAVE_CHROMIUM) {
    throw new Error(`no Chromium at ${CHROMIUM}: CI must run the browser tests (.ci/run installs Debian's chromium)`);
  }
  if (browser === null) {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // As known to work here: as root without the sandbox, and nothing of Chromium's own on the network.
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }
  return browser;
}

interface Watched {
  page: Page;
  /** Console errors, page errors, failed requests, error responses and requests anywhere but `origin`. */
  problems: string[];
  /** Stop recording (before closing: closing aborts /events, which is no fault of the page). */
  stop(): void;
}

async function watchedPage(url: string): Promise<Watched> {
  const page = await (await openBrowser()).newPage({ viewport: { width: 1400, height: 900 } });
  const origin = new URL(url).origin;
  const problems: string[] = [];
  let recording = true;
  const note = (text: string) => {
    if (recording) problems.push(text);
  };
  page.on('console', (message) => {
    if (message.type() === 'error') note(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => note(`page error: ${error.message}`));
  page.on('request', (request) => {
    if (new URL(request.url()).origin !== origin) note(`request to another origin: ${request.url()}`);
  });
  page.on('requestfailed', (request) => note(`request failed: ${request.url()} ${request.failure()?.errorText}`));
  page.on('response', (response) => {
    if (response.status() >= 400) note(`HTTP ${response.status()}: ${response.url()}`);
  });
  await page.goto(url);
  return {
    page,
    problems,
    stop: () => {
      recording = false;
    },
  };
}

afterAll(async () => {
  await browser?.close();
});

// What the function run in the page uses of the browser's globals (the tests are type-checked
// without the DOM library; these names are the page's own when it runs there).
interface PageElement {
  readonly textContent: string | null;
  readonly dataset: Record<string, string | undefined>;
  readonly href?: string;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { readonly length: number };
}
declare const document: PageElement & { readonly body: PageElement };
declare const window: Record<string, unknown>;

/** What a test reads off either page, in one go. */
const snapshot = () => {
  const rows = [...document.querySelectorAll('#nodes tr[data-node]')];
  return {
    /** The node page's round. */
    round: document.querySelector('#round')?.textContent ?? null,
    /** The swarm page's rows: node name → its round ('' before its first). */
    nodes: Object.fromEntries(
      rows.map((r) => [r.dataset.node ?? '', r.querySelector('td.round')?.dataset.round ?? '']),
    ),
    links: Object.fromEntries(rows.map((r) => [r.dataset.node ?? '', r.querySelector('a')?.href ?? null])),
    peers: [...document.querySelectorAll('#peers code[title]')].map((c) => c.textContent ?? ''),
    /** The node page's bootstrap peers: address, state, next try. */
    seeds: [...document.querySelectorAll('#seeds tr')].map((r) =>
      [...r.querySelectorAll('td')].map((td) => td.textContent ?? ''),
    ),
    reachability: document.querySelector('#reachability')?.textContent ?? null,
    legend: [...document.querySelectorAll('#chart-reward .u-legend .u-label')].map((l) => l.textContent ?? ''),
    canvases: document.querySelectorAll('#charts canvas, .charts canvas').length,
    markup: document.body.querySelectorAll('img, script, b, i').length,
    text: document.body.textContent ?? '',
    pwned: window.__pwned ?? null,
  };
};
type Snapshot = ReturnType<typeof snapshot>;

/** Reads the page until `test` holds; returns what it read then. */
async function until(page: Page, test: (seen: Snapshot) => boolean, what: string): Promise<Snapshot> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const seen = await page.evaluate(snapshot);
    if (test(seen)) return seen;
    if (Date.now() > deadline)
      throw new Error(
        `the page never showed ${what}; it showed ${JSON.stringify({ ...seen, text: seen.text.slice(0, 500) })}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Reads /events until `count` events have come, then stops. */
async function readEvents(url: string, count: number): Promise<{ event: string; data: unknown }[]> {
  const controller = new AbortController();
  const response = await fetch(`${url}/events`, { signal: controller.signal });
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: { event: string; data: unknown }[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event !== undefined && data !== undefined) events.push({ event, data: JSON.parse(data) });
      end = buffer.indexOf('\n\n');
    }
    if (events.length >= count) break;
  }
  controller.abort();
  return events;
}

describe('the status server', () => {
  let server: StatusServer;
  const history = new EventHistory(3);

  beforeAll(async () => {
    for (let round = 0; round < 5; round++) history.push('round', { round });
    server = await startStatusServer({ host: '127.0.0.1', port: 0, status: () => ({ ok: true }), events: history });
  });
  afterAll(async () => {
    await server.close();
  });

  it('sends a new /events client hello, then the bounded history, then each event as it comes', async () => {
    const reading = readEvents(server.url, 5);
    // Pushed once the first client is surely subscribed: after its history has come.
    setTimeout(() => history.push('round', { round: 5 }), 300);
    const events = await reading;
    expect(events.map((e) => e.event)).toEqual(['hello', 'round', 'round', 'round', 'round']);
    expect(events[0]?.data).toMatchObject({ page: 'node' });
    expect(events.slice(1).map((e) => (e.data as { round: number }).round)).toEqual([2, 3, 4, 5]);
  });

  it('serves the page, its files and uPlot from node_modules, and nothing else from disk', async () => {
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toContain('/page/node.js');
    for (const path of ['/page/node.js', '/page/common.js', '/page/page.css', '/vendor/uPlot.esm.js']) {
      const response = await fetch(`${server.url}${path}`);
      expect(response.status, path).toBe(200);
      expect((await response.text()).length, path).toBeGreaterThan(100);
    }
    for (const path of [
      '/page/../status-server.ts',
      '/page/%2e%2e/status-server.ts',
      '/vendor/uPlot.d.ts',
      '/__proto__',
    ]) {
      expect((await fetch(`${server.url}${path}`)).status, path).toBe(404);
    }
    // No registry, no /metrics.
    expect((await fetch(`${server.url}/metrics`)).status).toBe(404);
  });
});

describe.skipIf(!HAVE_CHROMIUM && !REQUIRED)('the live pages in Chromium', () => {
  it('writes what peers sent as text, never as markup', async () => {
    const hostile = '<img src=x onerror="window.__pwned=1">';
    const reason = 'reject:<b>bold</b><script>window.__pwned=2</script>';
    const history = new EventHistory();
    for (let round = 0; round < 3; round++) {
      history.push('round', {
        node: hostile,
        round,
        reward: 0.5,
        heldOut: null,
        groups: { local: 6, localUsed: 4, externalUsed: 2, zeroSignal: { local: 0, external: 0 } },
        received: { rollouts: { [reason]: 1 }, tasks: {} },
        learner: { stats: { clipFraction: 0, approxKl: 0, entropy: 0.4, meanCompletionTokens: 5 } },
      });
    }
    const server = await startStatusServer({
      host: '127.0.0.1',
      port: 0,
      events: history,
      status: () => ({
        peerId: hostile,
        mode: 'peer',
        swarmId: '<i>swarm</i>',
        addresses: [`/ip4/127.0.0.1/tcp/1/p2p/${hostile}`],
        peers: [{ id: hostile, address: '<script>window.__pwned=3</script>', score: 1 }],
        mesh: { tasks: 1, rollouts: 1 },
        round: 2,
        policyVersion: 3,
        reward: { last10: 0.5, run: 0.5 },
        externalGroupsUsed: 6,
        rollouts: {
          sent: 18,
          received: { rollouts: { [reason]: 7, accept: 3 } },
          acceptedByProducer: { [hostile]: 3 },
        },
        learner: null,
        memory: { rss: 1e8 },
        backend: { name: 'cpu', gpu: false },
        model: { source: '<img src=y onerror="window.__pwned=4">' },
        network: {
          reachability: 'private/unknown',
          relayReservations: { held: [hostile], granted: null },
          peers: { direct: 0, relayed: 1 },
          seeds: [
            {
              address: `/dns4/<img src=z onerror="window.__pwned=5">/tcp/4117/p2p/${hostile}`,
              connected: false,
              diagnosis: { problem: 'refused', message: '<script>window.__pwned=6</script>' },
              nextTry: new Date(Date.now() + 30_000).toISOString(),
            },
          ],
        },
        checkpoint: null,
        startedAt: new Date().toISOString(),
      }),
    });
    try {
      const { page, problems, stop } = await watchedPage(`${server.url}/`);
      const seen = await until(
        page,
        (p) => p.peers.length > 0 && p.round === '2' && p.seeds.length > 0,
        'its peers, round and bootstrap peers',
      );
      stop();
      await page.close();
      expect(seen.pwned).toBeNull();
      expect(seen.markup).toBe(0);
      expect(seen.text).toContain(hostile);
      expect(seen.text).toContain('<b>bold</b><script>window.__pwned=2</script>');
      expect(seen.text).toContain('<script>window.__pwned=3</script>');
      expect(seen.seeds[0]?.[1]).toBe('refused: <script>window.__pwned=6</script>');
      expect(seen.seeds[0]?.[2]).toMatch(/^in \d+s$/);
      expect(seen.reachability).toBe('not confirmed (NAT?)');
      expect(seen.canvases).toBeGreaterThan(0);
      expect(problems).toEqual([]);
    } finally {
      await server.close();
    }
  });

  describe('swarm-node swarm --nodes 2', () => {
    let out = '';
    let launcher: ChildProcess | null = null;
    const lines: string[] = [];

    afterAll(async () => {
      if (launcher !== null && launcher.exitCode === null && launcher.signalCode === null) {
        const exited = new Promise((resolve) => launcher?.once('exit', resolve));
        launcher.kill('SIGINT');
        const timer = setTimeout(() => launcher?.kill('SIGKILL'), 60_000);
        await exited;
        clearTimeout(timer);
      }
      if (out !== '') await rm(out, { recursive: true, force: true });
    }, 90_000);

    it("serves a page where every node's round advances, each node's own page too", { timeout: 600_000 }, async () => {
      out = await mkdtemp(join(tmpdir(), 'swarm-page-'));
      const child = spawn(process.execPath, [BIN, 'swarm', '--nodes', '2', '--out', join(out, 'run')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      launcher = child;
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const stderr: string[] = [];
      createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => stderr.push(line));
      const pageUrl = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
          lines.push(line);
          const match = /^swarm page (http:\/\/127\.0\.0\.1:\d+\/)/.exec(line);
          if (match?.[1] !== undefined) resolve(match[1]);
        });
        child.once('exit', () => reject(new Error(`the launcher exited:\n${lines.join('\n')}\n${stderr.join('\n')}`)));
      });

      const swarm = await watchedPage(pageUrl);
      const numbered = (nodes: Record<string, string>) =>
        Object.keys(nodes).length === 2 && Object.values(nodes).every((round) => /^\d+$/.test(round));
      // Every node shows a round, then every one a higher round than it first showed.
      const first = await until(swarm.page, (p) => numbered(p.nodes), "every node's round");
      expect(Object.keys(first.nodes).sort()).toEqual(['node-1', 'node-2']);
      const later = await until(
        swarm.page,
        (p) =>
          numbered(p.nodes) &&
          Object.entries(p.nodes).every(([name, round]) => Number(round) > Number(first.nodes[name])),
        'every node at a higher round',
      );
      // The reward chart has every node's curve and the swarm's.
      expect(later.legend).toEqual(expect.arrayContaining(['node-1', 'node-2', 'swarm mean']));
      expect(later.canvases).toBe(6);

      // node-1's own page, from its link.
      const href = later.links['node-1'] ?? '';
      expect(href).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const node = await watchedPage(href);
      const shown = await until(node.page, (p) => /^\d+$/.test(p.round ?? ''), 'its round');
      await until(node.page, (p) => Number(p.round) > Number(shown.round), 'a higher round');
      // Its peers (the other node and the bootstrap), by peer id; its charts.
      const peered = await until(node.page, (p) => p.peers.some((id) => id.startsWith('12D3KooW')), 'a peer');
      expect(peered.canvases).toBe(8);
      // Its bootstrap peer, connected, with what the launcher gave as its address.
      const seeded = await until(node.page, (p) => p.seeds[0]?.[1] === 'connected', 'its bootstrap peer connected');
      expect(seeded.seeds).toHaveLength(1);
      expect(seeded.seeds[0]?.[0]).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW/);

      node.stop();
      swarm.stop();
      expect(swarm.problems).toEqual([]);
      expect(node.problems).toEqual([]);
      await node.page.close();
      await swarm.page.close();

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(lines.some((line) => line.startsWith('stopped (SIGINT)'))).toBe(true);
    });
  });
});
