import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { ResponseStore } from './store.js';

export interface ResponsesContext extends SubgraphContext {
  store: ResponseStore;
}
