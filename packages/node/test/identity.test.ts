import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeError } from '../src/errors.js';
import { loadOrCreateIdentity } from '../src/identity.js';

describe('the node identity', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'identity-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is an Ed25519 key made once, readable by its owner only, and the same peer id after a restart', async () => {
    const created = await loadOrCreateIdentity(join(dir, 'data'));
    expect(created.created).toBe(true);
    expect(created.peerId).toMatch(/^12D3KooW/);
    expect((await stat(created.file)).mode & 0o777).toBe(0o600);
    const loaded = await loadOrCreateIdentity(join(dir, 'data'));
    expect(loaded).toMatchObject({ created: false, peerId: created.peerId });
  });

  it('refuses a damaged key file and leaves it in place', async () => {
    const data = join(dir, 'data');
    const { file } = await loadOrCreateIdentity(data);
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, 10));
    await expect(loadOrCreateIdentity(data)).rejects.toMatchObject({ code: 'IDENTITY_CORRUPT' });
    expect((await readFile(file)).length).toBe(10);
  });

  it('says when the data directory cannot be written', async () => {
    // A path under a regular file fails for every user, root included (CI may run as root).
    await writeFile(join(dir, 'a-file'), 'not a directory');
    const error = await loadOrCreateIdentity(join(dir, 'a-file', 'data')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NodeError);
    expect(error).toMatchObject({ code: 'DATA_DIR_UNUSABLE' });
    expect((error as Error).message).toMatch(/--data-dir/);
  });
});
