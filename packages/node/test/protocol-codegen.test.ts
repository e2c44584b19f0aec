/**
 * The committed protobuf code (packages/node/src/wire/messages.ts) is exactly what the node
 * package's `protons` script generates from messages.proto: an edited schema without regenerated
 * code, or hand edits to the generated code, fail here. `npm run check:protons` runs this alone.
 *
 * It runs that very script (read from packages/node/package.json, so the check cannot drift from
 * it) on a copy of the schema in a temporary directory, so the working tree is never written.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const PACKAGE = fileURLToPath(new URL('..', import.meta.url));
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const SCHEMA = 'src/wire/messages.proto';
const GENERATED = 'src/wire/messages.ts';

it('messages.ts is what `npm run protons -w packages/node` generates from messages.proto', () => {
  const script = (JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8')) as { scripts: { protons: string } })
    .scripts.protons;
  // The script names its files relative to the package; the copy keeps that layout.
  expect(script).toContain(SCHEMA);
  const scratch = mkdtempSync(join(tmpdir(), 'swarm-node-protons-'));
  try {
    mkdirSync(join(scratch, 'src/wire'), { recursive: true });
    writeFileSync(join(scratch, SCHEMA), readFileSync(join(PACKAGE, SCHEMA)));
    // As npm would run it: through a shell, with the workspace's binaries (protons) on the PATH.
    const bins = [join(PACKAGE, 'node_modules/.bin'), join(ROOT, 'node_modules/.bin')];
    execFileSync('sh', ['-c', script], {
      cwd: scratch,
      env: { ...process.env, PATH: [...bins, process.env.PATH ?? ''].join(delimiter) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const generated = readFileSync(join(scratch, GENERATED), 'utf8');
    const committed = readFileSync(join(PACKAGE, GENERATED), 'utf8');
    const firstDifference = generated.split('\n').findIndex((line, i) => line !== committed.split('\n')[i]);
    expect(
      generated === committed,
      `packages/node/${GENERATED} differs from what protons generates from packages/node/${SCHEMA} ` +
        `(first at line ${firstDifference + 1}). Run \`npm run protons -w packages/node\` and commit the result; ` +
        'never edit the generated file by hand.',
    ).toBe(true);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}, 60_000);
