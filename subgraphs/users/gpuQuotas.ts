import DataLoader from 'dataloader';
import { servesOrganization, type ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import { badInput, failedPrecondition, unauthenticated } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import { principalOf, requireOrganizationOwner, visibleProject } from './access.js';
import type { UsersContext } from './context.js';
import type { GpuQuotaWait, ProjectGpuQuota, Resolvers, WorkerGpuQuota } from './generated/resolvers.js';
import type { GpuQuotaKey, GpuQuotaReportRow, GpuQuotaRow, GpuQuotaStore } from './gpuQuotasStore.js';
import type { Assignment, ProjectRow } from './store.js';

/**
 * Projects' GPU quotas (issue 22, Kueue managed per project; docs/quotas.md): organization owners set a
 * project's quota per cluster, GPU resource and flavour; each cluster's agent reads those of the projects
 * it serves (`workerGpuQuotas`), keeps a Kueue ClusterQueue and LocalQueues with them
 * (agent/kubernetes/kueueQueues.ts), and reports back what Kueue says (`reportGpuQuotaStatus`): GPUs held
 * by admitted Workloads and jobs waiting for quota, shown with each quota.
 */

/** What the quota resolvers need besides the users subgraph's own context. */
export interface GpuQuotaDeps {
  gpuQuotas: GpuQuotaStore;
  /** Whom clusters serve (the clusters subgraph); null where this process cannot reach it: quotas cannot be set. */
  clusterAccess: ClusterAccessDirectory | null;
}

type Ctx = UsersContext & GpuQuotaDeps;

export const DEFAULT_GPU_RESOURCE = 'nvidia.com/gpu';
/** The most GPUs a quota may name; the most quotas (resources × flavours) per project and cluster (Kueue: 16 flavours, 16 resources). */
export const MAX_NOMINAL_GPUS = 10_000;
export const MAX_QUOTAS_PER_CLUSTER = 16;
const MAX_REPORT_ENTRIES = 10_000;
const MAX_MESSAGE = 2_000;

/** An extended resource name (`<domain>/<name>`), as Kubernetes accepts them for devices. */
const EXTENDED_RESOURCE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function validResource(value: string | null | undefined, field: string): string {
  const resource = value ?? DEFAULT_GPU_RESOURCE;
  if (resource.length > 253 || !EXTENDED_RESOURCE.test(resource) || /(^|\.)kubernetes\.io\//.test(resource)) {
    throw badInput(`${field}: "${resource.slice(0, 64)}" is not an extended resource name such as nvidia.com/gpu`, field);
  }
  return resource;
}

function validFlavor(value: string | null | undefined, field: string): string {
  if (value == null || value === '') return '';
  if (!DNS_LABEL.test(value)) throw badInput(`${field}: "${value.slice(0, 64)}" is not a Kueue ResourceFlavor name (a DNS label)`, field);
  return value;
}

/** The project's namespaces on the cluster: those of assignments naming it or no cluster in particular. */
export function namespacesOn(assignments: readonly Assignment[], clusterId: string): string[] {
  return [...new Set(assignments.filter((a) => a.clusterId === null || a.clusterId === clusterId).map((a) => a.namespace))].sort();
}

/** A project's quotas as the API shows them, with their usage from the clusters' last reports. */
async function withUsage(ctx: Ctx, project: ProjectRow, rows: GpuQuotaRow[]): Promise<ProjectGpuQuota[]> {
  const reports = new Map<string, GpuQuotaReportRow>((await ctx.gpuQuotas.reports([...new Set(rows.map((r) => r.cluster_id))])).map((r) => [r.cluster_id, r]));
  return rows.map((row) => {
    const report = reports.get(row.cluster_id);
    const namespaces = new Set(namespacesOn(project.assignments, row.cluster_id));
    const usage = report?.usage.filter((u) => namespaces.has(u.namespace) && u.resource === row.resource && (u.flavor ?? '') === row.flavor);
    return {
      projectId: row.project_id,
      clusterId: row.cluster_id,
      resource: row.resource,
      flavor: row.flavor || null,
      nominalGpus: row.nominal_gpus,
      borrowingAllowed: row.borrowing_allowed,
      usedGpus: report ? usage!.reduce((sum, u) => sum + u.usedGpus, 0) : null,
      waitingJobs: report ? report.waiting.filter((w) => namespaces.has(w.namespace)).map((w) => ({ ...w, position: w.position ?? null })) : [],
      usageReportedAt: report ? new Date(report.reported_at).toISOString() : null,
      updatedAt: new Date(row.updated_at).toISOString(),
    };
  });
}

async function quotasOf(ctx: Ctx, project: ProjectRow): Promise<ProjectGpuQuota[]> {
  return withUsage(ctx, project, await ctx.gpuQuotas.forProjects([project.id]));
}

/** The project, if the caller owns its organization: the only callers who may change its quotas. */
async function ownedProject(ctx: Ctx, projectId: string): Promise<ProjectRow> {
  const project = await visibleProject(ctx, projectId, 'input.projectId');
  requireOrganizationOwner(ctx, project.organization_id);
  return project;
}

/** BAD_USER_INPUT unless the cluster exists, serves the project's organization and is reached by its assignments. */
async function checkCluster(ctx: Ctx, project: ProjectRow, clusterId: string): Promise<void> {
  assertId('cluster', clusterId, 'input.clusterId');
  if (!ctx.clusterAccess) throw failedPrecondition('GPU quotas need the clusters subgraph, which this process does not reach');
  const tenantId = principalOf(ctx).tenantId;
  const access = (await ctx.clusterAccess.clusters(tenantId, [clusterId])).get(clusterId);
  // One answer for "no such cluster" and "another organization's": a cluster's existence does not leak.
  if (!access || !servesOrganization(access, project.organization_id)) {
    throw badInput(`input.clusterId: cluster ${clusterId} not found among the clusters organization ${project.organization_id} may use`, 'input.clusterId');
  }
  if (namespacesOn(project.assignments, clusterId).length === 0) {
    throw badInput(`input.clusterId: project ${project.id} is not assigned to cluster ${clusterId} (updateProject assignments first)`, 'input.clusterId');
  }
}

/** A job's wait for quota, batched per request (a page of jobs asks once); only jobs of projects the caller sees. */
const quotaWaits = new WeakMap<object, DataLoader<string, GpuQuotaWait | null>>();
function quotaWaitOf(ctx: Ctx, jobId: string): Promise<GpuQuotaWait | null> {
  let loader = quotaWaits.get(ctx);
  if (!loader) {
    loader = new DataLoader(async (ids: readonly string[]) => {
      const principal = principalOf(ctx);
      const visible = new Set(principal.projects.map((p) => p.projectId));
      const hits = (await ctx.gpuQuotas.waitingFor(principal.tenantId, ids)).filter((h) => h.projectId !== null && visible.has(h.projectId));
      return ids.map((id) => {
        const hit = hits.find((h) => h.jobId === id);
        return hit
          ? {
              clusterId: hit.clusterId,
              namespace: hit.namespace,
              message: hit.message,
              position: hit.position ?? null,
              reportedAt: new Date(hit.reportedAt).toISOString(),
            }
          : null;
      });
    });
    quotaWaits.set(ctx, loader);
  }
  return loader.load(jobId);
}

export const gpuQuotaResolvers: Resolvers<UsersContext> = {
  Query: {
    projectGpuQuotas: async (_p, { projectId }, ctx) => {
      const project = await visibleProject(ctx, projectId, 'projectId');
      return quotasOf(ctx as Ctx, project);
    },
    workerGpuQuotas: async (_p, _a, context) => {
      const ctx = context as Ctx;
      const worker = ctx.worker;
      if (!worker) throw unauthenticated('A cluster registration key is required');
      const rows = await ctx.gpuQuotas.onCluster(worker.tenantId, worker.clusterId);
      const out: WorkerGpuQuota[] = [];
      for (const row of rows) {
        // Only for organizations the cluster serves now (a revoked grant takes the queue away).
        if (!servesOrganization(worker, row.organization_id)) continue;
        const mine = row.assignments.filter((a) => a.clusterId === null || a.clusterId === worker.clusterId);
        const namespaces = namespacesOn(row.assignments, worker.clusterId);
        if (namespaces.length === 0) continue;
        out.push({
          projectId: row.project_id,
          organizationId: row.organization_id,
          namespaces,
          queueName: mine.find((a) => a.kueueQueueName)?.kueueQueueName ?? null,
          resource: row.resource,
          flavor: row.flavor || null,
          nominalGpus: row.nominal_gpus,
          borrowingAllowed: row.borrowing_allowed,
        });
      }
      return out;
    },
  },
  Mutation: {
    setProjectGpuQuota: async (_p, { input }, context) => {
      const ctx = context as Ctx;
      const project = await ownedProject(ctx, input.projectId);
      if (!Number.isInteger(input.nominalGpus) || input.nominalGpus < 0 || input.nominalGpus > MAX_NOMINAL_GPUS) {
        throw badInput(`input.nominalGpus: must be a whole number from 0 to ${MAX_NOMINAL_GPUS}`, 'input.nominalGpus');
      }
      const key: GpuQuotaKey = {
        projectId: project.id,
        clusterId: input.clusterId,
        resource: validResource(input.resource, 'input.resource'),
        flavor: validFlavor(input.flavor, 'input.flavor'),
      };
      await checkCluster(ctx, project, input.clusterId);
      if (!(await ctx.gpuQuotas.get(key)) && (await ctx.gpuQuotas.countOn(project.id, input.clusterId)) >= MAX_QUOTAS_PER_CLUSTER) {
        throw badInput(`a project has at most ${MAX_QUOTAS_PER_CLUSTER} GPU quotas per cluster`, 'input');
      }
      const row = await ctx.gpuQuotas.set(project.tenant_id, key, { nominalGpus: input.nominalGpus, borrowingAllowed: input.borrowingAllowed ?? false });
      return (await withUsage(ctx, project, [row]))[0]!;
    },
    removeProjectGpuQuota: async (_p, { input }, context) => {
      const ctx = context as Ctx;
      const project = await ownedProject(ctx, input.projectId);
      assertId('cluster', input.clusterId, 'input.clusterId');
      const key = {
        projectId: project.id,
        clusterId: input.clusterId,
        resource: validResource(input.resource, 'input.resource'),
        flavor: validFlavor(input.flavor, 'input.flavor'),
      };
      return { removed: await ctx.gpuQuotas.remove(key) };
    },
    reportGpuQuotaStatus: async (_p, { input }, context) => {
      const ctx = context as Ctx;
      const worker = ctx.worker;
      if (!worker) throw unauthenticated('A cluster registration key is required');
      if (input.usage.length > MAX_REPORT_ENTRIES || input.waiting.length > MAX_REPORT_ENTRIES)
        throw badInput(`at most ${MAX_REPORT_ENTRIES} entries`, 'input');
      // Only namespaces the cluster keeps queues for: an agent cannot speak for another cluster's projects.
      const rows = (await ctx.gpuQuotas.onCluster(worker.tenantId, worker.clusterId)).filter((r) => servesOrganization(worker, r.organization_id));
      const served = new Set(rows.flatMap((r) => namespacesOn(r.assignments, worker.clusterId)));
      await ctx.gpuQuotas.saveReport(worker.tenantId, worker.clusterId, {
        usage: input.usage
          .filter((u) => served.has(u.namespace))
          .map((u) => ({ namespace: u.namespace, resource: u.resource, flavor: u.flavor ?? null, usedGpus: Math.max(0, Math.trunc(u.usedGpus)) })),
        waiting: input.waiting
          .filter((w) => served.has(w.namespace))
          .map((w) => ({
            jobId: w.jobId.slice(0, 200),
            namespace: w.namespace,
            message: w.message.slice(0, MAX_MESSAGE),
            position: w.position != null && w.position > 0 ? w.position : null,
          })),
      });
      return true;
    },
  },
  Project: {
    gpuQuotas: (p, _a, ctx) => quotasOf(ctx as Ctx, p),
  },
  BatchJob: {
    __resolveReference: (ref) => ({ id: ref.id }),
    quotaWait: (j, _a, ctx) => quotaWaitOf(ctx as Ctx, j.id),
  },
  FineTuningJob: {
    __resolveReference: (ref) => ({ id: ref.id }),
    quotaWait: (j, _a, ctx) => quotaWaitOf(ctx as Ctx, j.id),
  },
};
