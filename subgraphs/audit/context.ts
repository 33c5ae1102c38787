import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { AuditStore } from './store.js';

export interface AuditContext extends SubgraphContext {
  store: AuditStore;
}
