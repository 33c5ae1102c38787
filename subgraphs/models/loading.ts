import { badInput } from '../../lib/errors.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { ModelLoadTask } from './generated/resolvers.js';
import type { ModelRow } from './store.js';

/**
 * Where a loader stores a model in the platform's store: one prefix per model of a tenant (model ids
 * are unique in a tenant). LLMariner keeps `<pathPrefix>/<tenant>/<project>/<id>`; the project adds
 * nothing here, since tenant-wide base models have none.
 */
export function destinationKey(model: Pick<ModelRow, 'tenant_id' | 'id'>): string {
  return `models/${model.tenant_id}/${model.id}`;
}

/** The loader's view of a model's load (the worker API returns it instead of `Model`). */
export function loadTaskOf(objectStore: ObjectStore, model: ModelRow): ModelLoadTask {
  return {
    modelId: model.id,
    sourceRepository: model.source_repository,
    source: model.source,
    formats: model.formats,
    destination: `${objectStore.uri(destinationKey(model))}/`,
    loadingStatus: model.loading_status,
    loadingStatusMessage: model.loading_status_message,
    loadingFailureReason: model.loading_failure_reason,
    leaseExpiresAt: model.load_lease_expires_at?.toISOString() ?? null,
  };
}

/**
 * The key of what a loader reports it stored (`input.objectPath`), checked: in the platform's store,
 * at or under the model's destination (or the model's own source object, e.g. a GGUF File used as is),
 * so a cluster cannot point a model at objects it was not given; and present, as one object or as
 * objects under it (a Hugging Face model is a folder). Reads the store: call it outside transactions.
 */
export async function storedModelKey(objectStore: ObjectStore, model: ModelRow, objectPath: string | null | undefined): Promise<string> {
  const field = 'input.objectPath';
  const path = objectPath?.trim().replace(/\/+$/, '') ?? '';
  if (path === '') throw badInput(`${field}: a SUCCEEDED report says where the model was stored`, field);
  const shown = path.slice(0, 200);
  const key = objectStore.keyFromUri(path);
  if (!key) throw badInput(`${field}: "${shown}" is not an object in this platform's store`, field);
  const destination = destinationKey(model);
  const ownSource = model.source_repository === 'OBJECT_STORE' || model.source_repository === 'FILE' ? objectStore.keyFromUri(model.source) : null;
  if (key !== destination && !key.startsWith(`${destination}/`) && key !== ownSource) {
    throw badInput(`${field}: "${shown}" is outside the model's destination ${objectStore.uri(destination)}/`, field);
  }
  if (!(await objectStore.head(key)) && !(await hasObjectsUnder(objectStore, `${key}/`))) {
    throw badInput(`${field}: nothing is stored at ${shown}`, field);
  }
  return key;
}

async function hasObjectsUnder(objectStore: ObjectStore, prefix: string): Promise<boolean> {
  for await (const _object of objectStore.list(prefix)) return true;
  return false;
}
