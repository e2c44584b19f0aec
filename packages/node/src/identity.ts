/**
 * The node's Ed25519 identity, kept in the data dir so its peer id survives restarts. The file holds
 * the libp2p protobuf encoding of the private key, readable by its owner only (mode 0600).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { NodeError } from './errors.js';

export const IDENTITY_FILE = 'identity.key';

export interface Identity {
  privateKey: PrivateKey;
  peerId: string;
  file: string;
  /** True when this call made the key. */
  created: boolean;
}

/** Loads the identity in `dataDir`, making one (and the directory) when there is none. */
export async function loadOrCreateIdentity(dataDir: string): Promise<Identity> {
  const file = join(dataDir, IDENTITY_FILE);
  await ensureDataDir(dataDir);
  const existing = await loadIdentity(dataDir);
  if (existing !== null) return existing;
  const privateKey = await generateKeyPair('Ed25519');
  // Written to a temporary file and renamed, so a crash never leaves half a key to refuse later.
  // A random name: in a container the pid repeats across restarts, and a crash leaves the file.
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600).catch((error: unknown) => {
    throw new NodeError('DATA_DIR_UNUSABLE', `cannot write ${temporary}: ${(error as Error).message}`, {
      cause: error,
    });
  });
  try {
    await handle.writeFile(privateKeyToProtobuf(privateKey));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), file, created: true };
}

/** The identity in `dataDir`, or null when it has none; a damaged key file is an error, never replaced. */
export async function loadIdentity(dataDir: string): Promise<Identity | null> {
  const file = join(dataDir, IDENTITY_FILE);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new NodeError('DATA_DIR_UNUSABLE', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  let privateKey: PrivateKey;
  try {
    privateKey = privateKeyFromProtobuf(bytes);
  } catch (error) {
    throw new NodeError(
      'IDENTITY_CORRUPT',
      `${file} is not a libp2p private key (${(error as Error).message}). Restore it from a backup to keep ` +
        'this peer id, or move it away to make a new identity.',
      { cause: error },
    );
  }
  if (privateKey.type !== 'Ed25519') {
    throw new NodeError(
      'IDENTITY_CORRUPT',
      `${file} holds a ${privateKey.type} key; swarm-node uses Ed25519 identities.`,
    );
  }
  // Tighten a key file someone made world-readable; the key is the node's identity.
  if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600);
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), file, created: false };
}

/**
 * Deletes what a process killed during a write leaves in `dataDir` — an identity key's temp file, the
 * writability probe — and returns their names. Run at start, whatever pid wrote them: in a container
 * the node is always pid 1. The identity itself is written by rename, so it is whole or absent.
 */
export async function removeLeftovers(dataDir: string): Promise<string[]> {
  const names = await readdir(dataDir);
  const leftovers = names.filter((name) => LEFTOVER.test(name));
  await Promise.all(leftovers.map((name) => rm(join(dataDir, name), { force: true })));
  return leftovers;
}

/** Temp files of an identity write and the writability probe (see loadOrCreateIdentity, ensureDataDir). */
const LEFTOVER = /^(identity\.key\.[0-9a-f]+\.tmp|\.write-test-\d+)$/;

/** Creates `dataDir` (mode 0700) when missing and checks that the node can write into it. */
export async function ensureDataDir(dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const probe = join(dataDir, `.write-test-${process.pid}`);
    const handle = await open(probe, 'w');
    await handle.close();
    await rm(probe);
  } catch (error) {
    throw new NodeError(
      'DATA_DIR_UNUSABLE',
      `the data directory ${dataDir} is not writable (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); ` +
        'choose another with --data-dir or fix its permissions.',
      { cause: error },
    );
  }
}
