import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import { collectClusterStatus, gpusOfPod, parseQuantity } from './clusterStatus.js';
import { dcgmSettingsFromEnv } from './dcgm.js';

/** No DCGM exporter: discovery off. */
const NO_DCGM = { ...dcgmSettingsFromEnv({}), selector: '' };

describe('parseQuantity', () => {
  it('reads Kubernetes quantities in every notation', () => {
    expect(parseQuantity('4')).toBe(4);
    expect(parseQuantity('500m')).toBe(0.5);
    expect(parseQuantity('16Gi')).toBe(16 * 2 ** 30);
    expect(parseQuantity('1e3')).toBe(1000);
    expect(parseQuantity('1E3')).toBe(1000);
    expect(parseQuantity('128974848')).toBe(128974848);
    expect(parseQuantity('129M')).toBe(129_000_000);
    expect(parseQuantity('2E')).toBe(2e18);
    expect(parseQuantity('1.5Ki')).toBe(1536);
    expect(parseQuantity('100n')).toBeCloseTo(1e-7);
    expect(parseQuantity(2)).toBe(2);
  });

  it('refuses what is not a quantity', () => {
    for (const text of ['', 'Gi', '1Gb', 'four', '1e', '1toString']) expect(() => parseQuantity(text)).toThrow(RangeError);
  });
});

describe('gpusOfPod', () => {
  it('counts limits, else requests, and an init container only when it asks for more than the containers', () => {
    const pod = (containers: object[], initContainers: object[] = []) => ({ spec: { containers, initContainers } }) as V1Pod;
    expect(
      gpusOfPod(
        pod([
          { name: 'a', resources: { limits: { 'nvidia.com/gpu': '2' } } },
          { name: 'b', resources: { requests: { 'nvidia.com/gpu': '1' } } },
        ]),
      ),
    ).toBe(3);
    expect(gpusOfPod(pod([{ name: 'a' }], [{ name: 'init', resources: { limits: { 'nvidia.com/gpu': '4' } } }]))).toBe(4);
    expect(gpusOfPod(pod([{ name: 'a', resources: { limits: { cpu: '1' } } }]))).toBe(0);
  });
});

describe('collectClusterStatus against an apiserver', () => {
  let apiserver: KubeApiServer;
  let core: CoreV1Api;

  beforeAll(async () => {
    apiserver = await startKubeApiServer({
      nodes: [
        { name: 'gpu-a', gpus: 4, gpuProduct: 'NVIDIA-A100-SXM4-80GB', cpu: '96', memory: '1056837436Ki' },
        { name: 'gpu-b', gpus: 2, ready: false },
        { name: 'cpu-1', cpu: '7910m', memory: '129M' },
      ],
    });
    core = kubeConfigFor(apiserver).makeApiClient(CoreV1Api);

    // Karpenter and the cloud provider label nodes with their instance type.
    await core.patchNode(
      {
        name: 'gpu-a',
        body: {
          metadata: {
            labels: { 'node.kubernetes.io/instance-type': 'p4d.24xlarge', 'karpenter.k8s.aws/instance-family': 'p4d', 'nvidia.com/gpu.memory': '81920' },
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await core.createNamespace({ body: { metadata: { name: 'mariner-proj' } } });
    const gpuPod = (name: string, gpus: string, labels: Record<string, string> = {}, nodeName?: string) => ({
      metadata: { name, labels },
      spec: { nodeName, containers: [{ name: 'main', image: 'vllm/vllm-openai', resources: { limits: { 'nvidia.com/gpu': gpus } } }] },
    });
    await core.createNamespacedPod({
      namespace: 'mariner-proj',
      body: gpuPod('inference', '1', { 'app.kubernetes.io/managed-by': 'mariner', 'app.kubernetes.io/component': 'inference-runtime' }, 'gpu-a'),
    });
    await core.createNamespacedPod({ namespace: 'mariner-proj', body: gpuPod('finished-training', '2', { 'mariner.dev/job-id': 'ftjob-1' }) });
    await core.patchNamespacedPodStatus(
      { namespace: 'mariner-proj', name: 'finished-training', body: { status: { phase: 'Succeeded' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await core.createNamespacedPod({
      namespace: 'mariner-proj',
      body: { metadata: { name: 'cpu-only' }, spec: { containers: [{ name: 'main', image: 'busybox' }] } },
    });
  });

  afterAll(async () => {
    await apiserver?.close();
  });

  it('reports the nodes, the GPUs of ready nodes, and the GPUs that running pods hold', async () => {
    const report = await collectClusterStatus(core, NO_DCGM);

    expect(report.nodes).toEqual(
      expect.arrayContaining([
        {
          name: 'gpu-a',
          ready: true,
          gpuCapacity: 4,
          gpuAllocatable: 4,
          gpuProduct: 'NVIDIA-A100-SXM4-80GB',
          gpuMemoryBytes: 81920 * 2 ** 20,
          cpuCores: 96,
          memoryBytes: 1056837436 * 1024,
        },
        {
          name: 'gpu-b',
          ready: false,
          gpuCapacity: 2,
          gpuAllocatable: 2,
          gpuProduct: 'NVIDIA-H100-80GB-HBM3',
          gpuMemoryBytes: null,
          cpuCores: 8,
          memoryBytes: 32 * 2 ** 30,
        },
        { name: 'cpu-1', ready: true, gpuCapacity: 0, gpuAllocatable: 0, gpuProduct: null, gpuMemoryBytes: null, cpuCores: 7.91, memoryBytes: 129_000_000 },
      ]),
    );
    expect(report.nodes).toHaveLength(3);
    // The not-ready node's 2 GPUs cannot be scheduled on.
    expect(report.gpuCapacity).toBe(4);
    // The finished pod no longer holds its 2 GPUs.
    expect(report.gpuAllocated).toBe(1);
    expect(report.gpuPods).toEqual(
      expect.arrayContaining([
        { namespace: 'mariner-proj', name: 'inference', gpus: 1, phase: 'Pending', nodeName: 'gpu-a', workload: 'RUNTIME' },
        { namespace: 'mariner-proj', name: 'finished-training', gpus: 2, phase: 'Succeeded', nodeName: null, workload: 'JOB' },
      ]),
    );
    expect(report.gpuPods).toHaveLength(2);
    expect(report.provisionableResources).toEqual([{ instanceFamily: 'p4d', instanceType: 'p4d.24xlarge' }]);
    // No DCGM exporter: allocations only.
    expect(report.gpuMetrics).toBeNull();
  });

  it("carries each GPU's utilisation when a DCGM exporter answers", async () => {
    const exporter = createServer((_req, res) =>
      res.end('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-a",namespace="mariner-proj",pod="inference"} 73\n'),
    );
    await new Promise<void>((resolve) => exporter.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(exporter.address() as AddressInfo).port}/metrics`;
      const report = await collectClusterStatus(core, { ...NO_DCGM, urls: [url] });
      expect(report.gpuMetrics).toEqual([
        {
          node: 'gpu-a',
          uuid: 'GPU-1',
          index: 0,
          modelName: 'NVIDIA A100-SXM4-80GB',
          utilization: 73,
          memoryUsedBytes: null,
          memoryTotalBytes: null,
          namespace: 'mariner-proj',
          pod: 'inference',
        },
      ]);
    } finally {
      exporter.close();
    }
  });
});
