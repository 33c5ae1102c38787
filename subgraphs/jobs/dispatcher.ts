import { notebookBasePath, type NotebookSpec } from '../../lib/jobSpec.js';
import type { Logger } from '../../lib/logging.js';
import { agentRoutes, callAgent, type AgentTunnels } from '../../lib/agentContract.js';
import type { Admission, DispatchGuard, DispatchPass } from './dispatchGuard.js';
import type { JobEvents } from './events.js';
import type { JobAction, JobRow, JobStore } from './store.js';

/**
 * The job dispatcher (LLMariner dispatcher, turned around: the control plane pushes through the
 * tunnel instead of agents polling). Jobs waiting for an agent — to be started (`creating`) or
 * stopped (`cancelling`) — are claimed with a lease, sent to their cluster's agent, and marked
 * done when it accepts. Nothing is lost on a crash: the state is in the table, a claim that was
 * not completed expires, and the agent treats a job it already has as accepted. A job goes to be
 * started (or a notebook started again, with its secrets) only after `guard` admits it: its cluster
 * still serves its organization, and it still acts for its creator (dispatchGuard.ts). Stopping,
 * cancelling and deleting go to the cluster that has the job whatever it serves now.
 */
export class JobDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopListening: (() => void) | undefined;

  constructor(
    private readonly store: JobStore,
    private readonly transport: AgentTunnels,
    private readonly events: JobEvents,
    private readonly logger: Logger,
    private readonly intervalMs: number,
    /** A notebook's secrets, opened to be sent; what to clean up once a job is gone (its API key). */
    private readonly hooks: { notebookSecrets(job: JobRow & { kind: 'notebook' }): { token: string; apiKey: string }; removed(job: JobRow): Promise<void> },
    private readonly guard: DispatchGuard,
    private readonly leaseSeconds = 60,
    /** After a failed dispatch (agent unreachable or busy), wait this long before the next try. */
    private readonly retrySeconds = 5,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.nudge(), this.intervalMs);
    this.timer.unref();
    this.stopListening = this.transport.onChange(() => this.nudge());
    this.nudge();
  }

  /** Runs a pass now (or right after the one in progress). */
  nudge(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((error: Error) => this.logger.warn({ err: error.message }, 'job dispatch failed; retrying on the next tick'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.nudge();
        }
      });
  }

  private async pass(): Promise<void> {
    for (;;) {
      const claimed = await this.store.claimForDispatch(this.transport.allConnectedClusters(), this.leaseSeconds);
      if (claimed.length === 0) return;
      const pass = this.guard.newPass();
      await Promise.all(claimed.map((job) => this.dispatch(job, pass)));
    }
  }

  /** What the agent is sent for each action (a notebook's secrets only in transit, never stored in its spec). */
  private async request(job: JobRow, action: JobAction): Promise<{ path: string; body: unknown; logOffset?: number }> {
    // A notebook also learns where users will reach it (Jupyter's base_url): on its cluster, in its namespace.
    const withSecrets = (spec: JobRow['spec']) =>
      job.kind === 'notebook'
        ? {
            ...spec,
            secrets: this.hooks.notebookSecrets(job),
            ...(job.cluster_id && spec.namespace ? { basePath: notebookBasePath(job.cluster_id, (spec as NotebookSpec).name, spec.namespace) } : {}),
          }
        : spec;
    switch (action) {
      case 'creating': {
        // A requeued job's output goes on after what earlier attempts wrote.
        const logOffset = await this.store.nextLogOffset(job.id);
        return { path: agentRoutes.startJob(), body: { id: job.id, spec: { ...withSecrets(job.spec), attempt: job.attempts + 1, logOffset } }, logOffset };
      }
      case 'starting':
        return { path: agentRoutes.jobAction(job.id, 'start'), body: { id: job.id, spec: { ...withSecrets(job.spec), attempt: job.attempts } } };
      // The spec says where the job's objects are, for an agent that restarted since.
      case 'cancelling':
        return { path: agentRoutes.jobAction(job.id, 'cancel'), body: { id: job.id, spec: job.spec } };
      case 'stopping':
        return { path: agentRoutes.jobAction(job.id, 'stop'), body: { id: job.id, spec: job.spec } };
      case 'deleting':
        return { path: agentRoutes.jobAction(job.id, 'delete'), body: { id: job.id, spec: job.spec } };
    }
  }

  /** The agent did what was asked (or had nothing to do it to): the job's new state. */
  private async done(job: JobRow, action: JobAction, clusterId: string, logOffset: number | undefined, agentHadIt: boolean): Promise<void> {
    if (action === 'deleting') {
      // What the job held elsewhere (a notebook's API key) first: once the row is gone, it is forgotten.
      await this.hooks.removed(job);
      await this.store.remove(job.id);
      await this.events.changed(job);
      return;
    }
    if (action === 'cancelling' && !agentHadIt) {
      // The agent has no such job (it finished or was never started there): nothing left to stop.
      const cancelled = await this.store.finish(clusterId, job.id, { status: 'cancelled' });
      if (cancelled) {
        await this.events.record(cancelled, { level: 'info', type: 'message', message: 'Job cancelled' });
        await this.events.changed(cancelled);
      }
      return;
    }
    if (action === 'starting' && !agentHadIt) {
      // Its cluster no longer has the stopped notebook: create it again.
      await this.store.requeue(clusterId, job.id);
      this.nudge();
      return;
    }
    const updated = await this.store.dispatched(job.id, action, logOffset);
    if (!updated) return;
    if (action === 'creating') {
      await this.events.record(updated, {
        level: 'info',
        type: 'message',
        message: `Job dispatched to cluster ${clusterId}${updated.kubernetes_namespace ? ` (namespace ${updated.kubernetes_namespace})` : ''}`,
      });
    }
    await this.events.changed(updated);
  }

  /** The guard refused to send the job to its cluster: it moves to another cluster, or fails with the reason. */
  private async refused(job: JobRow, clusterId: string, admission: Exclude<Admission, { admitted: true }>): Promise<void> {
    if (admission.cause === 'creator') return this.guard.creatorRevoked(job, admission.reason);
    const reason = `${admission.reason[0]!.toUpperCase()}${admission.reason.slice(1)}`;
    if (admission.moveTo) {
      const moved = await this.store.reassign(job.id, clusterId, admission.moveTo);
      if (!moved) return;
      await this.events.record(moved, {
        level: 'warn',
        type: 'message',
        message: `${reason}: the job moves to cluster ${admission.moveTo.clusterId} (namespace ${admission.moveTo.namespace}), queued again`,
      });
      await this.events.changed(moved);
      this.nudge();
      return;
    }
    const message = `${reason}, and no other cluster is available to the project's organization`;
    const failed = await this.store.finish(clusterId, job.id, { status: 'failed', error: { code: 'cluster_not_available', message, param: null } });
    if (failed) {
      await this.events.record(failed, { level: 'error', type: 'message', message: `The job was not sent to cluster ${clusterId}: ${message}` });
      await this.events.changed(failed);
    }
  }

  private async dispatch(job: JobRow, pass: DispatchPass): Promise<void> {
    const action = job.pending_action;
    const clusterId = job.cluster_id;
    if (!action || !clusterId) return this.store.retryDispatchLater(job.id, this.retrySeconds);
    try {
      if (action === 'creating' || action === 'starting') {
        const admission = await this.guard.admit(job, clusterId, pass);
        if (!admission.admitted) return await this.refused(job, clusterId, admission);
        // From here on the cluster has the job: its agent may see it and report on it.
        if (!(await this.store.sending(job.id, clusterId))) return;
      }
      const { path, body, logOffset } = await this.request(job, action);
      const answer = await callAgent(this.transport, clusterId, path, body, { requestId: job.spec.requestId });
      if (answer.status >= 200 && answer.status < 300) return await this.done(job, action, clusterId, logOffset, true);
      if (answer.status === 404 && action !== 'creating') return await this.done(job, action, clusterId, logOffset, false);
      const reason = answer.body.error?.message ?? `the agent answered ${answer.status}`;
      if (answer.status >= 400 && answer.status < 500 && action === 'creating') {
        // The cluster cannot run this job at all (e.g. no trainer configured): a permanent failure.
        const failed = await this.store.finish(clusterId, job.id, { status: 'failed', error: { code: 'dispatch_refused', message: reason, param: null } });
        if (failed) {
          await this.events.record(failed, { level: 'error', type: 'message', message: `Cluster ${clusterId} refused the job: ${reason}` });
          await this.events.changed(failed);
        }
        return;
      }
      this.logger.warn({ jobId: job.id, clusterId, action, reason }, 'agent did not take the job; retrying later');
      await this.store.retryDispatchLater(job.id, this.retrySeconds);
    } catch (error) {
      // The agent, or a subgraph the guard asks, did not answer.
      this.logger.warn({ jobId: job.id, clusterId, action, err: (error as Error).message }, 'could not dispatch the job; retrying later');
      await this.store.retryDispatchLater(job.id, this.retrySeconds);
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.stopListening?.();
    await this.running;
  }
}
