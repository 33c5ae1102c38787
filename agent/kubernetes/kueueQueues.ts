import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { BatchV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../lib/logging.js';
import { ignoreNotFound, orNotFound, statusCode } from './apiErrors.js';
import { parseQuantity } from './clusterStatus.js';
import { MANAGED_BY } from './projectRoleBindings.js';

/**
 * Kueue managed per project (issue 22, docs/quotas.md). The control plane sends the GPU quotas of the
 * projects this cluster serves (`workerGpuQuotas`, subgraphs/users/gpuQuotas.ts); the agent keeps, for
 * each project with a quota here:
 * - one `ClusterQueue` (cluster-scoped, `mariner-<project>`) over the project's namespaces on the cluster,
 *   with the quotas as nominal quotas per resource and flavour, in a cohort of its organization when a
 *   quota allows borrowing (a quota that does not gets `borrowingLimit: 0`);
 * - one `LocalQueue` in each of those namespaces, named as the Jobs' queue label names it (the
 *   assignment's Kueue queue, else MARINER_KUEUE_DEFAULT_QUEUE, else `mariner`);
 * - the `ResourceFlavor`s the quotas name (the default one is `mariner-default`, on every node).
 * What the agent made carries the managed-by label; it never changes or deletes anything without it, and
 * deletes what it made once no quota wants it. Kueue's v1beta1 API (the fields used are in
 * testdata/kueue-v1beta1.schema.json).
 *
 * `status` reads the namespaces' Workloads back: GPUs that admitted ones hold (per resource and flavour)
 * and the Jobs Kueue holds back (QuotaReserved False), with Kueue's message, for `reportGpuQuotaStatus`.
 */

export const KUEUE_GROUP = 'kueue.x-k8s.io';
export const KUEUE_VERSION = 'v1beta1';
export const DEFAULT_FLAVOR = 'mariner-default';
export const DEFAULT_LOCAL_QUEUE = 'mariner';
/** Labels on what the agent makes: whose project a ClusterQueue is. */
export const PROJECT_LABEL = 'mariner.dev/project-id';
const JOB_ID_LABEL = 'mariner.dev/job-id';

/** A project's quota on this cluster, as `workerGpuQuotas` sends it. */
export interface WorkerGpuQuota {
  projectId: string;
  organizationId: string;
  namespaces: string[];
  queueName: string | null;
  resource: string;
  flavor: string | null;
  nominalGpus: number;
  borrowingAllowed: boolean;
}

/** What `reportGpuQuotaStatus` takes. */
export interface GpuQuotaReport {
  usage: { namespace: string; resource: string; flavor: string | null; usedGpus: number }[];
  /** `position`: the Workload's place in its LocalQueue (1: admitted next) where Kueue's visibility API says it; else null. */
  waiting: { jobId: string; namespace: string; message: string; position: number | null }[];
}

export interface KueueReconcileResult {
  created: string[];
  updated: string[];
  deleted: string[];
}

type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string };
  spec?: any;
};

/** A Kubernetes name from an id of any case: lowercase, and a short hash of the exact id (ids differ in case only rarely, but may). */
function kubeName(prefix: string, id: string): string {
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 8);
  const body = id
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return `${prefix}-${body}-${hash}`;
}

export const clusterQueueName = (projectId: string) => kubeName('mariner', projectId);
export const cohortName = (organizationId: string) => kubeName('mariner', organizationId);

const managedLabels = (extra: Record<string, string> = {}) => ({ [MANAGED_BY.key]: MANAGED_BY.value, ...extra });
const flavorOf = (quota: Pick<WorkerGpuQuota, 'flavor'>) => quota.flavor || DEFAULT_FLAVOR;

/** The manifests the quotas want: ResourceFlavors, ClusterQueues and LocalQueues. */
export function kueueManifests(quotas: readonly WorkerGpuQuota[], options: { defaultQueue?: string | undefined } = {}) {
  const byProject = new Map<string, WorkerGpuQuota[]>();
  for (const quota of quotas) byProject.set(quota.projectId, [...(byProject.get(quota.projectId) ?? []), quota]);
  const flavors = new Map<string, KubeObject>();
  const clusterQueues: KubeObject[] = [];
  const localQueues: KubeObject[] = [];
  for (const [projectId, mine] of [...byProject].sort(([a], [b]) => a.localeCompare(b))) {
    const name = clusterQueueName(projectId);
    const namespaces = [...new Set(mine.flatMap((q) => q.namespaces))].sort();
    const resources = [...new Set(mine.map((q) => q.resource))].sort();
    const flavorNames = [...new Set(mine.map(flavorOf))].sort();
    for (const flavor of flavorNames) {
      flavors.set(flavor, {
        apiVersion: `${KUEUE_GROUP}/${KUEUE_VERSION}`,
        kind: 'ResourceFlavor',
        metadata: { name: flavor, labels: managedLabels() },
        spec: {},
      });
    }
    const borrowing = mine.some((q) => q.borrowingAllowed);
    // One resource group: every flavour lists every covered resource, in the same order (Kueue requires it); a pair without a quota gets 0.
    const resourceGroup = {
      coveredResources: resources,
      flavors: flavorNames.map((flavor) => ({
        name: flavor,
        resources: resources.map((resource) => {
          const quota = mine.find((q) => q.resource === resource && flavorOf(q) === flavor);
          return {
            name: resource,
            nominalQuota: String(quota?.nominalGpus ?? 0),
            ...(borrowing && !quota?.borrowingAllowed ? { borrowingLimit: '0' } : {}),
          };
        }),
      })),
    };
    clusterQueues.push({
      apiVersion: `${KUEUE_GROUP}/${KUEUE_VERSION}`,
      kind: 'ClusterQueue',
      metadata: { name, labels: managedLabels({ [PROJECT_LABEL]: projectId }) },
      spec: {
        namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }] },
        ...(borrowing ? { cohort: cohortName(mine[0]!.organizationId) } : {}),
        queueingStrategy: 'BestEffortFIFO',
        resourceGroups: [resourceGroup],
      },
    });
    const queueName = mine.find((q) => q.queueName)?.queueName ?? options.defaultQueue ?? DEFAULT_LOCAL_QUEUE;
    for (const namespace of namespaces) {
      localQueues.push({
        apiVersion: `${KUEUE_GROUP}/${KUEUE_VERSION}`,
        kind: 'LocalQueue',
        metadata: { name: queueName, namespace, labels: managedLabels({ [PROJECT_LABEL]: projectId }) },
        spec: { clusterQueue: name },
      });
    }
  }
  return { resourceFlavors: [...flavors.values()], clusterQueues, localQueues };
}

export interface KueueQueueOptions {
  kubeConfig: KubeConfig;
  /** MARINER_KUEUE_DEFAULT_QUEUE: the LocalQueues' name where the project's assignment names none. */
  defaultQueue?: string | undefined;
  logger: Logger;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function createKueueQueues(options: KueueQueueOptions) {
  /** The LocalQueue the agent keeps in each namespace with a quota, as the last reconcile wanted it. */
  let queues = new Map<string, string>();
  const custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
  const batch = options.kubeConfig.makeApiClient(BatchV1Api);
  const api = { group: KUEUE_GROUP, version: KUEUE_VERSION };
  const selector = `${MANAGED_BY.key}=${MANAGED_BY.value}`;
  const listCluster = async (plural: string): Promise<KubeObject[]> =>
    (await custom.listClusterCustomObject({ ...api, plural, labelSelector: selector })).items;

  /** Makes Kueue's queues those of `quotas` (ours only); 404 on the lists with no quota wanted: Kueue is not installed, nothing to do. */
  async function reconcile(quotas: readonly WorkerGpuQuota[]): Promise<KueueReconcileResult> {
    const wanted = kueueManifests(quotas, { defaultQueue: options.defaultQueue });
    queues = new Map(wanted.localQueues.map((queue) => [queue.metadata.namespace!, queue.metadata.name]));
    const result: KueueReconcileResult = { created: [], updated: [], deleted: [] };
    let existingQueues: KubeObject[];
    try {
      existingQueues = await listCluster('clusterqueues');
    } catch (error) {
      // No quota here: a cluster without Kueue (404) or without the rights to it (403) has nothing to keep.
      if ((statusCode(error) === 404 || statusCode(error) === 403) && quotas.length === 0) return result;
      if (statusCode(error) === 404)
        throw new Error('Kueue is not installed on the cluster (no kueue.x-k8s.io/v1beta1 ClusterQueues): projects have GPU quotas here');
      throw error;
    }
    const existingFlavors = await listCluster('resourceflavors');
    const existingLocal: KubeObject[] = (await custom.listCustomObjectForAllNamespaces({ ...api, plural: 'localqueues', labelSelector: selector })).items;

    // Flavours first (a ClusterQueue naming a missing one is inactive), then ClusterQueues, then LocalQueues.
    for (const flavor of wanted.resourceFlavors) {
      if (existingFlavors.some((f) => f.metadata.name === flavor.metadata.name)) continue;
      const other = await orNotFound(custom.getClusterCustomObject({ ...api, plural: 'resourceflavors', name: flavor.metadata.name }));
      if (other) continue; // the operator's own (with its node labels): used as it is
      await custom.createClusterCustomObject({ ...api, plural: 'resourceflavors', body: flavor });
      result.created.push(`ResourceFlavor/${flavor.metadata.name}`);
    }
    for (const queue of wanted.clusterQueues) {
      const existing = existingQueues.find((q) => q.metadata.name === queue.metadata.name);
      if (!existing) {
        await custom.createClusterCustomObject({ ...api, plural: 'clusterqueues', body: queue });
        result.created.push(`ClusterQueue/${queue.metadata.name}`);
      } else if (!same(existing.spec, queue.spec) || !same(existing.metadata.labels, queue.metadata.labels)) {
        const body = { ...queue, metadata: { ...queue.metadata, resourceVersion: existing.metadata.resourceVersion } };
        await custom.replaceClusterCustomObject({ ...api, plural: 'clusterqueues', name: queue.metadata.name, body });
        result.updated.push(`ClusterQueue/${queue.metadata.name}`);
      }
    }
    const localKey = (q: KubeObject) => `${q.metadata.namespace}/${q.metadata.name}`;
    for (const queue of wanted.localQueues) {
      const namespace = queue.metadata.namespace!;
      const existing = existingLocal.find((q) => localKey(q) === localKey(queue));
      if (existing && same(existing.spec?.clusterQueue, queue.spec.clusterQueue) && same(existing.metadata.labels, queue.metadata.labels)) continue;
      if (existing) {
        // spec.clusterQueue cannot change (Kueue's validation): the queue is made again.
        await custom.deleteNamespacedCustomObject({ ...api, namespace, plural: 'localqueues', name: queue.metadata.name }).catch(ignoreNotFound);
      } else if (await orNotFound(custom.getNamespacedCustomObject({ ...api, namespace, plural: 'localqueues', name: queue.metadata.name }))) {
        options.logger.warn({ namespace, name: queue.metadata.name }, 'a LocalQueue the agent did not make is there: left as it is');
        continue;
      }
      try {
        await custom.createNamespacedCustomObject({ ...api, namespace, plural: 'localqueues', body: queue });
        (existing ? result.updated : result.created).push(`LocalQueue/${localKey(queue)}`);
      } catch (error) {
        // A namespace not created yet (404): made on a later pass.
        options.logger.warn({ namespace, err: (error as Error).message }, 'could not create a LocalQueue');
      }
    }
    // What we made and nothing wants any more: LocalQueues first, then their ClusterQueues, then flavours. A
    // deletion refused (a namespace released, and the agent's rights there with it) is logged, not fatal.
    const ignoreGone = (what: string) => (error: unknown) => {
      if (statusCode(error) === 404) return;
      options.logger.warn({ object: what, err: (error as Error).message }, 'could not delete a Kueue object the agent made');
    };
    for (const queue of existingLocal) {
      if (wanted.localQueues.some((q) => localKey(q) === localKey(queue))) continue;
      await custom
        .deleteNamespacedCustomObject({ ...api, namespace: queue.metadata.namespace!, plural: 'localqueues', name: queue.metadata.name })
        .catch(ignoreGone(`LocalQueue/${localKey(queue)}`));
      result.deleted.push(`LocalQueue/${localKey(queue)}`);
    }
    for (const queue of existingQueues) {
      if (wanted.clusterQueues.some((q) => q.metadata.name === queue.metadata.name)) continue;
      await custom
        .deleteClusterCustomObject({ ...api, plural: 'clusterqueues', name: queue.metadata.name })
        .catch(ignoreGone(`ClusterQueue/${queue.metadata.name}`));
      result.deleted.push(`ClusterQueue/${queue.metadata.name}`);
    }
    for (const flavor of existingFlavors) {
      if (wanted.resourceFlavors.some((f) => f.metadata.name === flavor.metadata.name)) continue;
      await custom
        .deleteClusterCustomObject({ ...api, plural: 'resourceflavors', name: flavor.metadata.name })
        .catch(ignoreGone(`ResourceFlavor/${flavor.metadata.name}`));
      result.deleted.push(`ResourceFlavor/${flavor.metadata.name}`);
    }
    if (result.created.length || result.updated.length || result.deleted.length) options.logger.info(result, 'Kueue queues follow the projects’ GPU quotas');
    return result;
  }

  /**
   * The pending Workloads' places in a LocalQueue, from Kueue's visibility API (v1beta1
   * `pendingworkloads`, on by default since Kueue 0.9): name -> 1-based position. Empty where the API is
   * not served or refused; asked once per queue and status pass.
   */
  let positions = new Map<string, Promise<Map<string, number>>>();
  function pendingPositions(namespace: string, queue: string | undefined): Promise<Map<string, number>> {
    if (!queue) return Promise.resolve(new Map());
    const key = `${namespace}/${queue}`;
    let answer = positions.get(key);
    if (!answer) {
      answer = visibilityGet(
        `/apis/visibility.kueue.x-k8s.io/v1beta1/namespaces/${encodeURIComponent(namespace)}/localqueues/${encodeURIComponent(queue)}/pendingworkloads`,
      ).then((body: any) => {
        const out = new Map<string, number>();
        for (const item of body?.items ?? []) {
          if (typeof item?.metadata?.name === 'string' && Number.isInteger(item.positionInLocalQueue))
            out.set(item.metadata.name, item.positionInLocalQueue + 1);
        }
        return out;
      });
      positions.set(key, answer);
    }
    return answer;
  }

  /** A GET of the apiserver with the agent's credentials; null on any failure (the caller goes without). */
  async function visibilityGet(path: string): Promise<unknown> {
    try {
      const cluster = options.kubeConfig.getCurrentCluster();
      if (!cluster) return null;
      const server = new URL(cluster.server);
      const request: https.RequestOptions = {
        method: 'GET',
        protocol: server.protocol,
        hostname: server.hostname,
        port: server.port || undefined,
        path: server.pathname.replace(/\/$/, '') + path,
        headers: { accept: 'application/json' },
      };
      await options.kubeConfig.applyToHTTPSOptions(request);
      return await new Promise((resolve) => {
        const req = (server.protocol === 'https:' ? https : http).request(request, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            try {
              resolve(res.statusCode === 200 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : null);
            } catch {
              resolve(null);
            }
          });
          res.on('error', () => resolve(null));
        });
        req.setTimeout(10_000, () => req.destroy());
        req.on('error', () => resolve(null));
        req.end();
      });
    } catch {
      return null;
    }
  }

  /** What Kueue says of the quotas' namespaces: GPUs admitted Workloads hold, Jobs waiting for quota. */
  async function status(quotas: readonly WorkerGpuQuota[]): Promise<GpuQuotaReport> {
    positions = new Map();
    const report: GpuQuotaReport = { usage: [], waiting: [] };
    const resources = new Set(quotas.map((q) => q.resource));
    for (const namespace of [...new Set(quotas.flatMap((q) => q.namespaces))].sort()) {
      const workloads: any[] = (await orNotFound(custom.listNamespacedCustomObject({ ...api, namespace, plural: 'workloads' })))?.items ?? [];
      const used = new Map<string, { resource: string; flavor: string | null; usedGpus: number }>();
      for (const workload of workloads) {
        const conditions: { type: string; status: string; message?: string }[] = workload.status?.conditions ?? [];
        const condition = (type: string) => conditions.find((c) => c.type === type);
        if (condition('Finished')?.status === 'True') continue;
        const reserved = condition('QuotaReserved');
        if (reserved?.status === 'True') {
          for (const assignment of workload.status?.admission?.podSetAssignments ?? []) {
            for (const [resource, quantity] of Object.entries<string>(assignment.resourceUsage ?? {})) {
              if (!resources.has(resource)) continue;
              const flavor: string | null = assignment.flavors?.[resource] ?? null;
              const key = `${resource}\n${flavor}`;
              const entry = used.get(key) ?? { resource, flavor: flavor === DEFAULT_FLAVOR ? null : flavor, usedGpus: 0 };
              entry.usedGpus += Math.round(parseQuantity(quantity));
              used.set(key, entry);
            }
          }
        } else if (reserved?.status === 'False') {
          const owner = (workload.metadata?.ownerReferences ?? []).find((o: { kind?: string }) => o.kind === 'Job');
          if (!owner) continue;
          const job = await orNotFound(batch.readNamespacedJob({ name: owner.name, namespace }));
          const jobId = job?.metadata?.labels?.[JOB_ID_LABEL];
          if (!jobId) continue; // not one of the platform's jobs
          const position = (await pendingPositions(namespace, workload.spec?.queueName)).get(workload.metadata?.name) ?? null;
          report.waiting.push({ jobId, namespace, message: reserved.message || 'waiting for quota', position });
        }
      }
      for (const entry of used.values()) report.usage.push({ namespace, ...entry });
      // Resources with nothing admitted report 0, so the usage shown drops when jobs finish.
      for (const quota of quotas.filter((q) => q.namespaces.includes(namespace))) {
        if (!report.usage.some((u) => u.namespace === namespace && u.resource === quota.resource && (u.flavor ?? null) === (quota.flavor ?? null))) {
          report.usage.push({ namespace, resource: quota.resource, flavor: quota.flavor ?? null, usedGpus: 0 });
        }
      }
    }
    return report;
  }

  /**
   * The LocalQueue of a namespace whose project has a GPU quota here (as last reconciled), else null: a
   * job launched there carries its label, so Kueue admits it against the quota rather than it running
   * beside the quota unqueued (jobLaunch.ts).
   */
  const queueIn = (namespace: string): string | null => queues.get(namespace) ?? null;

  return { reconcile, status, queueIn };
}

export type KueueQueues = ReturnType<typeof createKueueQueues>;
