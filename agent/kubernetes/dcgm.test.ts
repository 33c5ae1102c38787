import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import { dcgmSettingsFromEnv, gpuMetricsOf, scrapeDcgm, type DcgmSettings } from './dcgm.js';
import { parseExposition } from './dcgmExposition.js';

const text = (name: string) => readFileSync(new URL(`./testdata/${name}`, import.meta.url), 'utf8');
const MIB = 2 ** 20;

/** A DCGM exporter on loopback: serves `/metrics` with the given exposition text; counts its scrapes. */
async function startExporter(body: string, status = 200): Promise<{ server: Server; port: number; url: string; scrapes: number }> {
  const exporter = { server: createServer(), port: 0, url: '', scrapes: 0 };
  exporter.server.on('request', (req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    exporter.scrapes++;
    res.writeHead(status, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body);
  });
  await new Promise<void>((resolve) => exporter.server.listen(0, '127.0.0.1', resolve));
  exporter.port = (exporter.server.address() as AddressInfo).port;
  exporter.url = `http://127.0.0.1:${exporter.port}/metrics`;
  return exporter;
}

describe('gpuMetricsOf', () => {
  it("turns an exporter's samples into GPUs: utilisation, memory in bytes, the pod using each", () => {
    const gpus = gpuMetricsOf(parseExposition(text('dcgm-exporter-node-a.metrics')).samples, null);
    expect(gpus).toEqual([
      {
        node: 'gpu-a',
        uuid: 'GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52',
        index: 0,
        modelName: 'NVIDIA A100-SXM4-80GB',
        utilization: 90,
        memoryUsedBytes: 65536 * MIB,
        memoryTotalBytes: (65536 + 16384) * MIB,
        namespace: 'team-a',
        pod: 'rt-llama-0',
      },
      {
        node: 'gpu-a',
        uuid: 'GPU-1b3f2e59-7c2a-4f0e-9d1e-0a5c2b7f9e11',
        index: 1,
        modelName: 'NVIDIA A100-SXM4-80GB',
        utilization: 10,
        memoryUsedBytes: 512 * MIB,
        memoryTotalBytes: (512 + 81408) * MIB,
        namespace: null,
        pod: null,
      },
    ]);
  });

  it("names the exporter pod's node over the Hostname label (the pod's own name without NODE_NAME)", () => {
    const [gpu] = gpuMetricsOf(parseExposition(text('dcgm-exporter-node-b.metrics')).samples, 'gpu-b');
    expect(gpu).toMatchObject({ node: 'gpu-b', utilization: 60, namespace: 'team-b', memoryTotalBytes: 81920 * MIB });
  });

  it('leaves out a GPU without a utilisation sample, and knows no memory where FB_FREE is missing', () => {
    const gpus = gpuMetricsOf(
      parseExposition(
        [
          'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",Hostname="n"} 10',
          'DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",Hostname="n"} 5',
          'DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-b",Hostname="n"} 3',
        ].join('\n'),
      ).samples,
      null,
    );
    expect(gpus).toEqual([
      { node: 'n', uuid: 'GPU-b', index: 1, modelName: null, utilization: 5, memoryUsedBytes: 3 * MIB, memoryTotalBytes: null, namespace: null, pod: null },
    ]);
  });
});

describe('dcgmSettingsFromEnv', () => {
  it('defaults to the exporter chart label in every namespace; takes fixed URLs; refuses a URL that is not http(s)', () => {
    expect(dcgmSettingsFromEnv({})).toMatchObject({ urls: [], selector: 'app.kubernetes.io/name=dcgm-exporter', namespace: null });
    expect(dcgmSettingsFromEnv({ MARINER_DCGM_EXPORTER_URLS: ' http://a:9400/metrics, http://b:9400/metrics ' }).urls).toEqual([
      'http://a:9400/metrics',
      'http://b:9400/metrics',
    ]);
    expect(dcgmSettingsFromEnv({ MARINER_DCGM_EXPORTER_NAMESPACE: 'gpu-operator', MARINER_DCGM_EXPORTER_SELECTOR: 'app=nvidia-dcgm-exporter' })).toMatchObject({
      namespace: 'gpu-operator',
      selector: 'app=nvidia-dcgm-exporter',
    });
    expect(() => dcgmSettingsFromEnv({ MARINER_DCGM_EXPORTER_URLS: 'file:///etc/passwd' })).toThrow(/not an http/);
  });
});

describe('scrapeDcgm against an apiserver and exporters on loopback', () => {
  let apiserver: KubeApiServer;
  let core: CoreV1Api;
  let nodeA: Awaited<ReturnType<typeof startExporter>>;
  let nodeB: Awaited<ReturnType<typeof startExporter>>;
  let impostor: Awaited<ReturnType<typeof startExporter>>;
  const settings = (over: Partial<DcgmSettings> = {}): DcgmSettings => ({ ...dcgmSettingsFromEnv({}), timeoutMs: 30_000, ...over });

  /** An exporter pod on `node` (of the DaemonSet, or of `controller`), running at 127.0.0.1:`port`. */
  async function exporterPod(namespace: string, name: string, node: string, port: number, phase = 'Running', controller = 'DaemonSet') {
    const ownerReferences = [
      { apiVersion: controller === 'Job' ? 'batch/v1' : 'apps/v1', kind: controller, name: `${name}-owner`, uid: `uid-${name}`, controller: true },
    ];
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name, labels: { 'app.kubernetes.io/name': 'dcgm-exporter' }, ownerReferences },
        spec: {
          nodeName: node,
          containers: [{ name: 'exporter', image: 'nvcr.io/nvidia/k8s/dcgm-exporter', ports: [{ name: 'metrics', containerPort: port }] }],
        },
      },
    });
    await core.patchNamespacedPodStatus(
      { namespace, name, body: { status: { phase, podIP: '127.0.0.1' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  beforeAll(async () => {
    apiserver = await startKubeApiServer({
      nodes: [
        { name: 'gpu-a', gpus: 2 },
        { name: 'gpu-b', gpus: 1 },
      ],
    });
    core = kubeConfigFor(apiserver).makeApiClient(CoreV1Api);
    nodeA = await startExporter(text('dcgm-exporter-node-a.metrics'));
    nodeB = await startExporter(text('dcgm-exporter-node-b.metrics'));
    impostor = await startExporter('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",Hostname="gpu-a"} 0\n');
    for (const ns of ['gpu-operator', 'team-x']) await core.createNamespace({ body: { metadata: { name: ns } } });
    await exporterPod('gpu-operator', 'dcgm-exporter-a', 'gpu-a', nodeA.port);
    await exporterPod('gpu-operator', 'dcgm-exporter-b', 'gpu-b', nodeB.port);
    await exporterPod('gpu-operator', 'dcgm-exporter-starting', 'gpu-b', nodeB.port, 'Pending');
    // A pod a project labels like the exporter, in its own namespace: one a DaemonSet controls (a project
    // cannot make one through /v1/sessions, but the namespace setting guards even then), and a Job's pod
    // (a federated Job's: what a project can make).
    await exporterPod('team-x', 'fake-exporter', 'gpu-a', impostor.port);
    await exporterPod('team-x', 'job-exporter', 'gpu-a', impostor.port, 'Running', 'Job');
  });

  afterAll(async () => {
    for (const e of [nodeA, nodeB, impostor]) e?.server.close();
    await apiserver?.close();
  });

  it("scrapes every running exporter pod once, each GPU under its pod's node; MARINER_DCGM_EXPORTER_NAMESPACE leaves the others out", async () => {
    const before = { a: nodeA.scrapes, b: nodeB.scrapes, x: impostor.scrapes };
    const scrape = await scrapeDcgm(core, settings({ namespace: 'gpu-operator' }));
    expect(scrape.failures).toEqual([]);
    expect(scrape.exporters).toBe(2);
    expect(scrape.gpus!.map((g) => [g.node, g.index, g.utilization, g.namespace])).toEqual([
      ['gpu-a', 0, 90, 'team-a'],
      ['gpu-a', 1, 10, null],
      ['gpu-b', 0, 60, 'team-b'],
    ]);
    expect({ a: nodeA.scrapes - before.a, b: nodeB.scrapes - before.b, x: impostor.scrapes - before.x }).toEqual({ a: 1, b: 1, x: 0 });
  });

  it('without a namespace, a pod with the label is an exporter only when a DaemonSet controls it: a Job’s pod is not believed', async () => {
    const scrape = await scrapeDcgm(core, settings());
    expect(scrape.exporters).toBe(3);
  });

  it('fixed URLs replace discovery; the GPUs are then named by the Hostname label', async () => {
    const scrape = await scrapeDcgm(core, settings({ urls: [nodeA.url] }));
    expect(scrape.exporters).toBe(1);
    expect(scrape.gpus!.map((g) => g.node)).toEqual(['gpu-a', 'gpu-a']);
  });

  it('an exporter that fails is reported, the others still count; none answering means no metrics (allocation only)', async () => {
    const broken = await startExporter('oops', 500);
    try {
      const some = await scrapeDcgm(core, settings({ urls: [broken.url, nodeB.url] }));
      expect(some.gpus).toHaveLength(1);
      expect(some.failures).toEqual([`DCGM exporter ${broken.url}: ${broken.url} answered 500`]);
      const none = await scrapeDcgm(core, settings({ urls: [broken.url] }));
      expect(none.gpus).toBeNull();
    } finally {
      broken.server.close();
    }
    expect((await scrapeDcgm(core, settings({ selector: 'app.kubernetes.io/name=nothing-here' }))).gpus).toBeNull();
    expect((await scrapeDcgm(core, settings({ selector: '' }))).exporters).toBe(0);
  });
});
