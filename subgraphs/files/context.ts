import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { FileStore } from './store.js';

export interface FilesSettings {
  maxFileBytes: number;
  uploadExpirySeconds: number;
  /** Longest line of a fine-tuning file (validation.ts). */
  maxFineTuneLineBytes: number;
}

export interface FilesContext extends SubgraphContext {
  store: FileStore;
  objectStore: ObjectStore;
  settings: FilesSettings;
}
