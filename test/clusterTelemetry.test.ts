import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectClusterStatus } from '../agent/kubernetes/clusterStatus.js';
import { dcgmSettingsFromEnv, type DcgmSettings } from '../agent/kubernetes/dcgm.js';
import { TelemetryStore } from '../subgraphs/clusters/telemetryStore.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from './support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

/**
 * Cluster telemetry end to end: an agent's report read from a Kubernetes API (the double) and from NVIDIA
 * DCGM exporters (real HTTP servers on loopback serving the exporter's exposition text), sent as the agent
 * sends it, kept as a series, and read back through GraphQL `clusterTelemetry` and LLMariner's
 * `/v1/clustertelemetry/gpu-usages`, by the organizations that may see it and by no other.
 */

const MIB = 2 ** 20;
const exposition = (name: string) => readFileSync(new URL(`../agent/kubernetes/testdata/${name}`, import.meta.url), 'utf8');

const REGISTER = `mutation($name: String!, $shared: Boolean) { registerCluster(input: { name: $name, sharedWithAllOrganizations: $shared }) { registrationKey cluster { id } } }`;
const AGENT_REPORT = `mutation($status: ClusterStatusInput!) { reportClusterStatus(input: $status) { updatedAt } }`;
const TELEMETRY = `query($clusterId: ID, $from: DateTime, $to: DateTime, $step: Int) {
  clusterTelemetry(clusterId: $clusterId, from: $from, to: $to, step: $step) {
    clusterId clusterName step
    points {
      at source nodeCount gpuCapacity gpuAllocated gpuUtilization gpuMemoryCapacityBytes gpuMemoryUsedBytes
      gpuModels { product memoryBytes count }
      nodes { name gpuCapacity gpuAllocated gpuUtilization gpuMemoryUsedBytes }
      namespaces { namespace gpuAllocated runtimePods jobPods gpuUtilization gpuMemoryUsedBytes }
      gpus { node index utilization namespace pod }
    }
  }
}`;

let t: TestPlatform;
let apiserver: KubeApiServer;
let core: CoreV1Api;
const exporters: Server[] = [];
let orgA: Awaited<ReturnType<typeof projectWithKey>>;
let orgB: Awaited<ReturnType<typeof projectWithKey>>;
let clusterA: { id: string; key: string };
let clusterB: { id: string; key: string };
let platformCluster: { id: string; key: string };
/** Discovery of the exporter pods in their namespace only. */
const DCGM: DcgmSettings = { ...dcgmSettingsFromEnv({}), namespace: 'gpu-operator', timeoutMs: 30_000 };
const NO_DCGM: DcgmSettings = { ...DCGM, selector: '' };

async function startExporter(body: string): Promise<number> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body));
  exporters.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

async function runningPod(namespace: string, name: string, node: string, spec: { labels?: Record<string, string>; gpus?: number; port?: number }) {
  await core.createNamespacedPod({
    namespace,
    body: {
      // An exporter (a pod serving metrics) is one of the exporter's DaemonSet, as the agent requires.
      metadata: {
        name,
        labels: spec.labels ?? {},
        ...(spec.port
          ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'dcgm-exporter', uid: 'uid-dcgm-exporter', controller: true }] }
          : {}),
      },
      spec: {
        nodeName: node,
        containers: [
          {
            name: 'main',
            image: 'example/image',
            ...(spec.gpus ? { resources: { limits: { 'nvidia.com/gpu': String(spec.gpus) } } } : {}),
            ...(spec.port ? { ports: [{ name: 'metrics', containerPort: spec.port }] } : {}),
          },
        ],
      },
    },
  });
  await core.patchNamespacedPodStatus({ namespace, name, body: { status: { phase: 'Running', podIP: '127.0.0.1' } } }, mergePatch);
}

/** What `mariner agent` does on its timer (agent/index.ts): collect, then report without the totals. */
async function agentReports(key: string, dcgm: DcgmSettings): Promise<void> {
  const { gpuCapacity: _c, gpuAllocated: _a, ...status } = await collectClusterStatus(core, dcgm);
  await t.gqlOk(AGENT_REPORT, { status }, { token: key });
}

async function register(name: string, token: string, shared?: boolean) {
  const { registerCluster } = await t.gqlOk(REGISTER, { name, shared: shared ?? null }, { token });
  return { id: registerCluster.cluster.id as string, key: registerCluster.registrationKey as string };
}

/** The cluster's series over the last ten minutes in minutes, and its latest point with a report. */
async function telemetry(token: string, clusterId: string | null) {
  const to = new Date(Date.now() + 60_000).toISOString();
  const from = new Date(Date.now() - 10 * 60_000).toISOString();
  const { clusterTelemetry } = await t.gqlOk(TELEMETRY, { clusterId, from, to, step: 60 }, { token });
  return clusterTelemetry as any[];
}
const latest = (series: any) => series.points.filter((p: { source: string | null }) => p.source !== null).at(-1);

beforeAll(async () => {
  t = await startTestPlatform();
  orgA = await projectWithKey(t, 'telemetry-a', { role: 'OWNER' });
  orgB = await projectWithKey(t, 'telemetry-b', { role: 'OWNER' });
  clusterA = await register('a-dcgm', orgA.key);
  clusterB = await register('b-plain', orgB.key);
  platformCluster = await register('shared-gpus', t.adminKey, true);

  // The cluster: two GPU nodes (GPU feature discovery's labels), a runtime and a fine-tuning job holding
  // GPUs, and the DCGM exporter DaemonSet's pods, one a node, each served by a loopback exporter.
  apiserver = await startKubeApiServer({
    nodes: [
      { name: 'gpu-a', gpus: 2, gpuProduct: 'NVIDIA-A100-SXM4-80GB' },
      { name: 'gpu-b', gpus: 1 },
    ],
  });
  core = kubeConfigFor(apiserver).makeApiClient(CoreV1Api);
  await core.patchNode({ name: 'gpu-a', body: { metadata: { labels: { 'nvidia.com/gpu.memory': '81920' } } } }, mergePatch);
  for (const ns of ['gpu-operator', 'team-a', 'team-b']) await core.createNamespace({ body: { metadata: { name: ns } } });
  await runningPod('team-a', 'rt-llama-0', 'gpu-a', {
    gpus: 1,
    labels: { 'app.kubernetes.io/managed-by': 'mariner', 'app.kubernetes.io/component': 'inference-runtime' },
  });
  await runningPod('team-b', 'mariner-ftjob-abc-0-x1', 'gpu-b', { gpus: 1, labels: { 'mariner.dev/job-id': 'ftjob-abc' } });
  const exporterLabels = { 'app.kubernetes.io/name': 'dcgm-exporter' };
  await runningPod('gpu-operator', 'dcgm-exporter-a', 'gpu-a', {
    labels: exporterLabels,
    port: await startExporter(exposition('dcgm-exporter-node-a.metrics')),
  });
  await runningPod('gpu-operator', 'dcgm-exporter-b', 'gpu-b', {
    labels: exporterLabels,
    port: await startExporter(exposition('dcgm-exporter-node-b.metrics')),
  });
});

afterAll(async () => {
  for (const server of exporters) server.close();
  await apiserver?.close();
  await t?.close();
});

describe('cluster telemetry from the Kubernetes API and the DCGM exporter', () => {
  it('a cluster running the DCGM exporter: utilisation per GPU, node and namespace, source DCGM', async () => {
    await agentReports(clusterA.key, DCGM);
    const [series] = await telemetry(orgA.key, clusterA.id);
    expect(series).toMatchObject({ clusterId: clusterA.id, clusterName: 'a-dcgm', step: 60 });
    const point = latest(series);
    expect(point).toMatchObject({ source: 'DCGM', nodeCount: 2, gpuCapacity: 3, gpuAllocated: 2 });
    // The mean of the three GPUs' DCGM_FI_DEV_GPU_UTIL: 90, 10 and 60.
    expect(point.gpuUtilization).toBeCloseTo(160 / 3);
    expect(point.gpuMemoryUsedBytes).toBe((65536 + 512 + 40960) * MIB);
    expect(point.gpuMemoryCapacityBytes).toBe((81920 * 2 + 81920) * MIB);
    expect(point.nodes).toEqual([
      { name: 'gpu-a', gpuCapacity: 2, gpuAllocated: 1, gpuUtilization: 50, gpuMemoryUsedBytes: (65536 + 512) * MIB },
      { name: 'gpu-b', gpuCapacity: 1, gpuAllocated: 1, gpuUtilization: 60, gpuMemoryUsedBytes: 40960 * MIB },
    ]);
    expect(point.namespaces).toEqual([
      { namespace: 'team-a', gpuAllocated: 1, runtimePods: 1, jobPods: 0, gpuUtilization: 90, gpuMemoryUsedBytes: 65536 * MIB },
      { namespace: 'team-b', gpuAllocated: 1, runtimePods: 0, jobPods: 1, gpuUtilization: 60, gpuMemoryUsedBytes: 40960 * MIB },
    ]);
    expect(point.gpus).toEqual([
      { node: 'gpu-a', index: 0, utilization: 90, namespace: 'team-a', pod: 'rt-llama-0' },
      { node: 'gpu-a', index: 1, utilization: 10, namespace: null, pod: null },
      { node: 'gpu-b', index: 0, utilization: 60, namespace: 'team-b', pod: 'mariner-ftjob-abc-0-x1' },
    ]);
    const { cluster } = await t.gqlOk(
      `query($id: ID!) { cluster(id: $id) { componentStatuses { name isHealthy message } } }`,
      { id: clusterA.id },
      { token: orgA.key },
    );
    expect(cluster.componentStatuses).toContainEqual({ name: 'dcgm-exporter', isHealthy: true, message: '2 DCGM exporter(s) read' });
    expect(point.gpuModels).toEqual([
      { product: 'NVIDIA-A100-SXM4-80GB', memoryBytes: 81920 * MIB, count: 2 },
      { product: 'NVIDIA-H100-80GB-HBM3', memoryBytes: 81920 * MIB, count: 1 },
    ]);
  });

  it("LLMariner gpu-usages reads the series: per node, the GPUs' utilisation summed, memory in GiB", async () => {
    const response = await fetch(`${t.url}/v1/clustertelemetry/gpu-usages`, { headers: { authorization: `Bearer ${orgA.key}` } });
    expect(response.status).toBe(200);
    const { datapoints } = (await response.json()) as any;
    expect(datapoints.at(-1).values).toEqual([
      {
        cluster_name: 'a-dcgm',
        node_name: 'gpu-a',
        max_gpu_used: 100,
        avg_gpu_used: 100,
        max_gpu_memory_used_gb: 66048 / 1024,
        avg_gpu_memory_used_gb: 66048 / 1024,
      },
      { cluster_name: 'a-dcgm', node_name: 'gpu-b', max_gpu_used: 60, avg_gpu_used: 60, max_gpu_memory_used_gb: 40, avg_gpu_memory_used_gb: 40 },
    ]);
    const snapshots = await fetch(`${t.url}/v1/clustertelemetry/clustersnapshots?group_by=GROUP_BY_PRODUCT`, {
      headers: { authorization: `Bearer ${orgA.key}` },
    });
    expect(((await snapshots.json()) as any).datapoints.at(-1).values).toEqual([
      { grouping_value: 'NVIDIA-A100-SXM4-80GB', node_count: 1, gpu_capacity: 2, memory_capacity_gb: 160 },
      { grouping_value: 'NVIDIA-H100-80GB-HBM3', node_count: 1, gpu_capacity: 1, memory_capacity_gb: 80 },
    ]);
  });

  it('a cluster without the exporter: allocation only, and the answer says so', async () => {
    await agentReports(clusterB.key, NO_DCGM);
    const point = latest((await telemetry(orgB.key, clusterB.id))[0]);
    expect(point).toMatchObject({ source: 'ALLOCATION', gpuCapacity: 3, gpuAllocated: 2, gpuMemoryUsedBytes: null, gpus: [] });
    expect(point.gpuUtilization).toBeCloseTo(200 / 3);
    expect(point.nodes.map((n: { gpuUtilization: number }) => n.gpuUtilization)).toEqual([50, 100]);
    expect(point.namespaces.map((n: { gpuUtilization: number }) => n.gpuUtilization)).toEqual([100, 100]);
    const usages = await fetch(`${t.url}/v1/clustertelemetry/gpu-usages`, { headers: { authorization: `Bearer ${orgB.key}` } });
    expect(((await usages.json()) as any).datapoints.at(-1).values).toEqual([
      { cluster_name: 'b-plain', node_name: '', max_gpu_used: 200, avg_gpu_used: 200, max_gpu_memory_used_gb: 0, avg_gpu_memory_used_gb: 0 },
    ]);
  });

  it("an exporter that cannot be read: allocation only, and the cluster's dcgm-exporter component says why", async () => {
    const broken = await register('a-broken-exporter', orgA.key);
    // A port nothing listens on: the agent's fetch is refused.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/metrics`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await agentReports(broken.key, { ...NO_DCGM, urls: [url] });
    expect(latest((await telemetry(orgA.key, broken.id))[0]).source).toBe('ALLOCATION');
    const { cluster } = await t.gqlOk(
      `query($id: ID!) { cluster(id: $id) { componentStatuses { name isHealthy message } } }`,
      { id: broken.id },
      { token: orgA.key },
    );
    const dcgm = cluster.componentStatuses.find((c: { name: string }) => c.name === 'dcgm-exporter');
    expect(dcgm).toMatchObject({ isHealthy: false });
    expect(dcgm.message).toContain(`0 of 1 DCGM exporter(s) read; DCGM exporter ${url}`);
  });

  it('a report that changes nothing adds no row', async () => {
    const rows = async () => (await t.platform.db.knex.withSchema('clusters').table('telemetry').where({ cluster_id: clusterA.id }).select('id')).length;
    const before = await rows();
    await agentReports(clusterA.key, DCGM);
    await agentReports(clusterA.key, DCGM);
    expect(await rows()).toBe(before);
  });
});

describe('the series: lean rows', () => {
  it('extends a row while nothing changes, replaces it within its first minute, starts one after, and after a silence', async () => {
    const cluster = await register('series-rules', orgB.key);
    const store = new TelemetryStore(t.platform.db.knex);
    const gapMs = 180_000;
    const sample = (gpuAllocated: number) => ({ source: 'ALLOCATION' as const, gpuAllocated, utilization: null, nodes: [], namespaces: [], gpus: [] });
    const t0 = Date.now() - 2 * 3600_000;
    const at = (seconds: number) => new Date(t0 + seconds * 1000);
    await store.record(cluster.id, sample(1), gapMs, at(0));
    await store.record(cluster.id, sample(1), gapMs, at(30));
    await store.record(cluster.id, sample(2), gapMs, at(45));
    await store.record(cluster.id, sample(2), gapMs, at(75));
    await store.record(cluster.id, sample(3), gapMs, at(105));
    await store.record(cluster.id, sample(3), gapMs, at(135));
    // Ten minutes without a report: the next one starts a row though nothing changed, so the gap shows.
    await store.record(cluster.id, sample(3), gapMs, at(735));
    const rows = await store.rows([cluster.id], at(-60), at(800));
    expect(rows.map((r) => [(r.startedAt.getTime() - t0) / 1000, (r.lastSeenAt.getTime() - t0) / 1000, r.sample.gpuAllocated])).toEqual([
      [0, 75, 2],
      [105, 135, 3],
      [735, 735, 3],
    ]);
  });
});

describe('who sees the telemetry', () => {
  it('another organization sees nothing of a cluster it may not use, by id or in the list', async () => {
    expect(await telemetry(orgB.key, clusterA.id)).toEqual([]);
    const all = await telemetry(orgB.key, null);
    expect(all.map((s) => s.clusterId)).toContain(clusterB.id);
    expect(JSON.stringify(all)).not.toContain(clusterA.id);
    expect(JSON.stringify(all)).not.toContain('a-dcgm');
    const usages = await fetch(`${t.url}/v1/clustertelemetry/gpu-usages`, { headers: { authorization: `Bearer ${orgB.key}` } });
    expect(JSON.stringify(await usages.json())).not.toContain('a-dcgm');
  });

  it('a key without the clusters scope is refused', async () => {
    const { createApiKey } = await t.gqlOk(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`, {
      input: { name: 'telemetry-reader', projectId: orgA.projectId, isServiceAccount: true, role: 'READER' },
    });
    const result = await t.gql(TELEMETRY, { clusterId: clusterA.id }, { token: createApiKey.secret });
    expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(JSON.stringify(result.data ?? null)).not.toContain('a-dcgm');
  });

  it("a platform cluster's namespaces (other organizations' projects) show to platform admins only", async () => {
    await agentReports(platformCluster.key, DCGM);
    const seenByA = latest((await telemetry(orgA.key, platformCluster.id))[0]);
    expect(seenByA.source).toBe('DCGM');
    expect(seenByA.namespaces).toEqual([]);
    expect(seenByA.gpus.every((g: { pod: string | null; namespace: string | null }) => g.pod === null && g.namespace === null)).toBe(true);
    expect(JSON.stringify(seenByA)).not.toContain('team-b');
    const seenByAdmin = latest((await telemetry(t.adminKey, platformCluster.id))[0]);
    expect(seenByAdmin.namespaces.map((n: { namespace: string }) => n.namespace)).toEqual(['team-a', 'team-b']);
  });
});

describe('retention', () => {
  it('deletes the rows older than the cutoff, and only those', async () => {
    const cluster = await register('retention', orgB.key);
    const store = new TelemetryStore(t.platform.db.knex);
    const day = 24 * 3600 * 1000;
    const sample = { source: 'ALLOCATION' as const, gpuAllocated: 0, utilization: null, nodes: [], namespaces: [], gpus: [] };
    // What the cluster's agent reported 40 and 20 days ago, and now.
    await store.record(cluster.id, sample, 180_000, new Date(Date.now() - 40 * day));
    await store.record(cluster.id, { ...sample, gpuAllocated: 1 }, 180_000, new Date(Date.now() - 20 * day));
    await agentReports(cluster.key, NO_DCGM);
    expect(await store.deleteOlderThan(new Date(Date.now() - 30 * day))).toBe(1);
    const left = await store.rows([cluster.id], new Date(Date.now() - 50 * day), new Date(Date.now() + 60_000));
    expect(left.map((r) => Math.round((Date.now() - r.startedAt.getTime()) / day))).toEqual([20, 0]);
    expect(latest((await telemetry(orgB.key, cluster.id))[0]).source).toBe('ALLOCATION');
  });
});
