import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { agentRoutes } from '../../lib/agentContract.js';
import type { Logger } from '../../lib/logging.js';
import { PeriodicTask } from '../../lib/periodicTask.js';
import type { FederationClustersQuery } from './generated/clustersOperations.js';
import type { FederatedJob, FederationStore, KubeObject } from './federationStore.js';
import type { TunnelHolder } from './tunnelRegistry.js';

/**
 * Where a Job submitted to the virtual cluster `federated` runs (federationRoutes.ts): one cluster of the
 * project's assignments for its namespace, among those its organization may use, over the clusters'
 * reported GPUs (the clusters subgraph's `schedulingClusters`, the capacity data the jobs scheduler
 * places jobs with), among those that are connected, fresh and have the Job's GPUs free now: the one
 * with the most free GPUs, as the jobs scheduler orders them. A full cluster is skipped; when none has room the Job waits (no
 * cluster) and is placed by a later pass, when a cluster reports room. The real Job is created through
 * the cluster's agent tunnel (the Kubernetes API proxy kubeProxy.ts uses), with the agent's account.
 */

/** A cluster as placement sees it. */
export type FederationCluster = FederationClustersQuery['schedulingClusters'][number];

/** The label every federated Job carries on its cluster: the row's id. */
export const FEDERATED_LABEL = 'federation.mariner.dev/job';
/** Annotations on the Jobs the virtual endpoint answers: where it runs, or why it waits. */
export const CLUSTER_ANNOTATION = 'federation.mariner.dev/cluster';
export const STATE_ANNOTATION = 'federation.mariner.dev/state';
export const MESSAGE_ANNOTATION = 'federation.mariner.dev/message';

/** How often waiting Jobs are tried again and placed Jobs' clusters checked (a GET or list of the namespace also tries). */
export const FEDERATION_PASS_MS = 10_000;
/** A cluster silent this long has its federated Jobs requeued elsewhere (the jobs rescheduler's default). */
export const FEDERATION_ABANDON_MS = 10 * 60_000;

export const GPU_RESOURCE = 'nvidia.com/gpu';

/** What the tunnel offers placement: streams to an agent, and which clusters have one connected. */
export interface FederationTransport {
  request(clusterId: string, headers: OutgoingHttpHeaders, options?: { endStream?: boolean }): ClientHttp2Stream;
  workerOf(clusterId: string): TunnelHolder | undefined;
}

/** An answer of a cluster's Kubernetes API: its status and its JSON body (`{}` when none or not JSON). */
export interface KubeAnswer {
  status: number;
  body: KubeObject;
}

/** One Kubernetes API call to a cluster through its agent (the agent runs it with its own account). Fails on tunnel errors. */
export function kubeCall(
  transport: Pick<FederationTransport, 'request'>,
  clusterId: string,
  method: string,
  path: string,
  body?: unknown,
  options: { requestId?: string; timeoutMs?: number } = {},
): Promise<KubeAnswer> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    let stream: ClientHttp2Stream;
    try {
      stream = transport.request(
        clusterId,
        {
          ':method': method,
          ':path': agentRoutes.kubernetes(path),
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          ...(options.requestId ? { 'x-request-id': options.requestId } : {}),
        },
        { endStream: payload === undefined },
      );
    } catch (error) {
      return reject(error as Error);
    }
    let status = 0;
    const chunks: Buffer[] = [];
    const fail = (error: Error) => {
      clearTimeout(timer);
      if (!stream.closed) stream.close();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error(`cluster ${clusterId} did not answer within ${timeoutMs} ms`)), timeoutMs);
    stream.on('response', (headers) => (status = Number(headers[':status'] ?? 0)));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', fail);
    stream.on('close', () => {
      if (status === 0 || !stream.readableEnded) fail(new Error(`the call to cluster ${clusterId} ended without an answer`));
    });
    stream.on('end', () => {
      clearTimeout(timer);
      let parsed: KubeObject = {};
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as KubeObject;
      } catch {
        /* no JSON: the status says enough */
      }
      resolve({ status, body: parsed });
    });
    if (payload) stream.end(payload);
  });
}

/** The Job's collection path on a cluster. */
export const jobsPath = (namespace: string) => `/apis/batch/v1/namespaces/${encodeURIComponent(namespace)}/jobs`;

/** What placing a Job came to. */
export type PlaceOutcome =
  | { kind: 'placed'; job: FederatedJob; object: KubeObject }
  | { kind: 'waiting'; job: FederatedJob; message: string }
  /** The chosen cluster's apiserver refused the Job (its answer, a Status); the row is removed when `removeOnRefusal`. */
  | { kind: 'refused'; status: number; body: KubeObject }
  /** Someone deleted it meanwhile. */
  | { kind: 'gone' };

export interface FederationPlacerOptions {
  store: FederationStore;
  transport: FederationTransport;
  /** The clusters the organization may use, with their GPUs (clusters subgraph, as the system). */
  schedulingClusters(requestId: string, tenantId: string, organizationId: string): Promise<FederationCluster[]>;
  logger: Logger;
}

/**
 * Places federated Jobs, one at a time in this process (so two Jobs submitted together never both take
 * the last free GPUs): the GPUs of Jobs it placed after a cluster's last status report count as
 * allocated there, since the report does not show them yet.
 */
export class FederationPlacer {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly task: PeriodicTask;

  constructor(private readonly options: FederationPlacerOptions) {
    this.task = new PeriodicTask(
      () => this.pass(),
      FEDERATION_PASS_MS,
      (error) => options.logger.warn({ err: error.message }, 'federated Job placement pass failed; retrying on the next tick'),
    );
  }

  start(): void {
    this.task.start();
  }

  async stop(): Promise<void> {
    await this.task.stop();
    await this.chain.catch(() => undefined);
  }

  /** Tries to place a waiting Job now; serialized with every other placement of this process. */
  place(job: FederatedJob, requestId: string, options: { removeOnRefusal?: boolean } = {}): Promise<PlaceOutcome> {
    const run = this.chain.then(() => this.placeNow(job, requestId, options.removeOnRefusal ?? false));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async placeNow(job: FederatedJob, requestId: string, removeOnRefusal: boolean): Promise<PlaceOutcome> {
    const { store, transport, logger } = this.options;
    const clusters = await this.options.schedulingClusters(requestId, job.tenantId, job.organizationId);
    // GPUs of Jobs placed after the cluster last reported: not in its gpuAllocated yet.
    const reserved = new Map<string, number>();
    for (const other of await store.placed(job.tenantId, job.organizationId)) {
      const cluster = clusters.find((c) => c.id === other.clusterId);
      const reportedAt = cluster?.statusUpdatedAt ? Date.parse(cluster.statusUpdatedAt) : 0;
      if (other.placedAt && other.placedAt.getTime() >= reportedAt) reserved.set(other.clusterId!, (reserved.get(other.clusterId!) ?? 0) + other.gpus);
    }
    const assigned = (clusterId: string) => job.assignedClusters.some((c) => c === null || c === clusterId);
    const connected = (clusterId: string) => transport.workerOf(clusterId)?.tenantId === job.tenantId;
    const tried = new Set<string>();
    const refusals: string[] = [];
    for (;;) {
      const usable = clusters
        .filter((c) => assigned(c.id) && !c.stale && connected(c.id) && !tried.has(c.id))
        .map((c) => ({ ...c, gpuAllocated: c.gpuAllocated + (reserved.get(c.id) ?? 0) }));
      const withRoom = usable.filter((c) => c.gpuCapacity - c.gpuAllocated >= job.gpus);
      if (withRoom.length === 0) {
        const message = refusals.length > 0 ? refusals.join('; ') : waitingMessage(job, clusters, usable, assigned);
        await store.markWaiting(job.id, message);
        return { kind: 'waiting', job: { ...job, message }, message };
      }
      // The jobs scheduler's order (subgraphs/jobs/scheduler.ts, which a subgraph may not import): the most free GPUs, then the name.
      const free = (c: FederationCluster) => c.gpuCapacity - c.gpuAllocated;
      const clusterId = withRoom.sort((a, b) => free(b) - free(a) || a.name.localeCompare(b.name))[0]!.id;
      tried.add(clusterId);
      let answer: KubeAnswer;
      try {
        answer = await kubeCall(transport, clusterId, 'POST', jobsPath(job.namespace), job.manifest, { requestId });
      } catch (error) {
        logger.warn({ err: (error as Error).message, clusterId, job: job.id }, 'creating a federated Job failed; trying another cluster');
        refusals.push(`cluster ${clusterId} could not be reached`);
        continue;
      }
      if (answer.status === 200 || answer.status === 201) {
        const uid = typeof answer.body.metadata?.['uid'] === 'string' ? (answer.body.metadata['uid'] as string) : null;
        if (!(await store.markPlaced(job.id, clusterId, uid))) {
          // Deleted (or placed by another replica) while it was being created: take it back.
          await kubeCall(transport, clusterId, 'DELETE', `${jobsPath(job.namespace)}/${encodeURIComponent(job.name)}`, {
            propagationPolicy: 'Background',
          }).catch(() => undefined);
          return { kind: 'gone' };
        }
        return { kind: 'placed', job: { ...job, clusterId, uid, placedAt: new Date(), message: null }, object: answer.body };
      }
      // A Job of that name already on this cluster (not this one): another cluster may take it.
      if (answer.status === 409) {
        refusals.push(`cluster ${clusterId} already has a Job named "${job.name}" in ${job.namespace}`);
        continue;
      }
      // No such namespace there (not created yet), or no Kubernetes at all (an agent on the local executor): another cluster may take it.
      if (answer.status === 404) {
        refusals.push(`cluster ${clusterId} cannot take it: ${String(answer.body['message'] ?? 'not found')}`);
        continue;
      }
      if (answer.status >= 400 && answer.status < 500) {
        if (removeOnRefusal) {
          await store.remove(job.id);
          return { kind: 'refused', status: answer.status, body: answer.body };
        }
        refusals.push(`cluster ${clusterId} refused the Job: ${String(answer.body['message'] ?? answer.status)}`);
        continue;
      }
      refusals.push(`cluster ${clusterId} answered ${answer.status}`);
    }
  }

  /**
   * One pass: a placed Job whose cluster its organization may no longer use (unregistered, its grant
   * revoked) or that has been silent for FEDERATION_ABANDON_MS is put back in the queue; then every
   * waiting Job is tried, oldest first.
   */
  async pass(): Promise<void> {
    const { store, logger } = this.options;
    const byOrganization = new Map<string, FederatedJob[]>();
    for (const job of await store.allPlaced()) {
      const key = `${job.tenantId} ${job.organizationId}`;
      byOrganization.set(key, [...(byOrganization.get(key) ?? []), job]);
    }
    for (const jobs of byOrganization.values()) {
      const { tenantId, organizationId } = jobs[0]!;
      const clusters = new Map((await this.options.schedulingClusters(`federation:${tenantId}`, tenantId, organizationId)).map((c) => [c.id, c]));
      for (const job of jobs) {
        const cluster = clusters.get(job.clusterId!);
        const silentFor = cluster?.statusUpdatedAt ? Date.now() - Date.parse(cluster.statusUpdatedAt) : 0;
        const why = !cluster
          ? `cluster ${job.clusterId} is no longer available to the organization`
          : silentFor > FEDERATION_ABANDON_MS
            ? `cluster ${job.clusterId} has not reported for ${Math.round(silentFor / 60_000)} min`
            : null;
        if (why && (await store.requeue(job.id, job.clusterId!, `requeued: ${why}`))) {
          logger.info({ job: job.id, clusterId: job.clusterId, why }, 'federated Job requeued');
        }
      }
    }
    for (const job of await store.pending()) await this.place(job, `federation:${job.id}`);
  }
}

function waitingMessage(job: FederatedJob, clusters: FederationCluster[], usable: FederationCluster[], assigned: (clusterId: string) => boolean): string {
  if (!clusters.some((c) => assigned(c.id))) return `no cluster the organization may use has namespace ${job.namespace} assigned to the project`;
  if (usable.length === 0) return `no cluster assigned to the project for namespace ${job.namespace} is connected and reporting: the Job waits`;
  const largest = Math.max(...usable.map((c) => c.gpuCapacity));
  if (largest < job.gpus) return `no cluster assigned to the project has ${job.gpus} GPU(s) at all (the most: ${largest}): the Job waits until one has`;
  const mostFree = Math.max(...usable.map((c) => c.gpuCapacity - c.gpuAllocated));
  return `no cluster has ${job.gpus} free GPU(s) now (the most free: ${Math.max(0, mostFree)}): the Job waits and is placed when one has room`;
}

/** The GPUs a Job asks for: its pod's (containers summed, or the largest init container) × its parallelism. */
export function gpusOfJob(job: KubeObject): number {
  const pod = job.spec?.template?.spec ?? {};
  const gpusOf = (c: { resources?: { limits?: Record<string, unknown>; requests?: Record<string, unknown> } }) =>
    Number(c.resources?.limits?.[GPU_RESOURCE] ?? c.resources?.requests?.[GPU_RESOURCE] ?? 0) || 0;
  const containers = ((pod.containers ?? []) as object[]).reduce<number>((sum, c) => sum + gpusOf(c), 0);
  const init = Math.max(0, ...((pod.initContainers ?? []) as object[]).map(gpusOf));
  const parallelism = typeof job.spec?.parallelism === 'number' ? job.spec.parallelism : 1;
  const completions = typeof job.spec?.completions === 'number' ? job.spec.completions : parallelism;
  return Math.max(containers, init) * Math.max(1, Math.min(parallelism, completions));
}
