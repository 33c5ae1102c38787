import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BatchV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logging.js';
import { playKueueAdmission } from '../../test/support/kueue.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import { clusterQueueName, cohortName, createKueueQueues, DEFAULT_FLAVOR, kueueManifests, type KueueQueues, type WorkerGpuQuota } from './kueueQueues.js';
import { MANAGED_BY } from './projectRoleBindings.js';

const schema = JSON.parse(readFileSync(new URL('./testdata/kueue-v1beta1.schema.json', import.meta.url), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: false });
ajv.addSchema(schema, 'kueue');
const validate = (object: { kind: string }) => {
  const check = ajv.getSchema(`kueue#/definitions/${object.kind}`)!;
  return check(object) ? [] : check.errors!.map((e) => `${e.instancePath} ${e.message}`);
};
/** The CRDs' CEL rules the agent could break (clusterqueue_types.go). */
function celProblems(queue: any): string[] {
  const problems: string[] = [];
  for (const group of queue.spec.resourceGroups) {
    for (const flavor of group.flavors) {
      if (flavor.resources.length !== group.coveredResources.length) problems.push('flavors must have the same number of resources as the coveredResources');
      if (flavor.resources.some((r: any, i: number) => r.name !== group.coveredResources[i])) problems.push('resources in the order of coveredResources');
      if (!queue.spec.cohort && flavor.resources.some((r: any) => r.borrowingLimit !== undefined))
        problems.push('borrowingLimit must be nil when cohort is empty');
    }
  }
  return problems;
}

const quota = (over: Partial<WorkerGpuQuota> = {}): WorkerGpuQuota => ({
  projectId: 'proj-TeamA1',
  organizationId: 'org-Acme1',
  namespaces: ['team-a'],
  queueName: null,
  resource: 'nvidia.com/gpu',
  flavor: null,
  nominalGpus: 2,
  borrowingAllowed: false,
  ...over,
});

describe('Kueue manifests of the projects’ GPU quotas', () => {
  it('validate against Kueue v1beta1 (the fields used) and its CEL rules, with and without borrowing', () => {
    const cases = [
      [quota()],
      [quota({ borrowingAllowed: true }), quota({ flavor: 'h100', nominalGpus: 4 }), quota({ resource: 'amd.com/gpu', nominalGpus: 1 })],
      [quota({ namespaces: ['team-a', 'team-a-batch'], queueName: 'team-a-queue' }), quota({ projectId: 'proj-Other2', namespaces: ['other'] })],
    ];
    for (const quotas of cases) {
      const { resourceFlavors, clusterQueues, localQueues } = kueueManifests(quotas);
      for (const object of [...resourceFlavors, ...clusterQueues, ...localQueues])
        expect(validate(object), `${object.kind} ${object.metadata.name}`).toEqual([]);
      for (const queue of clusterQueues) expect(celProblems(queue)).toEqual([]);
    }
  });

  it('the schema fixture refuses a misspelt or missing field (it checks what it claims to)', () => {
    const [queue] = kueueManifests([quota()]).clusterQueues;
    expect(validate({ ...queue, spec: { ...queue!.spec, cohortName: 'x' } } as any)).not.toEqual([]);
    const broken = structuredClone(queue!);
    delete broken.spec.resourceGroups[0].flavors[0].resources[0].nominalQuota;
    expect(validate(broken)).not.toEqual([]);
  });

  it('one ClusterQueue per project over its namespaces; a cohort per organization only when a quota allows borrowing', () => {
    const plain = kueueManifests([quota({ namespaces: ['team-a', 'team-a-batch'] })], { defaultQueue: 'gpu' });
    expect(plain.clusterQueues).toHaveLength(1);
    expect(plain.clusterQueues[0]!.spec.cohort).toBeUndefined();
    expect(plain.clusterQueues[0]!.spec.namespaceSelector.matchExpressions[0].values).toEqual(['team-a', 'team-a-batch']);
    expect(plain.localQueues.map((q) => `${q.metadata.namespace}/${q.metadata.name}`)).toEqual(['team-a/gpu', 'team-a-batch/gpu']);
    expect(plain.resourceFlavors.map((f) => f.metadata.name)).toEqual([DEFAULT_FLAVOR]);

    const mixed = kueueManifests([quota({ borrowingAllowed: true }), quota({ flavor: 'h100', nominalGpus: 4 })]);
    const [queue] = mixed.clusterQueues;
    expect(queue!.spec.cohort).toBe(cohortName('org-Acme1'));
    const flavors = queue!.spec.resourceGroups[0].flavors;
    expect(flavors.find((f: any) => f.name === DEFAULT_FLAVOR).resources[0]).toEqual({ name: 'nvidia.com/gpu', nominalQuota: '2' });
    // The h100 quota does not allow borrowing: limited to 0 beyond its nominal quota.
    expect(flavors.find((f: any) => f.name === 'h100').resources[0]).toEqual({ name: 'nvidia.com/gpu', nominalQuota: '4', borrowingLimit: '0' });
  });
});

describe('Kueue queues on a cluster (Kubernetes API double, Kueue admission played)', () => {
  let kube: KubeApiServer;
  let queues: KueueQueues;
  let custom: CustomObjectsApi;
  let batch: BatchV1Api;
  const api = { group: 'kueue.x-k8s.io', version: 'v1beta1' };

  beforeAll(async () => {
    kube = await startKubeApiServer();
    const kubeConfig = kubeConfigFor(kube);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    for (const name of ['team-a', 'team-a-batch', 'team-b']) await core.createNamespace({ body: { metadata: { name } } });
    custom = kubeConfig.makeApiClient(CustomObjectsApi);
    batch = kubeConfig.makeApiClient(BatchV1Api);
    queues = createKueueQueues({ kubeConfig, logger: silentLogger() });
  });
  afterAll(() => kube?.close());

  const names = (kind: string) => kube.objects(kind).map((o) => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name));

  it('creates the flavour, ClusterQueue and LocalQueues a quota wants, marked as the agent’s', async () => {
    const result = await queues.reconcile([quota({ namespaces: ['team-a', 'team-a-batch'] })]);
    expect(result.created).toEqual([
      `ResourceFlavor/${DEFAULT_FLAVOR}`,
      `ClusterQueue/${clusterQueueName('proj-TeamA1')}`,
      'LocalQueue/team-a/mariner',
      'LocalQueue/team-a-batch/mariner',
    ]);
    const [queue] = kube.objects('ClusterQueue');
    expect(queue.metadata.labels[MANAGED_BY.key]).toBe(MANAGED_BY.value);
    expect(queue.spec.resourceGroups[0].flavors[0].resources[0].nominalQuota).toBe('2');
    // Nothing changed: nothing written.
    expect(await queues.reconcile([quota({ namespaces: ['team-a', 'team-a-batch'] })])).toEqual({ created: [], updated: [], deleted: [] });
    // Jobs launched in those namespaces carry this queue's label (jobLaunch.ts), even where the project named no queue.
    expect(queues.queueIn('team-a-batch')).toBe('mariner');
    expect(queues.queueIn('team-b')).toBeNull();
  });

  it('follows a changed quota, and a namespace released from the project loses its LocalQueue', async () => {
    const result = await queues.reconcile([quota({ nominalGpus: 3, borrowingAllowed: true })]);
    expect(result.updated).toEqual([`ClusterQueue/${clusterQueueName('proj-TeamA1')}`]);
    expect(result.deleted).toEqual(['LocalQueue/team-a-batch/mariner']);
    const [queue] = kube.objects('ClusterQueue');
    expect(queue.spec.cohort).toBe(cohortName('org-Acme1'));
    expect(queue.spec.resourceGroups[0].flavors[0].resources[0].nominalQuota).toBe('3');
  });

  it('leaves a LocalQueue it did not make alone', async () => {
    await custom.createNamespacedCustomObject({
      ...api,
      namespace: 'team-b',
      plural: 'localqueues',
      body: {
        apiVersion: 'kueue.x-k8s.io/v1beta1',
        kind: 'LocalQueue',
        metadata: { name: 'mariner', namespace: 'team-b' },
        spec: { clusterQueue: 'hand-made' },
      },
    });
    await queues.reconcile([quota({ nominalGpus: 3, borrowingAllowed: true }), quota({ projectId: 'proj-TeamB1', namespaces: ['team-b'] })]);
    expect(kube.objects('LocalQueue', 'team-b')[0].spec.clusterQueue).toBe('hand-made');
    await queues.reconcile([quota({ nominalGpus: 3, borrowingAllowed: true })]);
    expect(names('LocalQueue')).toContain('team-b/mariner');
  });

  it('reports GPUs admitted and the job Kueue holds back for lack of quota, with Kueue’s message', async () => {
    const wanted = [quota({ nominalGpus: 2 })];
    await queues.reconcile(wanted);
    const job = (id: string, gpus: number) => ({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: `mariner-${id.toLowerCase()}`, namespace: 'team-a', labels: { 'mariner.dev/job-id': id, 'kueue.x-k8s.io/queue-name': 'mariner' } },
      spec: {
        suspend: true,
        template: {
          spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox', resources: { limits: { 'nvidia.com/gpu': String(gpus) } } }] },
        },
      },
    });
    await batch.createNamespacedJob({ namespace: 'team-a', body: job('job-First1', 2) });
    await playKueueAdmission(kubeConfigFor(kube));
    await batch.createNamespacedJob({ namespace: 'team-a', body: job('job-Second2', 1) });
    await playKueueAdmission(kubeConfigFor(kube));

    const report = await queues.status(wanted);
    expect(report.usage).toEqual([{ namespace: 'team-a', resource: 'nvidia.com/gpu', flavor: null, usedGpus: 2 }]);
    // The double serves no visibility API: no position.
    expect(report.waiting).toEqual([
      { jobId: 'job-Second2', namespace: 'team-a', message: expect.stringContaining('insufficient unused quota for nvidia.com/gpu'), position: null },
    ]);

    // Where Kueue's visibility API answers (a front that serves it and passes the rest to the double), the place in the queue.
    const [pending] = kube.objects('Workload', 'team-a').filter((w) => w.status?.conditions?.[0]?.status === 'False');
    const front = createServer(async (req, res) => {
      if (req.url === '/apis/visibility.kueue.x-k8s.io/v1beta1/namespaces/team-a/localqueues/mariner/pendingworkloads') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            kind: 'PendingWorkloadsSummary',
            items: [{ metadata: { name: pending.metadata.name, namespace: 'team-a' }, positionInLocalQueue: 0, positionInClusterQueue: 0 }],
          }),
        );
        return;
      }
      const upstream = await fetch(`${kube.url}${req.url}`, { method: req.method, headers: { authorization: `Bearer ${kube.token}` } });
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(Buffer.from(await upstream.arrayBuffer()));
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
      const viaFront = createKueueQueues({ kubeConfig: kubeConfigFor({ url, token: kube.token }), logger: silentLogger() });
      expect((await viaFront.status(wanted)).waiting).toEqual([expect.objectContaining({ jobId: 'job-Second2', position: 1 })]);
    } finally {
      await new Promise((resolve) => front.close(resolve));
    }
    expect((await batch.readNamespacedJob({ name: 'mariner-job-second2', namespace: 'team-a' })).spec!.suspend).toBe(true);
    expect((await batch.readNamespacedJob({ name: 'mariner-job-first1', namespace: 'team-a' })).spec!.suspend).toBe(false);
  });

  it('removes everything it made once no quota is left', async () => {
    const result = await queues.reconcile([]);
    expect(result.deleted).toEqual(
      expect.arrayContaining([`ClusterQueue/${clusterQueueName('proj-TeamA1')}`, 'LocalQueue/team-a/mariner', `ResourceFlavor/${DEFAULT_FLAVOR}`]),
    );
    expect(names('ClusterQueue')).toEqual([]);
    expect(names('LocalQueue')).toEqual(['team-b/mariner']);
    expect(queues.queueIn('team-a')).toBeNull();
  });
});

describe('a cluster without Kueue', () => {
  it('is left alone while it has no quota, and says Kueue is missing once it has one', async () => {
    // An API server that knows no kueue.x-k8s.io resources: 404 for all of them.
    const server = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          reason: 'NotFound',
          code: 404,
          message: 'the server could not find the requested resource',
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const queues = createKueueQueues({ kubeConfig: kubeConfigFor({ url, token: 't' }), logger: silentLogger() });
      expect(await queues.reconcile([])).toEqual({ created: [], updated: [], deleted: [] });
      expect(await queues.status([])).toEqual({ usage: [], waiting: [] });
      await expect(queues.reconcile([quota()])).rejects.toThrow(/Kueue is not installed/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
