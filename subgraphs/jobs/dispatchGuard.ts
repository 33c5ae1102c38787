import { servesOrganization, type ClusterAccess, type ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { CreatorCredentials, KeyLookups } from './creatorCredentials.js';
import type { JobDependencies } from './dependencies.js';
import { ownerOf, placeJob } from './placement.js';
import type { Placement } from './scheduler.js';
import type { JobRow } from './store.js';

/** The lookups of one dispatch pass, shared by its jobs: whom each tenant's clusters serve, creator keys. */
export interface DispatchPass {
  access: Map<string, Promise<Map<string, ClusterAccess>>>;
  keys: KeyLookups;
}

/** Whether a job may be sent to its cluster now; when not, why, and where it can go instead. */
export type Admission =
  { admitted: true } | { admitted: false; cause: 'cluster'; reason: string; moveTo: Placement | null } | { admitted: false; cause: 'creator'; reason: string };

/**
 * The last check before a job (its spec, a notebook's secrets) leaves for a cluster (issue 14): the
 * cluster must still serve the job's organization — a grant revoked or a cluster unregistered since
 * the job was placed takes effect here, asked of the clusters subgraph for every pass, never cached
 * across passes — and the job must still act for its creator (creatorCredentials.ts). A cluster that
 * may not have the job is replaced by another the organization may use, when there is one.
 */
export class DispatchGuard {
  constructor(
    private readonly access: ClusterAccessDirectory,
    private readonly credentials: CreatorCredentials,
    private readonly dependencies: JobDependencies,
    private readonly connectedClusters: () => string[],
  ) {}

  newPass(): DispatchPass {
    return { access: new Map(), keys: new Map() };
  }

  async admit(job: JobRow, clusterId: string, pass: DispatchPass): Promise<Admission> {
    let clusters = pass.access.get(job.tenant_id);
    if (!clusters) {
      clusters = this.access.clusters(job.tenant_id);
      pass.access.set(job.tenant_id, clusters);
    }
    const access = (await clusters).get(clusterId);
    if (!access || !servesOrganization(access, job.organization_id)) {
      const reason = `cluster ${clusterId} ${access ? `no longer serves organization ${job.organization_id}` : 'is no longer registered'}`;
      return { admitted: false, cause: 'cluster', reason, moveTo: await this.elsewhere(job, clusterId) };
    }
    const refusal = await this.credentials.refusal(job, pass.keys);
    if (refusal) return { admitted: false, cause: 'creator', reason: refusal };
    return { admitted: true };
  }

  /** The job was refused for its creator: it fails (a notebook's own API key is deleted first). */
  async creatorRevoked(job: JobRow, reason: string): Promise<void> {
    await this.credentials.revoke(job, `${reason}: the ${job.kind === 'notebook' ? 'notebook' : 'job'} no longer acts for its creator and is not started`, {
      fail: true,
    });
  }

  /** Another cluster of the project that the organization may use; null when there is none now. */
  private async elsewhere(job: JobRow, excluding: string): Promise<Placement | null> {
    try {
      return await placeJob(this.dependencies, new Set(this.connectedClusters()), ownerOf(job, `dispatcher:${job.id}`), job.gpu_count, { excluding });
    } catch (error) {
      if (error instanceof MarinerError && error.code === ErrorCode.FAILED_PRECONDITION) return null;
      throw error;
    }
  }
}
