import { createHash } from 'node:crypto';
import { BatchV1Api, CustomObjectsApi, type KubeConfig, type V1Job } from '@kubernetes/client-node';

/**
 * Kueue's admission, played against the Kubernetes API double (which runs no controllers): one pass of
 * what Kueue's job integration and scheduler do for batch/v1 Jobs carrying the queue label —
 * - a Workload per such Job (owned by it, its pod set from the Job's template and parallelism);
 * - in creation order, a pending Workload whose GPU request fits its ClusterQueue's nominal quota left
 *   (plus, in a cohort, what the cohort's other queues leave unused where borrowing is not limited to 0)
 *   is admitted: QuotaReserved and Admitted True, `status.admission` with the flavour and usage, and its
 *   Job unsuspended;
 * - one that does not fit gets QuotaReserved False with Kueue's message, and its Job stays suspended;
 * - a Workload whose Job finished is Finished (its quota is free again).
 * Only what Mariner's quotas use: one resource group, GPU resources, BestEffortFIFO.
 */

const api = { group: 'kueue.x-k8s.io', version: 'v1beta1' };
const QUEUE_LABEL = 'kueue.x-k8s.io/queue-name';

interface Queue {
  name: string;
  cohort?: string;
  flavors: { name: string; resources: { name: string; nominalQuota: string; borrowingLimit?: string }[] }[];
}

const gpuRequest = (job: V1Job): Record<string, number> => {
  const out: Record<string, number> = {};
  const pods = job.spec?.parallelism ?? 1;
  for (const container of job.spec?.template?.spec?.containers ?? []) {
    for (const [name, value] of Object.entries(container.resources?.limits ?? {})) {
      if (name.includes('/')) out[name] = (out[name] ?? 0) + Number(value) * pods;
    }
  }
  return out;
};

export async function playKueueAdmission(kubeConfig: KubeConfig): Promise<void> {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const batch = kubeConfig.makeApiClient(BatchV1Api);
  const queues: Queue[] = (await custom.listClusterCustomObject({ ...api, plural: 'clusterqueues' })).items.map((q: any) => ({
    name: q.metadata.name,
    cohort: q.spec.cohort,
    flavors: q.spec.resourceGroups?.[0]?.flavors ?? [],
  }));
  const localQueues: any[] = (await custom.listCustomObjectForAllNamespaces({ ...api, plural: 'localqueues' })).items;
  const jobs = (await batch.listJobForAllNamespaces({ labelSelector: QUEUE_LABEL })).items;

  // The integration: a Workload per queued Job.
  for (const job of jobs) {
    const namespace = job.metadata!.namespace!;
    const name = `job-${job.metadata!.name}-${createHash('sha256').update(job.metadata!.uid!).digest('hex').slice(0, 5)}`.slice(0, 63);
    const existing: any[] = (await custom.listNamespacedCustomObject({ ...api, namespace, plural: 'workloads' })).items;
    if (existing.some((w) => w.metadata.ownerReferences?.some((o: any) => o.uid === job.metadata!.uid))) continue;
    await custom.createNamespacedCustomObject({
      ...api,
      namespace,
      plural: 'workloads',
      body: {
        apiVersion: 'kueue.x-k8s.io/v1beta1',
        kind: 'Workload',
        metadata: {
          name,
          namespace,
          ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: job.metadata!.name, uid: job.metadata!.uid, controller: true }],
        },
        spec: { queueName: job.metadata!.labels![QUEUE_LABEL], podSets: [{ name: 'main', count: job.spec?.parallelism ?? 1, template: job.spec!.template }] },
      },
    });
  }

  const workloads: any[] = (await custom.listCustomObjectForAllNamespaces({ ...api, plural: 'workloads' })).items.sort((a: any, b: any) =>
    String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)),
  );
  const jobOf = (w: any) => jobs.find((j) => w.metadata.ownerReferences?.some((o: any) => o.uid === j.metadata!.uid));
  const queueOf = (w: any) => {
    const local = localQueues.find((l) => l.metadata.namespace === w.metadata.namespace && l.metadata.name === w.spec.queueName);
    return queues.find((q) => q.name === local?.spec.clusterQueue);
  };
  const condition = (w: any, type: string) => (w.status?.conditions ?? []).find((c: any) => c.type === type);
  const writeStatus = (w: any, status: unknown) =>
    custom.replaceNamespacedCustomObjectStatus({ ...api, namespace: w.metadata.namespace, plural: 'workloads', name: w.metadata.name, body: { ...w, status } });
  const transition = new Date().toISOString().replace(/\.\d+Z$/, 'Z');

  // What admitted Workloads use, per queue, resource and flavour.
  const used = new Map<string, number>();
  const key = (queue: string, resource: string, flavor: string) => `${queue}\n${resource}\n${flavor}`;
  for (const w of workloads) {
    if (condition(w, 'QuotaReserved')?.status !== 'True') continue;
    const job = jobOf(w);
    const finished = !job || (job.status?.conditions ?? []).some((c) => ['Complete', 'Failed'].includes(c.type) && c.status === 'True');
    if (finished) {
      if (condition(w, 'Finished')?.status !== 'True') {
        await writeStatus(w, {
          ...w.status,
          conditions: [
            ...w.status.conditions,
            { type: 'Finished', status: 'True', reason: 'Succeeded', message: 'Job finished', lastTransitionTime: transition },
          ],
        });
      }
      continue;
    }
    for (const assignment of w.status.admission.podSetAssignments) {
      for (const [resource, quantity] of Object.entries<string>(assignment.resourceUsage)) {
        const k = key(w.status.admission.clusterQueue, resource, assignment.flavors[resource]);
        used.set(k, (used.get(k) ?? 0) + Number(quantity));
      }
    }
  }

  for (const w of workloads) {
    if (condition(w, 'QuotaReserved')?.status === 'True') continue;
    const queue = queueOf(w);
    const job = jobOf(w);
    if (!queue || !job) continue;
    const wanted = gpuRequest(job);
    // The first flavour with room for every resource (flavour fungibility), borrowing within the cohort where allowed.
    let admittedIn: string | undefined;
    let shortfall = '';
    for (const flavor of queue.flavors) {
      const fits = Object.entries(wanted).every(([resource, count]) => {
        const quota = flavor.resources.find((r) => r.name === resource);
        if (!quota) return false;
        const mine = used.get(key(queue.name, resource, flavor.name)) ?? 0;
        let room = Number(quota.nominalQuota) - mine;
        if (queue.cohort && quota.borrowingLimit !== '0') {
          for (const other of queues.filter((q) => q.cohort === queue.cohort && q.name !== queue.name)) {
            const lent = other.flavors.find((f) => f.name === flavor.name)?.resources.find((r) => r.name === resource);
            if (lent) room += Math.max(0, Number(lent.nominalQuota) - (used.get(key(other.name, resource, flavor.name)) ?? 0));
          }
        }
        if (count > room) shortfall ||= `insufficient unused quota for ${resource} in flavor ${flavor.name}, ${count - Math.max(room, 0)} more needed`;
        return count <= room;
      });
      if (fits) {
        admittedIn = flavor.name;
        break;
      }
    }
    if (!admittedIn) {
      const message = `couldn't assign flavors to pod set main: ${shortfall || 'no flavor covers the requested resources'}`;
      if (condition(w, 'QuotaReserved')?.message !== message) {
        await writeStatus(w, { conditions: [{ type: 'QuotaReserved', status: 'False', reason: 'Pending', message, lastTransitionTime: transition }] });
      }
      continue;
    }
    for (const [resource, count] of Object.entries(wanted))
      used.set(key(queue.name, resource, admittedIn), (used.get(key(queue.name, resource, admittedIn)) ?? 0) + count);
    await writeStatus(w, {
      conditions: [
        {
          type: 'QuotaReserved',
          status: 'True',
          reason: 'QuotaReserved',
          message: `Quota reserved in ClusterQueue ${queue.name}`,
          lastTransitionTime: transition,
        },
        { type: 'Admitted', status: 'True', reason: 'Admitted', message: 'The workload is admitted', lastTransitionTime: transition },
      ],
      admission: {
        clusterQueue: queue.name,
        podSetAssignments: [
          {
            name: 'main',
            count: job.spec?.parallelism ?? 1,
            flavors: Object.fromEntries(Object.keys(wanted).map((r) => [r, admittedIn])),
            resourceUsage: Object.fromEntries(Object.entries(wanted).map(([r, n]) => [r, String(n)])),
          },
        ],
      },
    });
    const current = await batch.readNamespacedJob({ name: job.metadata!.name!, namespace: job.metadata!.namespace! });
    await batch.replaceNamespacedJob({
      name: current.metadata!.name!,
      namespace: current.metadata!.namespace!,
      body: { ...current, spec: { ...current.spec!, suspend: false } },
    });
  }
}
