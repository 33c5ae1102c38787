import type { Identity } from '../../lib/identity.js';
import type { JobDependencies, SchedulingCluster } from './dependencies.js';
import { schedule, type Placement } from './scheduler.js';
import type { JobRow } from './store.js';

/** Whose job is placed: the project (with its organization) and the identity its assignments are read as. */
export interface JobOwner {
  requestId: string;
  identity: Identity | null;
  tenantId: string;
  organizationId: string;
  projectId: string;
}

/** The owner of a job already stored: its project, read as its creator (as when it was created). */
export function ownerOf(job: JobRow, requestId: string): JobOwner {
  return { requestId, identity: job.creator, tenantId: job.tenant_id, organizationId: job.organization_id, projectId: job.project_id };
}

/**
 * Where a job of `owner` runs now (scheduler.ts): the project's assignments, on the clusters its
 * organization may use — asked of the clusters subgraph unless given — other than `excluding`.
 */
export async function placeJob(
  dependencies: JobDependencies,
  connected: ReadonlySet<string>,
  owner: JobOwner,
  gpuCount: number | null,
  options: { excluding?: string | null; clusters?: SchedulingCluster[] } = {},
): Promise<Placement> {
  const [assignments, clusters] = await Promise.all([
    dependencies.assignments({ requestId: owner.requestId, identity: owner.identity }, owner.projectId),
    options.clusters ?? dependencies.schedulingClusters(owner.requestId, owner.tenantId, owner.organizationId),
  ]);
  return schedule(
    assignments,
    clusters.filter((c) => c.id !== options.excluding),
    connected,
    gpuCount,
  );
}
