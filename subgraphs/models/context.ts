import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { ModelChanges } from './events.js';
import type { FilesClient } from './filesClient.js';
import type { ModelStore } from './store.js';

export interface ModelsContext extends SubgraphContext {
  store: ModelStore;
  objectStore: ObjectStore;
  /** The files subgraph, for base models made from a File. */
  files: FilesClient;
  /** Announced after every change of a model (the inference component's cache of models listens). */
  modelChanges: ModelChanges;
  /** How long a loader's claim on a model lasts without a progress report. */
  loadLeaseSeconds: number;
}
