import { conflict, failedPrecondition, notFound, unauthenticated } from '../../lib/errors.js';
import { projectScopeOf } from '../../lib/identity.js';
import type { ClustersContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import { configOf, type ClusterRow } from './store.js';
import * as validate from './validation.js';

const tenantOf = (ctx: ClustersContext): string => projectScopeOf(ctx.identity).tenantId;

/** The calling agent's cluster; the policy map admits only workers here. */
function workerOf(ctx: ClustersContext) {
  if (!ctx.worker) throw unauthenticated('A cluster registration key is required');
  return ctx.worker;
}

async function ownCluster(ctx: ClustersContext, id: string, field = 'id'): Promise<ClusterRow> {
  const cluster = await ctx.store.cluster(tenantOf(ctx), validate.clusterId(id, field));
  if (!cluster) throw notFound('cluster', id);
  return cluster;
}

export const resolvers: Resolvers<ClustersContext> = {
  Query: {
    clusters: (_p, { after, limit }, ctx) => ctx.store.list(tenantOf(ctx), { after, limit }),
    cluster: async (_p, { id }, ctx) => (await ctx.store.cluster(tenantOf(ctx), validate.clusterId(id))) ?? null,
    workerCluster: async (_p, _a, ctx) => {
      const worker = workerOf(ctx);
      const cluster = await ctx.store.cluster(worker.tenantId, worker.clusterId);
      if (!cluster) throw unauthenticated('The cluster of this registration key was unregistered');
      return cluster;
    },
    workerByRegistrationKey: async (_p, { key }, ctx) => (await ctx.store.clusterByKey(key)) ?? null,
    schedulingClusters: async (_p, { tenantId }, ctx) =>
      (await ctx.store.all(tenantId)).map((c) => ({
        id: c.id,
        name: c.name,
        gpuCapacity: c.status?.gpuCapacity ?? 0,
        gpuAllocated: c.status?.gpuAllocated ?? 0,
        stale: !c.status_updated_at || Date.now() - c.status_updated_at.getTime() > ctx.statusStaleSeconds * 1000,
        statusUpdatedAt: c.status_updated_at?.toISOString() ?? null,
        gpuPodCount: c.status?.gpuPods.length ?? 0,
      })),
  },
  Mutation: {
    registerCluster: async (_p, { input }, ctx) => {
      const name = validate.clusterName(input.name);
      const registered = await ctx.store.register(tenantOf(ctx), name);
      if (!registered) throw conflict(`a cluster named "${name}" is registered already`);
      return registered;
    },
    unregisterCluster: async (_p, { id }, ctx) => {
      const outcome = await ctx.store.unregister(tenantOf(ctx), validate.clusterId(id));
      if (outcome === 'missing') throw notFound('cluster', id);
      if (outcome === 'default') throw failedPrecondition(`cluster ${id} is the default cluster of this installation: it cannot be unregistered`);
      return { id, deleted: true };
    },
    createClusterConfig: async (_p, { clusterId, input }, ctx) => {
      const outcome = await ctx.store.setConfig(tenantOf(ctx), validate.clusterId(clusterId, 'clusterId'), validate.clusterConfig(input), 'create');
      if (outcome === 'no-cluster') throw notFound('cluster', clusterId);
      if (outcome === 'exists') throw conflict(`cluster ${clusterId} has a configuration already: update it instead`);
      if (outcome === 'missing') throw notFound('cluster config', clusterId);
      return configOf(outcome)!;
    },
    updateClusterConfig: async (_p, { clusterId, input }, ctx) => {
      const outcome = await ctx.store.setConfig(tenantOf(ctx), validate.clusterId(clusterId, 'clusterId'), validate.clusterConfig(input), 'update');
      if (outcome === 'no-cluster') throw notFound('cluster', clusterId);
      if (outcome === 'missing' || outcome === 'exists') throw notFound('cluster config', clusterId);
      return configOf(outcome)!;
    },
    deleteClusterConfig: async (_p, { clusterId }, ctx) => {
      const outcome = await ctx.store.deleteConfig(tenantOf(ctx), validate.clusterId(clusterId, 'clusterId'));
      if (outcome === 'no-cluster') throw notFound('cluster', clusterId);
      if (outcome === 'missing') throw notFound('cluster config', clusterId);
      return { id: clusterId, deleted: true };
    },
    reportComponentStatus: async (_p, { input }, ctx) => ctx.store.reportComponentStatus(workerOf(ctx).clusterId, validate.componentStatus(input)),
    reportClusterStatus: async (_p, { input }, ctx) => {
      const row = await ctx.store.reportClusterStatus(workerOf(ctx).clusterId, validate.clusterStatus(input));
      if (!row?.status || !row.status_updated_at) throw unauthenticated('The cluster of this registration key was unregistered');
      return { ...row.status, updatedAt: row.status_updated_at };
    },
  },
  Cluster: {
    __resolveReference: async (ref, ctx) => (await ctx.store.cluster(tenantOf(ctx), ref.id)) ?? null,
    isDefault: (c) => c.is_default,
    createdAt: (c) => c.created_at.toISOString(),
    componentStatuses: (c, _a, ctx) => ctx.loaders.componentStatuses.load(c.id),
    status: (c) => (c.status && c.status_updated_at ? { ...c.status, updatedAt: c.status_updated_at } : null),
    config: (c) => configOf(c),
  },
  ComponentStatus: {
    isHealthy: (s) => s.is_healthy,
    updatedAt: (s) => s.updated_at.toISOString(),
  },
  ClusterStatus: {
    updatedAt: (s) => s.updatedAt.toISOString(),
    stale: (s, _a, ctx) => Date.now() - s.updatedAt.getTime() > ctx.statusStaleSeconds * 1000,
  },
  ClusterConfig: {
    updatedAt: (c) => c.updatedAt.toISOString(),
  },
  WorkerCluster: {
    clusterId: (c) => c.id,
    clusterName: (c) => c.name,
    tenantId: (c) => c.tenant_id,
    config: (c) => configOf(c),
  },
};
