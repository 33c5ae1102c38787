/**
 * Cluster telemetry (issue 20, item 3; docs/operations-telemetry.md): what each agent report says about
 * a cluster's GPUs, kept as a time series (telemetryStore.ts), and read back in steps.
 *
 * A report becomes a sample: nodes (GPUs by model and memory, allocations, use), namespaces (GPUs held,
 * runtime and job pods, use) and, with the NVIDIA DCGM exporter, every GPU. Its `source` says where the
 * utilisation comes from: DCGM (measured) or ALLOCATION (a GPU held by a pod counts as 100% busy, any
 * other as idle; memory in use is unknown).
 */
import { badInput } from '../../lib/errors.js';
import type { ClusterStatusValue } from './store.js';

export type TelemetrySource = 'DCGM' | 'ALLOCATION';

export interface GpuMetricValue {
  node: string;
  uuid: string;
  index: number;
  modelName: string | null;
  utilization: number;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  namespace: string | null;
  pod: string | null;
}

export interface SampleNode {
  name: string;
  ready: boolean;
  gpuProduct: string | null;
  gpuCapacity: number;
  gpuMemoryCapacityBytes: number;
  gpuAllocated: number;
  /** Percent (see the source); null on a node without GPUs. */
  utilization: number | null;
  memoryUsedBytes: number | null;
}

export interface SampleNamespace {
  namespace: string;
  gpuAllocated: number;
  runtimePods: number;
  jobPods: number;
  notebookPods: number;
  otherPods: number;
  utilization: number | null;
  memoryUsedBytes: number | null;
}

/** One report as stored (the row's `sample`). */
export interface TelemetrySample {
  source: TelemetrySource;
  gpuAllocated: number;
  /** The whole cluster's utilisation in percent (the mean over its GPUs); null without GPUs. */
  utilization: number | null;
  nodes: SampleNode[];
  namespaces: SampleNamespace[];
  /** Each GPU (DCGM only). Not read back with the series: a point loads its latest row's on demand. */
  gpus: GpuMetricValue[];
}

const MAX_GPUS = 10_000;
const MAX_TEXT = 253;

function optionalText(value: string | null | undefined, field: string): string | null {
  if (value === null || value === undefined || value === '') return null;
  if (value.length > MAX_TEXT) throw badInput(`${field} must be at most ${MAX_TEXT} characters`, field);
  return value;
}

function optionalBytes(value: number | null | undefined, field: string): number | null {
  if (value === null || value === undefined) return null;
  if (!Number.isFinite(value) || value < 0) throw badInput(`${field} must be a non-negative number`, field);
  return value;
}

type Loose<T> = { [K in keyof T as null extends T[K] ? K : never]?: T[K] | undefined } & { [K in keyof T as null extends T[K] ? never : K]: T[K] };

/** Checks the DCGM part of an agent's report; null (none) means allocation only. */
export function validateGpuMetrics(input: readonly Loose<GpuMetricValue>[] | null | undefined): GpuMetricValue[] | null {
  if (input === null || input === undefined) return null;
  if (input.length > MAX_GPUS) throw badInput(`input.gpuMetrics: at most ${MAX_GPUS}`, 'input.gpuMetrics');
  return input.map((g, i) => {
    const field = `input.gpuMetrics[${i}]`;
    const node = optionalText(g.node, `${field}.node`);
    const uuid = optionalText(g.uuid, `${field}.uuid`);
    if (!node || !uuid) throw badInput(`${field}: node and uuid are required`, field);
    if (!Number.isInteger(g.index) || g.index < 0 || g.index > 1024) throw badInput(`${field}.index must be 0 to 1024`, `${field}.index`);
    if (!Number.isFinite(g.utilization) || g.utilization < 0 || g.utilization > 100)
      throw badInput(`${field}.utilization must be a percentage, 0 to 100`, `${field}.utilization`);
    return {
      node,
      uuid,
      index: g.index,
      modelName: optionalText(g.modelName, `${field}.modelName`),
      utilization: g.utilization,
      memoryUsedBytes: optionalBytes(g.memoryUsedBytes, `${field}.memoryUsedBytes`),
      memoryTotalBytes: optionalBytes(g.memoryTotalBytes, `${field}.memoryTotalBytes`),
      namespace: optionalText(g.namespace, `${field}.namespace`),
      pod: optionalText(g.pod, `${field}.pod`),
    };
  });
}

const mean = (values: number[]): number | null => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : null);
const sumOrNull = (values: (number | null)[]): number | null => {
  const known = values.filter((v): v is number => v !== null);
  return known.length ? known.reduce((a, b) => a + b, 0) : null;
};

/** What a report says, as a sample of the series. */
export function telemetrySample(status: ClusterStatusValue, gpus: GpuMetricValue[] | null): TelemetrySample {
  const source: TelemetrySource = gpus === null ? 'ALLOCATION' : 'DCGM';
  const holding = status.gpuPods.filter((p) => p.phase === 'Running' || p.phase === 'Pending');
  const nodes = status.nodes.map((node): SampleNode => {
    const allocated = holding.filter((p) => p.nodeName === node.name).reduce((sum, p) => sum + p.gpus, 0);
    const measured = (gpus ?? []).filter((g) => g.node === node.name);
    const capacityFromLabel = (node.gpuMemoryBytes ?? 0) * node.gpuCapacity;
    const capacityMeasured = sumOrNull(measured.map((g) => g.memoryTotalBytes));
    return {
      name: node.name,
      ready: node.ready,
      gpuProduct: node.gpuProduct ?? measured[0]?.modelName ?? null,
      gpuCapacity: node.gpuCapacity,
      gpuMemoryCapacityBytes: capacityMeasured ?? capacityFromLabel,
      gpuAllocated: allocated,
      utilization:
        source === 'DCGM' ? mean(measured.map((g) => g.utilization)) : node.gpuCapacity > 0 ? Math.min(100, (allocated / node.gpuCapacity) * 100) : null,
      memoryUsedBytes: source === 'DCGM' ? sumOrNull(measured.map((g) => g.memoryUsedBytes)) : null,
    };
  });
  const namespaces = new Map<string, SampleNamespace>();
  for (const pod of holding) {
    const ns = namespaces.get(pod.namespace) ?? {
      namespace: pod.namespace,
      gpuAllocated: 0,
      runtimePods: 0,
      jobPods: 0,
      notebookPods: 0,
      otherPods: 0,
      utilization: null,
      memoryUsedBytes: null,
    };
    ns.gpuAllocated += pod.gpus;
    const workload = pod.workload ?? 'OTHER';
    if (workload === 'RUNTIME') ns.runtimePods++;
    else if (workload === 'JOB') ns.jobPods++;
    else if (workload === 'NOTEBOOK') ns.notebookPods++;
    else ns.otherPods++;
    namespaces.set(pod.namespace, ns);
  }
  for (const ns of namespaces.values()) {
    if (source === 'ALLOCATION') {
      ns.utilization = ns.gpuAllocated > 0 ? 100 : null;
      continue;
    }
    const used = gpus!.filter((g) => g.namespace === ns.namespace);
    ns.utilization = mean(used.map((g) => g.utilization));
    ns.memoryUsedBytes = sumOrNull(used.map((g) => g.memoryUsedBytes));
  }
  const gpuAllocated = holding.reduce((sum, p) => sum + p.gpus, 0);
  const capacity = nodes.reduce((sum, n) => sum + n.gpuCapacity, 0);
  return {
    source,
    gpuAllocated,
    utilization: source === 'DCGM' ? mean(gpus!.map((g) => g.utilization)) : capacity > 0 ? Math.min(100, (gpuAllocated / capacity) * 100) : null,
    nodes,
    namespaces: [...namespaces.values()].sort((a, b) => a.namespace.localeCompare(b.namespace)),
    gpus: gpus ?? [],
  };
}

/** A stored sample (without its GPUs) and the time it held: [startedAt, lastSeenAt]. */
export interface TelemetryRow {
  id: string;
  clusterId: string;
  startedAt: Date;
  lastSeenAt: Date;
  sample: Omit<TelemetrySample, 'gpus'>;
}

export interface TelemetryPoint {
  at: Date;
  /** The row last reported in the step, whose GPUs the point shows (null: none). */
  latestRowId: string | null;
  source: TelemetrySource | null;
  nodeCount: number;
  gpuCapacity: number;
  gpuAllocated: number;
  gpuAllocatedMax: number;
  gpuUtilization: number | null;
  gpuUtilizationMax: number | null;
  gpuMemoryCapacityBytes: number;
  gpuMemoryUsedBytes: number | null;
  gpuMemoryUsedBytesMax: number | null;
  gpuModels: { product: string; memoryBytes: number | null; count: number }[];
  nodes: {
    name: string;
    ready: boolean;
    gpuProduct: string | null;
    gpuCapacity: number;
    gpuAllocated: number;
    gpuUtilization: number | null;
    gpuUtilizationMax: number | null;
    gpuMemoryCapacityBytes: number;
    gpuMemoryUsedBytes: number | null;
    gpuMemoryUsedBytesMax: number | null;
  }[];
  namespaces: (Omit<SampleNamespace, 'gpuAllocated'> & { gpuAllocated: number; gpuAllocatedMax: number })[];
}

/** A time-weighted mean and the maximum of values that held for a while each. */
class Weighted {
  private total = 0;
  private weight = 0;
  max: number | null = null;
  add(value: number | null, weight: number): void {
    if (value === null) return;
    this.total += value * weight;
    this.weight += weight;
    this.max = this.max === null ? value : Math.max(this.max, value);
  }
  get mean(): number | null {
    return this.weight > 0 ? this.total / this.weight : null;
  }
}

function emptyPoint(at: Date): TelemetryPoint {
  return {
    at,
    latestRowId: null,
    source: null,
    nodeCount: 0,
    gpuCapacity: 0,
    gpuAllocated: 0,
    gpuAllocatedMax: 0,
    gpuUtilization: null,
    gpuUtilizationMax: null,
    gpuMemoryCapacityBytes: 0,
    gpuMemoryUsedBytes: null,
    gpuMemoryUsedBytesMax: null,
    gpuModels: [],
    nodes: [],
    namespaces: [],
  };
}

/** One step from the rows that overlap it (`rows` in start order, none empty). */
function pointOf(at: Date, stepEnd: number, rows: TelemetryRow[]): TelemetryPoint {
  const latestRow = rows.at(-1)!;
  const latest = latestRow.sample;
  const weightOf = (row: TelemetryRow) => Math.max(1, Math.min(stepEnd, row.lastSeenAt.getTime()) - Math.max(at.getTime(), row.startedAt.getTime()));
  const allocated = new Weighted();
  const utilization = new Weighted();
  const memoryUsed = new Weighted();
  const nodes = new Map<string, { allocated: Weighted; utilization: Weighted; memoryUsed: Weighted }>();
  const namespaces = new Map<string, { allocated: Weighted; utilization: Weighted; memoryUsed: Weighted; last: SampleNamespace }>();
  for (const row of rows) {
    const w = weightOf(row);
    const { sample } = row;
    allocated.add(sample.gpuAllocated, w);
    utilization.add(sample.utilization ?? null, w);
    memoryUsed.add(sumOrNull(sample.nodes.map((n) => n.memoryUsedBytes)), w);
    for (const node of sample.nodes) {
      const acc = nodes.get(node.name) ?? { allocated: new Weighted(), utilization: new Weighted(), memoryUsed: new Weighted() };
      acc.allocated.add(node.gpuAllocated, w);
      acc.utilization.add(node.utilization, w);
      acc.memoryUsed.add(node.memoryUsedBytes, w);
      nodes.set(node.name, acc);
    }
    for (const ns of sample.namespaces) {
      const acc = namespaces.get(ns.namespace) ?? { allocated: new Weighted(), utilization: new Weighted(), memoryUsed: new Weighted(), last: ns };
      acc.allocated.add(ns.gpuAllocated, w);
      acc.utilization.add(ns.utilization, w);
      acc.memoryUsed.add(ns.memoryUsedBytes, w);
      acc.last = ns;
      namespaces.set(ns.namespace, acc);
    }
  }
  const models = new Map<string, { product: string; memoryBytes: number | null; count: number }>();
  for (const node of latest.nodes) {
    if (node.gpuCapacity === 0) continue;
    const product = node.gpuProduct ?? '';
    const memoryBytes = node.gpuMemoryCapacityBytes > 0 ? node.gpuMemoryCapacityBytes / node.gpuCapacity : null;
    const key = JSON.stringify([product, memoryBytes]);
    const model = models.get(key) ?? { product, memoryBytes, count: 0 };
    model.count += node.gpuCapacity;
    models.set(key, model);
  }
  return {
    at,
    latestRowId: latestRow.id,
    source: latest.source,
    nodeCount: latest.nodes.length,
    gpuCapacity: latest.nodes.reduce((sum, n) => sum + n.gpuCapacity, 0),
    gpuAllocated: allocated.mean ?? 0,
    gpuAllocatedMax: allocated.max ?? 0,
    gpuUtilization: utilization.mean,
    gpuUtilizationMax: utilization.max,
    gpuMemoryCapacityBytes: latest.nodes.reduce((sum, n) => sum + n.gpuMemoryCapacityBytes, 0),
    gpuMemoryUsedBytes: memoryUsed.mean,
    gpuMemoryUsedBytesMax: memoryUsed.max,
    gpuModels: [...models.values()].sort((a, b) => a.product.localeCompare(b.product)),
    nodes: latest.nodes.map((node) => {
      const acc = nodes.get(node.name)!;
      return {
        name: node.name,
        ready: node.ready,
        gpuProduct: node.gpuProduct,
        gpuCapacity: node.gpuCapacity,
        gpuAllocated: acc.allocated.mean ?? 0,
        gpuUtilization: acc.utilization.mean,
        gpuUtilizationMax: acc.utilization.max,
        gpuMemoryCapacityBytes: node.gpuMemoryCapacityBytes,
        gpuMemoryUsedBytes: acc.memoryUsed.mean,
        gpuMemoryUsedBytesMax: acc.memoryUsed.max,
      };
    }),
    namespaces: [...namespaces.values()]
      .map(({ allocated: a, utilization: u, memoryUsed: m, last }) => ({
        ...last,
        gpuAllocated: a.mean ?? 0,
        gpuAllocatedMax: a.max ?? 0,
        utilization: u.mean,
        memoryUsedBytes: m.mean,
      }))
      .sort((a, b) => a.namespace.localeCompare(b.namespace)),
  };
}

/** The steps of [from, to), each from the rows that overlap it (one cluster's rows, in start order). */
export function telemetryPoints(rows: TelemetryRow[], from: Date, to: Date, stepSeconds: number): TelemetryPoint[] {
  const points: TelemetryPoint[] = [];
  const stepMs = stepSeconds * 1000;
  for (let start = from.getTime(); start < to.getTime(); start += stepMs) {
    const end = Math.min(start + stepMs, to.getTime());
    const overlapping = rows.filter((r) => r.startedAt.getTime() < end && r.lastSeenAt.getTime() >= start);
    points.push(overlapping.length ? pointOf(new Date(start), end, overlapping) : emptyPoint(new Date(start)));
  }
  return points;
}

/** GPUs as a viewer who may not see the cluster's namespaces gets them: no pods. */
export function gpusWithoutPods(gpus: GpuMetricValue[]): GpuMetricValue[] {
  return gpus.map((g) => ({ ...g, namespace: null, pod: null }));
}

export interface TelemetryRange {
  from: Date;
  to: Date;
  step: number;
}

const HOUR = 3600;
const MAX_POINTS = 2000;

/** The range asked (ISO 8601 instants), with its defaults: the last 24 hours in hourly steps, the end at the next step. */
export function telemetryRange(args: { from?: string | null; to?: string | null; step?: number | null }, now = Date.now()): TelemetryRange {
  const step = args.step ?? HOUR;
  if (!Number.isInteger(step) || step < 60 || step > 366 * 24 * HOUR) throw badInput('step must be whole seconds, at least 60', 'step');
  const instant = (value: string | null | undefined, name: string): number | null => {
    if (value === null || value === undefined) return null;
    const time = Date.parse(value);
    if (Number.isNaN(time)) throw badInput(`${name} must be an ISO 8601 date-time`, name);
    return time;
  };
  const stepMs = step * 1000;
  const to = instant(args.to, 'to') ?? (Math.floor(now / stepMs) + 1) * stepMs;
  const from = instant(args.from, 'from') ?? to - 24 * HOUR * 1000;
  if (from >= to) throw badInput('from must be before to', 'from');
  if ((to - from) / stepMs > MAX_POINTS) throw badInput(`at most ${MAX_POINTS} steps between from and to`, 'step');
  return { from: new Date(from), to: new Date(to), step };
}
