import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { FilesClient } from './filesClient.js';
import type { ModelStore } from './store.js';

export interface ModelsContext extends SubgraphContext {
  store: ModelStore;
  objectStore: ObjectStore;
  /** The files subgraph, for base models made from a File. */
  files: FilesClient;
  /** How long a loader's claim on a model lasts without a progress report. */
  loadLeaseSeconds: number;
}
