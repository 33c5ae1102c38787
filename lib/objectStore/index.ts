/** lib/objectStore: where file bytes and models live, behind one interface (README.md). */
import type { ObjectStoreConfig } from '../config.js';
import type { Logger } from '../logging.js';
import { createFilesystemObjectStore } from './filesystem.js';
import type { ObjectStore } from './objectStore.js';

export type { ObjectInfo, ObjectStore, PutObjectOptions } from './objectStore.js';
export { InvalidObjectKeyError, ObjectNotFoundError, ObjectTooLargeError } from './errors.js';
export { MAX_OBJECT_KEY_BYTES, PLATFORM_AREAS, platformAreaOf, validateObjectKey } from './keys.js';

/**
 * Opens the configured object store. Async because the filesystem driver prepares its folder and removes
 * temp files left by crashed puts, and the S3 driver loads the AWS SDK only when it is used. The S3 driver
 * checks its bucket here: a missing one is created (MARINER_S3_CREATE_BUCKET=auto, when the credentials
 * may) or opening fails naming it; a missing permission on objects shows on the first operation.
 */
export async function createObjectStore(config: ObjectStoreConfig, options: { logger?: Logger } = {}): Promise<ObjectStore> {
  if (config.driver === 'filesystem') return createFilesystemObjectStore(config.dir);
  const { openS3ObjectStore } = await import('./s3.js');
  return openS3ObjectStore(config, options.logger);
}
