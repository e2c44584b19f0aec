/**
 * The swarm page's screenshot in docs/: a real `swarm-node swarm` on loopback, its page opened in
 * headless Chromium (Debian's, through playwright-core, as packages/node/test/page.test.ts does),
 * photographed once every node has run --rounds rounds, then the swarm stopped with Ctrl-C.
 *
 *   npx tsx scripts/screenshot-swarm.ts                      # 3 nodes, 12 rounds → docs/swarm-page.png
 *   npx tsx scripts/screenshot-swarm.ts --nodes 4 --rounds 20 --file /tmp/page.png
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '12' },
    file: { type: 'string', default: fileURLToPath(new URL('../docs/swarm-page.png', import.meta.url)) },
    chromium: { type: 'string', default: process.env.SWARM_NODE_CHROMIUM ?? '/usr/bin/chromium' },
  },
});
const rounds = Number(values.rounds);
/** The page's DOM, typed as much as this script reads of it (the scripts' tsconfig has no DOM library). */
declare const document: {
  querySelectorAll(selector: string): Iterable<{ dataset: Record<string, string | undefined> }>;
};
const BIN = fileURLToPath(new URL('../packages/node/bin/swarm-node.js', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'swarm-screenshot-'));

// No --rounds for the launcher: the page is photographed while every node is still up.
const launcher = spawn(process.execPath, [BIN, 'swarm', '--nodes', values.nodes, '--out', join(out, 'run')], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const stopped = new Promise((resolve) => launcher.once('exit', resolve));
try {
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: launcher.stdout }).on('line', (line) => {
      const match = /^swarm page (http:\/\/127\.0\.0\.1:\d+\/)/.exec(line);
      if (match?.[1] !== undefined) resolve(match[1]);
    });
    launcher.once('exit', (code) => reject(new Error(`swarm-node swarm exited (${code}) before printing its page`)));
  });
  console.log(`swarm page ${url}: waiting for every node to reach round ${rounds}`);
  const browser = await chromium.launch({
    executablePath: values.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(url);
    // The rounds column as the page shows it (the page's policy allows no eval, so polled from here).
    const lowestRound = () => {
      const cells = [...document.querySelectorAll('#nodes tr[data-node] td.round')];
      return { nodes: cells.length, lowest: Math.min(...cells.map((cell) => Number(cell.dataset.round || -1))) };
    };
    for (;;) {
      const seen = await page.evaluate(lowestRound);
      if (seen.nodes === Number(values.nodes) && seen.lowest >= rounds - 1) break;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    await page.waitForTimeout(1500); // the charts draw on the next animation frames
    await page.screenshot({ path: values.file, fullPage: true });
    console.log(`wrote ${values.file}`);
  } finally {
    await browser.close();
  }
} finally {
  launcher.kill('SIGINT');
  await stopped;
  rmSync(out, { recursive: true, force: true });
}
