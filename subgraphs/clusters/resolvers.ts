import { badInput, conflict, failedPrecondition, forbidden, notFound, unauthenticated } from '../../lib/errors.js';
import { isPlatformAdmin, projectScopeOf } from '../../lib/identity.js';
import type { ClustersContext } from './context.js';
import type { RegisterClusterInput, Resolvers } from './generated/resolvers.js';
import { accessOf, configOf, type ClusterOwner, type ClusterRow, type ClusterViewer } from './store.js';
import { gpusWithoutPods, telemetryPoints, telemetryRange, telemetrySample, validateGpuMetrics, type TelemetryPoint } from './telemetry.js';
import * as validate from './validation.js';

const tenantOf = (ctx: ClustersContext): string => projectScopeOf(ctx.identity).tenantId;

/** Who looks (README "Security model"): platform admins see every cluster, anyone else what its organization may use. */
function viewerOf(ctx: ClustersContext): ClusterViewer {
  const scope = projectScopeOf(ctx.identity);
  return isPlatformAdmin(ctx.identity!.principal) ? { platformAdmin: true } : { platformAdmin: false, organizationId: scope.organizationId };
}

/** Whether the caller owns the organization (its binding, not only a scope the role table grants). */
function ownsOrganization(ctx: ClustersContext, organizationId: string): boolean {
  return ctx.identity!.principal.organizations.some((o) => o.organizationId === organizationId && o.role === 'OWNER');
}

/**
 * Whom a new cluster works for. A platform admin registers platform clusters (shared with every
 * organization unless told otherwise) or clusters of any organization; an organization owner
 * registers clusters of its own organization only.
 */
function ownerOf(ctx: ClustersContext, input: RegisterClusterInput): ClusterOwner {
  const admin = isPlatformAdmin(ctx.identity!.principal);
  const requested = input.organizationId == null ? null : validate.organizationId(input.organizationId, 'input.organizationId');
  const organizationId = requested ?? (admin ? null : projectScopeOf(ctx.identity).organizationId);
  if (organizationId === null) {
    return {
      organizationId: null,
      sharedWithAllOrganizations: input.sharedWithAllOrganizations ?? true,
      organizationIds: validate.organizationIds(input.grantedOrganizationIds ?? [], 'input.grantedOrganizationIds'),
    };
  }
  if (input.sharedWithAllOrganizations != null || input.grantedOrganizationIds != null) {
    throw badInput(
      'sharedWithAllOrganizations and grantedOrganizationIds apply to platform clusters only: omit organizationId (platform admins)',
      'input.organizationId',
    );
  }
  if (!admin && !ownsOrganization(ctx, organizationId)) {
    throw forbidden(`Only owners of organization ${organizationId} (or platform admins) may register clusters for it`);
  }
  return { organizationId, sharedWithAllOrganizations: false, organizationIds: [] };
}

/**
 * A cluster the caller may manage (unregister, configure): a platform admin any; an organization owner
 * its organization's own. Platform clusters the organization only uses are FORBIDDEN, others' NOT_FOUND.
 */
async function managedCluster(ctx: ClustersContext, id: string, field = 'id'): Promise<ClusterRow> {
  const viewer = viewerOf(ctx);
  const cluster = await ctx.store.cluster(tenantOf(ctx), validate.clusterId(id, field), viewer);
  if (!cluster) throw notFound('cluster', id);
  if (viewer.platformAdmin) return cluster;
  if (cluster.organization_id === null) throw forbidden(`Cluster ${id} is a platform cluster: only platform admins manage it`);
  if (!ownsOrganization(ctx, cluster.organization_id)) throw forbidden(`Only owners of organization ${cluster.organization_id} manage cluster ${id}`);
  return cluster;
}

/** The calling agent's cluster; the policy map admits only workers here. */
function workerOf(ctx: ClustersContext) {
  if (!ctx.worker) throw unauthenticated('A cluster registration key is required');
  return ctx.worker;
}

/**
 * The `dcgm-exporter` component status a report implies: healthy when the exporters found were all read,
 * else the problems; none when the cluster has no exporter and nothing went wrong looking for one.
 */
function dcgmHealth(exporters: number, problems: readonly string[]): { name: string; isHealthy: boolean; message: string } | null {
  if (exporters <= 0 && problems.length === 0) return null;
  const read = Math.max(0, exporters - problems.length);
  const message =
    problems.length === 0 ? `${exporters} DCGM exporter(s) read` : `${read} of ${exporters} DCGM exporter(s) read; ${problems.slice(0, 20).join('; ')}`;
  return { name: 'dcgm-exporter', isHealthy: problems.length === 0, message: message.slice(0, 1024) };
}

/** Where a point's GPUs are read from, when a query asks for them (ClusterTelemetryPoint.gpus). */
interface PointGpus {
  rowId: string | null;
  seesNamespaces: boolean;
}

/**
 * A point as the schema's ClusterTelemetryPoint. A viewer who may not see the cluster's namespaces (a
 * platform cluster's, for anyone but platform admins) gets none, and no pods on the GPUs.
 */
function telemetryPointOut(point: TelemetryPoint, seesNamespaces: boolean) {
  const { latestRowId, ...rest } = point;
  const gpuSource: PointGpus = { rowId: latestRowId, seesNamespaces };
  return {
    ...rest,
    at: point.at.toISOString(),
    namespaces: seesNamespaces
      ? point.namespaces.map(({ utilization, memoryUsedBytes, ...ns }) => ({ ...ns, gpuUtilization: utilization, gpuMemoryUsedBytes: memoryUsedBytes }))
      : [],
    gpus: [],
    gpuSource,
  };
}

export const resolvers: Resolvers<ClustersContext> = {
  Query: {
    clusters: (_p, { after, limit }, ctx) => ctx.store.list(tenantOf(ctx), viewerOf(ctx), { after, limit }),
    cluster: async (_p, { id }, ctx) => (await ctx.store.cluster(tenantOf(ctx), validate.clusterId(id), viewerOf(ctx))) ?? null,
    /**
     * Only clusters the caller may see (its organization's own and the platform clusters granted to it);
     * on a platform cluster only platform admins see the namespaces (other organizations' projects).
     */
    clusterTelemetry: async (_p, args, ctx) => {
      const range = telemetryRange(args);
      const viewer = viewerOf(ctx);
      const tenantId = tenantOf(ctx);
      const clusters =
        args.clusterId == null
          ? await ctx.store.all(tenantId, viewer.platformAdmin ? undefined : viewer.organizationId)
          : [await ctx.store.cluster(tenantId, validate.clusterId(args.clusterId, 'clusterId'), viewer)].filter((c): c is ClusterRow => c !== undefined);
      const rows = await ctx.telemetry.rows(
        clusters.map((c) => c.id),
        range.from,
        range.to,
      );
      return clusters.map((cluster) => {
        const points = telemetryPoints(
          rows.filter((r) => r.clusterId === cluster.id),
          range.from,
          range.to,
          range.step,
        );
        const seesNamespaces = viewer.platformAdmin || cluster.organization_id !== null;
        return {
          clusterId: cluster.id,
          clusterName: cluster.name,
          from: range.from.toISOString(),
          to: range.to.toISOString(),
          step: range.step,
          points: points.map((p) => telemetryPointOut(p, seesNamespaces)),
        };
      });
    },
    workerCluster: async (_p, _a, ctx) => {
      const worker = workerOf(ctx);
      const cluster = await ctx.store.cluster(worker.tenantId, worker.clusterId);
      if (!cluster) throw unauthenticated('The cluster of this registration key was unregistered');
      return cluster;
    },
    workerByRegistrationKey: async (_p, { key }, ctx) => (await ctx.store.clusterByKey(key)) ?? null,
    clusterAccess: async (_p, { tenantId }, ctx) => (await ctx.store.all(tenantId)).map(accessOf),
    schedulingClusters: async (_p, { tenantId, organizationId }, ctx) =>
      (await ctx.store.all(tenantId, organizationId)).map((c) => ({
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
      const owner = ownerOf(ctx, input);
      const registered = await ctx.store.register(tenantOf(ctx), name, owner);
      if (!registered) throw conflict(`a cluster named "${name}" is registered already`);
      return registered;
    },
    unregisterCluster: async (_p, { id }, ctx) => {
      await managedCluster(ctx, id);
      const outcome = await ctx.store.unregister(tenantOf(ctx), validate.clusterId(id));
      if (outcome === 'missing') throw notFound('cluster', id);
      if (outcome === 'default') throw failedPrecondition(`cluster ${id} is the default cluster of this installation: it cannot be unregistered`);
      return { id, deleted: true };
    },
    createClusterConfig: async (_p, { clusterId, input }, ctx) => {
      await managedCluster(ctx, clusterId, 'clusterId');
      const outcome = await ctx.store.setConfig(tenantOf(ctx), validate.clusterId(clusterId, 'clusterId'), validate.clusterConfig(input), 'create');
      if (outcome === 'no-cluster') throw notFound('cluster', clusterId);
      if (outcome === 'exists') throw conflict(`cluster ${clusterId} has a configuration already: update it instead`);
      if (outcome === 'missing') throw notFound('cluster config', clusterId);
      return configOf(outcome)!;
    },
    updateClusterConfig: async (_p, { clusterId, input }, ctx) => {
      await managedCluster(ctx, clusterId, 'clusterId');
      const outcome = await ctx.store.setConfig(tenantOf(ctx), validate.clusterId(clusterId, 'clusterId'), validate.clusterConfig(input), 'update');
      if (outcome === 'no-cluster') throw notFound('cluster', clusterId);
      if (outcome === 'missing' || outcome === 'exists') throw notFound('cluster config', clusterId);
      return configOf(outcome)!;
    },
    deleteClusterConfig: async (_p, { clusterId }, ctx) => {
      await managedCluster(ctx, clusterId, 'clusterId');
      const outcome = await ctx.store.deleteConfig(tenantOf(ctx), validate.clusterId(clusterId, 'clusterId'));
      if (outcome === 'no-cluster') throw notFound('cluster', clusterId);
      if (outcome === 'missing') throw notFound('cluster config', clusterId);
      return { id: clusterId, deleted: true };
    },
    setClusterGrants: async (_p, { clusterId, input }, ctx) => {
      if (!isPlatformAdmin(ctx.identity!.principal)) throw forbidden('Only platform admins grant platform clusters to organizations');
      const cluster = await managedCluster(ctx, clusterId, 'clusterId');
      if (cluster.organization_id !== null)
        throw failedPrecondition(`cluster ${clusterId} belongs to organization ${cluster.organization_id}: only platform clusters are granted`);
      const updated = await ctx.store.setGrants(tenantOf(ctx), cluster.id, {
        sharedWithAllOrganizations: input.sharedWithAllOrganizations,
        organizationIds: validate.organizationIds(input.organizationIds, 'input.organizationIds'),
      });
      if (!updated) throw notFound('cluster', clusterId);
      return updated;
    },
    reportComponentStatus: async (_p, { input }, ctx) => ctx.store.reportComponentStatus(workerOf(ctx).clusterId, validate.componentStatus(input)),
    reportClusterStatus: async (_p, { input }, ctx) => {
      const status = validate.clusterStatus(input);
      const gpuMetrics = validateGpuMetrics(input.gpuMetrics);
      const row = await ctx.store.reportClusterStatus(workerOf(ctx).clusterId, status);
      if (!row?.status || !row.status_updated_at) throw unauthenticated('The cluster of this registration key was unregistered');
      // The series: a report that changed nothing only extends the latest row.
      await ctx.telemetry.record(row.id, telemetrySample(row.status, gpuMetrics), ctx.statusStaleSeconds * 1000);
      const dcgm = dcgmHealth(input.dcgmExporters ?? 0, input.dcgmProblems ?? []);
      if (dcgm) await ctx.store.reportComponentStatus(row.id, dcgm);
      return { ...row.status, updatedAt: row.status_updated_at };
    },
  },
  Cluster: {
    __resolveReference: async (ref, ctx) => (await ctx.store.cluster(tenantOf(ctx), ref.id, viewerOf(ctx))) ?? null,
    isDefault: (c) => c.is_default,
    organizationId: (c) => c.organization_id,
    sharedWithAllOrganizations: (c) => c.shared_with_all_organizations,
    grantedOrganizationIds: (c, _a, ctx) => {
      const viewer = viewerOf(ctx);
      return viewer.platformAdmin ? c.granted_organization_ids : c.granted_organization_ids.filter((id) => id === viewer.organizationId);
    },
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
  ClusterTelemetryPoint: {
    // Each GPU of the step's latest report, read only when asked (a large cluster's are most of a row).
    gpus: async (point, _a, ctx) => {
      const { rowId, seesNamespaces } = (point as unknown as { gpuSource: PointGpus }).gpuSource;
      if (rowId === null) return [];
      const gpus = await ctx.loaders.telemetryGpus.load(rowId);
      return seesNamespaces ? gpus : gpusWithoutPods(gpus);
    },
  },
  GpuPod: {
    nodeName: (p) => p.nodeName ?? null,
    // Reports of agents older than the field.
    workload: (p) => p.workload ?? 'OTHER',
  },
  ClusterConfig: {
    updatedAt: (c) => c.updatedAt.toISOString(),
  },
  WorkerCluster: {
    clusterId: (c) => c.id,
    clusterName: (c) => c.name,
    tenantId: (c) => c.tenant_id,
    organizationId: (c) => c.organization_id,
    sharedWithAllOrganizations: (c) => c.shared_with_all_organizations,
    organizationIds: (c) => c.granted_organization_ids,
    config: (c) => configOf(c),
  },
};
