import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { UsersLoaders } from './loaders.js';
import type { UserStore } from './store.js';
import type { GpuQuotaDeps } from './gpuQuotas.js';

export interface UsersContext extends SubgraphContext, GpuQuotaDeps {
  store: UserStore;
  loaders: UsersLoaders;
  /** Namespaces no project may be assigned besides Kubernetes' own (MARINER_RESERVED_NAMESPACES). */
  reservedNamespaces: readonly string[];
}
