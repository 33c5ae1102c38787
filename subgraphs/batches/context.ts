import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { PubSub } from '../../lib/pubsub.js';
import type { BatchFiles } from './clients.js';
import type { BatchEvents } from './events.js';
import type { BatchStore } from './store.js';
import type { BatchWorker } from './worker.js';

export interface BatchesSettings {
  completionWindowSeconds: number;
  maxRequests: number;
}

export interface BatchesContext extends SubgraphContext {
  store: BatchStore;
  files: BatchFiles;
  objectStore: ObjectStore;
  batchWorker: BatchWorker;
  events: BatchEvents;
  pubsub: PubSub;
  settings: BatchesSettings;
}
