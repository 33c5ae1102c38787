import type { Logger } from '../../lib/logging.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { FileStore } from './store.js';

/**
 * Removes uploads that were reserved but never completed (a client that went away, a crash between
 * the bytes and the completion): their objects go first, then their rows, so nothing is orphaned.
 */
export async function sweepExpiredUploads(store: FileStore, objects: ObjectStore, logger: Logger, now = new Date()): Promise<number> {
  let swept = 0;
  for (;;) {
    const batch = await store.expiredUploads(now, 100);
    for (const upload of batch) {
      try {
        await objects.delete(upload.object_key);
        await store.deleteUpload(upload.id);
        swept++;
      } catch (error) {
        logger.warn({ err: error, upload: upload.id }, 'could not sweep an expired upload; will retry');
        return swept;
      }
    }
    if (batch.length < 100) return swept;
  }
}

/** Sweeps now and then every `intervalMs`; returns a stop function. */
export function startUploadSweeper(store: FileStore, objects: ObjectStore, logger: Logger, intervalMs = 60_000): () => Promise<void> {
  let running: Promise<unknown> = sweepExpiredUploads(store, objects, logger).catch((err) => logger.warn({ err }, 'upload sweep failed'));
  const timer = setInterval(() => {
    running = running.then(() => sweepExpiredUploads(store, objects, logger)).catch((err) => logger.warn({ err }, 'upload sweep failed'));
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
