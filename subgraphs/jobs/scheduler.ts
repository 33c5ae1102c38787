import { failedPrecondition } from '../../lib/errors.js';
import type { ProjectAssignment, SchedulingCluster } from './dependencies.js';

export interface Placement {
  clusterId: string;
  namespace: string;
  kueueQueueName: string | null;
  gpuCount: number;
}

/**
 * Picks where a job runs (LLMariner scheduler.go): among the (cluster, namespace) pairs assigned to
 * the project, on `clusters` — the clusters the project's organization may use (lib/clusterAccess.ts),
 * never another's: an assignment without a cluster means any of them, and an assignment naming a
 * cluster the organization may not use is skipped — on clusters whose status is fresh, preferring clusters with a connected agent, then clusters with enough free
 * GPUs, then the most free GPUs. A cluster whose GPUs are busy still takes the job: it waits there
 * (Kueue) rather than being refused. A job that asks for no GPU count gets one GPU where the cluster
 * has GPUs and runs on CPU where it has none (the local executor).
 */
export function schedule(
  assignments: ProjectAssignment[],
  clusters: SchedulingCluster[],
  connected: ReadonlySet<string>,
  requestedGpus: number | null,
): Placement {
  if (assignments.length === 0)
    throw failedPrecondition('the project has no cluster namespace assigned: ask an organization owner to assign one (project assignments)');
  const byId = new Map(clusters.map((c) => [c.id, c]));
  const candidates: (Placement & { cluster: SchedulingCluster })[] = [];
  for (const assignment of assignments) {
    const targets = assignment.clusterId ? [byId.get(assignment.clusterId)].filter((c): c is SchedulingCluster => c !== undefined) : clusters;
    for (const cluster of targets) {
      if (cluster.stale) continue;
      const gpuCount = requestedGpus ?? (cluster.gpuCapacity > 0 ? 1 : 0);
      if (cluster.gpuCapacity < gpuCount) continue;
      candidates.push({ cluster, clusterId: cluster.id, namespace: assignment.namespace, kueueQueueName: assignment.kueueQueueName, gpuCount });
    }
  }
  if (candidates.length === 0) {
    const reachable = clusters.filter((c) => assignments.some((a) => a.clusterId === null || a.clusterId === c.id));
    if (reachable.length === 0) {
      throw failedPrecondition(
        "no cluster is available to the project's organization: its assignments name no cluster the organization may use (a platform admin grants a platform cluster, or the organization's owner registers one)",
      );
    }
    const fresh = reachable.filter((c) => !c.stale);
    throw failedPrecondition(
      fresh.length === 0
        ? 'no cluster assigned to the project has reported its status recently: none can take the job now'
        : `no cluster assigned to the project has ${requestedGpus ?? 1} GPU(s); the most any has is ${Math.max(...fresh.map((c) => c.gpuCapacity))}`,
    );
  }
  const free = (c: SchedulingCluster) => c.gpuCapacity - c.gpuAllocated;
  candidates.sort(
    (a, b) =>
      Number(connected.has(b.clusterId)) - Number(connected.has(a.clusterId)) ||
      Number(free(b.cluster) >= b.gpuCount) - Number(free(a.cluster) >= a.gpuCount) ||
      free(b.cluster) - free(a.cluster) ||
      a.cluster.name.localeCompare(b.cluster.name),
  );
  const { cluster: _cluster, ...placement } = candidates[0]!;
  return placement;
}
