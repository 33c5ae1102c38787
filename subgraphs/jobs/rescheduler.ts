import type { Logger } from '../../lib/logging.js';
import type { JobTransport } from './dispatcher.js';
import type { JobEvents } from './events.js';
import type { JobPeers, SchedulingCluster } from './peers.js';
import { schedule } from './scheduler.js';
import type { JobRow, JobStore } from './store.js';

/**
 * The rescheduler (LLMariner rescheduler.go): a job whose cluster has not reported its status for
 * `abandonAfterSeconds` (the cluster is gone: deleted, partitioned, its agent down for good) is placed
 * again among its project's clusters and queued there; one that was being cancelled is cancelled. A
 * job with nowhere else to go stays, and is looked at again on the next pass.
 */
export class JobRescheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: JobStore,
    private readonly peers: JobPeers,
    private readonly transport: JobTransport,
    private readonly events: JobEvents,
    private readonly logger: Logger,
    private readonly options: { abandonAfterSeconds: number; intervalMs: number; onQueued(): void; removed(job: JobRow): Promise<void> },
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.pass()
        .catch((error: Error) => this.logger.warn({ err: error.message }, 'rescheduling failed; retrying on the next tick'))
        .finally(() => (this.running = undefined));
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private abandoned(cluster: SchedulingCluster | undefined): boolean {
    if (!cluster) return true;
    if (!cluster.statusUpdatedAt) return false;
    return Date.now() - Date.parse(cluster.statusUpdatedAt) > this.options.abandonAfterSeconds * 1000;
  }

  async pass(): Promise<void> {
    const jobs = await this.store.unfinishedPlaced();
    const byTenant = new Map<string, JobRow[]>();
    for (const job of jobs) byTenant.set(job.tenant_id, [...(byTenant.get(job.tenant_id) ?? []), job]);
    for (const [tenantId, tenantJobs] of byTenant) {
      const clusters = await this.peers.schedulingClusters(`rescheduler:${tenantId}`, tenantId);
      const byId = new Map(clusters.map((c) => [c.id, c]));
      for (const job of tenantJobs) {
        const from = job.cluster_id!;
        if (!this.abandoned(byId.get(from))) continue;
        await this.move(job, from, clusters);
      }
    }
  }

  private async move(job: JobRow, from: string, clusters: SchedulingCluster[]): Promise<void> {
    const why = `cluster ${from} has not reported for more than ${Math.round(this.options.abandonAfterSeconds / 60)} min`;
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
      const assignments = await this.peers.assignments({ requestId: `rescheduler:${job.id}`, identity: job.creator }, job.project_id);
      placement = schedule(assignments, clusters.filter((c) => c.id !== from), new Set(this.transport.allConnectedClusters()), job.gpu_count);
    } catch (error) {
      this.logger.debug({ jobId: job.id, err: (error as Error).message }, 'no other cluster can take the job yet');
      return;
    }
    const moved = await this.store.reassign(job.id, from, placement);
    if (!moved) return;
    await this.events.record(moved, { level: 'warn', type: 'message', message: `${why[0]!.toUpperCase()}${why.slice(1)}: the job moves to cluster ${placement.clusterId} (namespace ${placement.namespace}), queued again` });
    await this.events.changed(moved);
    this.options.onQueued();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
