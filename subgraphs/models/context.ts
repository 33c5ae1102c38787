import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { ModelStore } from './store.js';

export interface ModelsContext extends SubgraphContext {
  store: ModelStore;
  objectStore: ObjectStore;
}
