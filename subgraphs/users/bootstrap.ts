import { mkdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../lib/logging.js';
import type { BootstrapResult } from './store.js';

/** Where `mariner serve users` puts a generated bootstrap admin key, under the data dir. */
export const GENERATED_ADMIN_API_KEY_FILE = 'bootstrap-admin-api-key';

/** Logs what a start's bootstrap changed that an operator must know of. Never a key. */
export function logBootstrap(result: BootstrapResult, logger: Logger): void {
  if (result.revokedPreviousKey) {
    logger.warn('MARINER_ADMIN_API_KEY changed: the previous bootstrap admin API key is revoked and no longer works');
  }
  for (const conflict of result.namespaceConflicts) {
    logger.warn(
      { namespace: conflict.namespace, projectId: conflict.projectId, keptBy: conflict.claimedByProjectId },
      'two projects were assigned one namespace; the older project keeps it and the newer one lost those assignments (users.namespace_claim_conflicts): assign it a namespace of its own',
    );
  }
}

/**
 * `mariner serve` runs where its output is collected (pod logs, log shippers), so a generated key is
 * never written there: it goes to a file readable by this user only, and the log says where. The
 * operator reads it once, keeps it as MARINER_ADMIN_API_KEY, and deletes the file. If the file cannot be
 * written, the key is shown nowhere; a fixed MARINER_ADMIN_API_KEY on the next start replaces it.
 */
export async function saveGeneratedAdminKey(secret: string, dataDir: string, logger: Logger): Promise<void> {
  const file = path.join(dataDir, GENERATED_ADMIN_API_KEY_FILE);
  try {
    await mkdir(dataDir, { recursive: true });
    // A file left from an earlier database would keep its old mode and content: replace it.
    await unlink(file).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    logger.warn(
      { file },
      'no MARINER_ADMIN_API_KEY: generated a bootstrap admin API key into this file (readable by this user only); read it once, keep it as MARINER_ADMIN_API_KEY, and delete the file',
    );
  } catch (error) {
    logger.error(
      { file, error: (error as Error).message },
      'could not write the generated bootstrap admin API key, which is shown nowhere: set MARINER_ADMIN_API_KEY and restart (the generated key is then revoked)',
    );
  }
}
