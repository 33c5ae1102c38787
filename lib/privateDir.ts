import { chmodSync, mkdirSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';

/**
 * Folders that hold secrets and tenants' data (the data dir, the embedded database, the filesystem
 * object store) are this user's alone: mode 0700, so no other local user can enter them, whatever
 * the modes of the files inside. That matters because PGlite writes its files 0666 whatever the
 * umask; a private folder is the one setting that covers them. An existing folder is tightened too
 * (earlier versions made them 0755).
 */
export const PRIVATE_DIR_MODE = 0o700;

/** Files Mariner writes into such a folder (keys, objects): owner read/write only. */
export const PRIVATE_FILE_MODE = 0o600;

export function ensurePrivateDirSync(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(dir, PRIVATE_DIR_MODE);
}

export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(dir, PRIVATE_DIR_MODE);
}
