import type { Logger } from '../../lib/logging.js';
import { PeriodicTask } from '../../lib/periodicTask.js';
import type { AgentTunnels } from '../../lib/agentContract.js';
import type { JobEvents } from './events.js';
import type { JobDependencies, SchedulingCluster } from './dependencies.js';
import { ownerOf, placeJob } from './placement.js';
import type { JobRow, JobStore } from './store.js';

/**
 * The rescheduler (LLMariner rescheduler.go): a job whose cluster has not reported its status for
 * `abandonAfterSeconds` (the cluster is gone: deleted, partitioned, its agent down for good), or whose
 * cluster its organization may no longer use (unregistered, its grant revoked), is placed again among
 * its project's clusters that the organization may use, and queued there; one that was being
 * cancelled is cancelled. A job with nowhere else to go stays, and is looked at again on the next pass.
 */
export class JobRescheduler {
  private readonly task: PeriodicTask;

  constructor(
    private readonly store: JobStore,
    private readonly dependencies: JobDependencies,
    private readonly transport: Pick<AgentTunnels, 'allConnectedClusters'>,
    private readonly events: JobEvents,
    private readonly logger: Logger,
    private readonly options: { abandonAfterSeconds: number; intervalMs: number; onQueued(): void; removed(job: JobRow): Promise<void> },
  ) {
    this.task = new PeriodicTask(
      () => this.pass(),
      options.intervalMs,
      (error) => logger.warn({ err: error.message }, 'rescheduling failed; retrying on the next tick'),
    );
  }

  start(): void {
    this.task.start();
  }

  /** Why the job must leave its cluster (absent from the clusters its organization may use, or silent), or null. */
  private abandoned(job: JobRow, cluster: SchedulingCluster | undefined): string | null {
    if (!cluster) return `cluster ${job.cluster_id} is no longer available to organization ${job.organization_id}`;
    if (!cluster.statusUpdatedAt) return null;
    if (Date.now() - Date.parse(cluster.statusUpdatedAt) <= this.options.abandonAfterSeconds * 1000) return null;
    return `cluster ${cluster.id} has not reported for more than ${Math.round(this.options.abandonAfterSeconds / 60)} min`;
  }

  async pass(): Promise<void> {
    const jobs = await this.store.unfinishedPlaced();
    // The clusters each organization may use: a job only ever moves among its own organization's.
    const byOrganization = new Map<string, JobRow[]>();
    for (const job of jobs) {
      const key = `${job.tenant_id} ${job.organization_id}`;
      byOrganization.set(key, [...(byOrganization.get(key) ?? []), job]);
    }
    for (const organizationJobs of byOrganization.values()) {
      const { tenant_id: tenantId, organization_id: organizationId } = organizationJobs[0]!;
      const clusters = await this.dependencies.schedulingClusters(`rescheduler:${tenantId}`, tenantId, organizationId);
      const byId = new Map(clusters.map((c) => [c.id, c]));
      for (const job of organizationJobs) {
        const why = this.abandoned(job, byId.get(job.cluster_id!));
        if (why) await this.move(job, job.cluster_id!, clusters, why);
      }
    }
  }

  private async move(job: JobRow, from: string, clusters: SchedulingCluster[], why: string): Promise<void> {
    if (job.pending_action === 'deleting') {
      // Nothing is left to delete on a cluster that is gone.
      await this.options.removed(job);
      await this.store.remove(job.id);
      await this.events.changed(job);
      return;
    }
    if (job.pending_action === 'cancelling') {
      const cancelled = await this.store.finish(from, job.id, { status: 'cancelled' });
      if (cancelled) {
        await this.events.record(cancelled, { level: 'info', type: 'message', message: `Job cancelled (${why})` });
        await this.events.changed(cancelled);
      }
      return;
    }
    let placement;
    try {
      // The job's creator's project assignments, as when it was created; the GPUs it was given.
      placement = await placeJob(this.dependencies, new Set(this.transport.allConnectedClusters()), ownerOf(job, `rescheduler:${job.id}`), job.gpu_count, {
        excluding: from,
        clusters,
      });
    } catch (error) {
      this.logger.debug({ jobId: job.id, err: (error as Error).message }, 'no other cluster can take the job yet');
      return;
    }
    const moved = await this.store.reassign(job.id, from, placement);
    if (!moved) return;
    await this.events.record(moved, {
      level: 'warn',
      type: 'message',
      message: `${why[0]!.toUpperCase()}${why.slice(1)}: the job moves to cluster ${placement.clusterId} (namespace ${placement.namespace}), queued again`,
    });
    await this.events.changed(moved);
    this.options.onQueued();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }
}
