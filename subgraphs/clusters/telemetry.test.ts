import { describe, expect, it } from 'vitest';
import type { ClusterStatusValue } from './store.js';
import { telemetryPoints, telemetryRange, telemetrySample, validateGpuMetrics, type TelemetryRow } from './telemetry.js';

const node = (name: string, gpus: number) => ({
  name,
  ready: true,
  gpuCapacity: gpus,
  gpuAllocatable: gpus,
  gpuProduct: 'NVIDIA-L4',
  cpuCores: 8,
  memoryBytes: 1,
});
const status = (pods: ClusterStatusValue['gpuPods']): ClusterStatusValue => ({
  nodes: [node('n1', 2), node('n2', 2)],
  gpuCapacity: 4,
  gpuAllocated: 0,
  gpuPods: pods,
  provisionableResources: [],
});
const gpu = (node: string, index: number, utilization: number, namespace: string | null = null) => ({
  node,
  uuid: `GPU-${node}-${index}`,
  index,
  modelName: 'NVIDIA L4',
  utilization,
  memoryUsedBytes: 100,
  memoryTotalBytes: 1000,
  namespace,
  pod: namespace ? `${namespace}-pod` : null,
});

describe('telemetrySample', () => {
  it('counts GPUs held by running and pending pods only, per node and namespace; ALLOCATION counts a held GPU as busy', () => {
    const sample = telemetrySample(
      status([
        { namespace: 'a', name: 'rt', gpus: 1, phase: 'Running', nodeName: 'n1', workload: 'RUNTIME' },
        { namespace: 'a', name: 'job', gpus: 1, phase: 'Pending', nodeName: null, workload: 'JOB' },
        { namespace: 'b', name: 'done', gpus: 2, phase: 'Succeeded', nodeName: 'n2', workload: 'JOB' },
      ]),
      null,
    );
    expect(sample.source).toBe('ALLOCATION');
    expect(sample.gpuAllocated).toBe(2);
    expect(sample.nodes.map((n) => [n.name, n.gpuAllocated, n.utilization, n.memoryUsedBytes])).toEqual([
      ['n1', 1, 50, null],
      ['n2', 0, 0, null],
    ]);
    expect(sample.namespaces).toEqual([
      { namespace: 'a', gpuAllocated: 2, runtimePods: 1, jobPods: 1, notebookPods: 0, otherPods: 0, utilization: 100, memoryUsedBytes: null },
    ]);
  });

  it("DCGM: each node's and namespace's mean GPU utilisation, memory summed", () => {
    const sample = telemetrySample(status([{ namespace: 'a', name: 'rt', gpus: 1, phase: 'Running', nodeName: 'n1', workload: 'RUNTIME' }]), [
      gpu('n1', 0, 80, 'a'),
      gpu('n1', 1, 20),
      gpu('n2', 0, 0),
    ]);
    expect(sample.source).toBe('DCGM');
    expect(sample.nodes.map((n) => [n.name, n.utilization, n.memoryUsedBytes, n.gpuMemoryCapacityBytes])).toEqual([
      ['n1', 50, 200, 2000],
      ['n2', 0, 100, 1000],
    ]);
    expect(sample.namespaces[0]).toMatchObject({ namespace: 'a', utilization: 80, memoryUsedBytes: 100 });
  });
});

describe('telemetryPoints', () => {
  const base = Date.parse('2026-01-01T00:00:00Z');
  const at = (s: number) => new Date(base + s * 1000);
  const sample = (utilization: number) => telemetrySample(status([]), [gpu('n1', 0, utilization), gpu('n1', 1, utilization)]);
  const row = (from: number, to: number, utilization: number): TelemetryRow => ({
    id: String(from),
    clusterId: 'c',
    startedAt: at(from),
    lastSeenAt: at(to),
    sample: sample(utilization),
  });

  it('averages over a step weighted by how long each report held, with the maximum; a step without reports is empty', () => {
    // 0-45 s at 20%, 45-60 s at 100%: 40% on average over the first minute, 100% at most.
    const points = telemetryPoints([row(0, 45, 20), row(45, 60, 100)], at(0), at(180), 60);
    expect(points.map((p) => p.at.toISOString())).toEqual(['2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z', '2026-01-01T00:02:00.000Z']);
    expect(points[0]).toMatchObject({ source: 'DCGM', gpuUtilization: 40, gpuUtilizationMax: 100, nodeCount: 2, gpuCapacity: 4 });
    expect(points[0]!.nodes[0]).toMatchObject({ name: 'n1', gpuUtilization: 40, gpuUtilizationMax: 100 });
    // The second report was last seen at the start of the second step: it holds there.
    expect(points[1]).toMatchObject({ source: 'DCGM', gpuUtilization: 100 });
    expect(points[2]).toMatchObject({ source: null, gpuUtilization: null, nodes: [], gpuCapacity: 0, latestRowId: null });
    // A point shows the GPUs of the step's latest report.
    expect(points.map((p) => p.latestRowId)).toEqual(['45', '45', null]);
  });
});

describe('telemetryRange', () => {
  it('defaults to the 24 hours up to the next step; refuses a bad step, a reversed range and too many points', () => {
    const now = Date.parse('2026-01-01T10:30:00Z');
    expect(telemetryRange({}, now)).toEqual({ from: new Date('2025-12-31T11:00:00Z'), to: new Date('2026-01-01T11:00:00Z'), step: 3600 });
    expect(() => telemetryRange({ step: 10 })).toThrow(/at least 60/);
    expect(() => telemetryRange({ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' })).toThrow(/before/);
    expect(() => telemetryRange({ from: '2020-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z', step: 60 })).toThrow(/at most 2000/);
    expect(() => telemetryRange({ from: 'yesterday' })).toThrow(/ISO 8601/);
  });
});

describe('validateGpuMetrics', () => {
  it('takes none as allocation only, and refuses a utilisation outside 0-100', () => {
    expect(validateGpuMetrics(null)).toBeNull();
    expect(validateGpuMetrics([{ node: 'n', uuid: 'u', index: 0, utilization: 5 }])![0]).toMatchObject({ memoryUsedBytes: null, pod: null });
    expect(() => validateGpuMetrics([{ node: 'n', uuid: 'u', index: 0, utilization: 101 }])).toThrow(/percentage/);
  });
});
