import { isPlatformCluster } from '../../lib/clusterAccess.js';
import type { Worker } from '../../lib/identity.js';
import type { ClusterScope } from './store.js';

/**
 * The models a calling agent's cluster may take, in the store's terms: `servesOrganization` and
 * `isPlatformCluster` (lib/clusterAccess.ts) as a filter on the models table. Only platform clusters
 * load the tenant's catalog: a load's weights are served by every cluster that runs the model, so an
 * organization's own cluster must not be the one to put them there.
 */
export function clusterScopeOf(worker: Worker): ClusterScope {
  return {
    tenantId: worker.tenantId,
    clusterId: worker.clusterId,
    loadsCatalog: isPlatformCluster(worker),
    organizations: worker.organizationId !== null ? [worker.organizationId] : worker.sharedWithAllOrganizations ? 'all' : worker.organizationIds,
  };
}
