import { badInput } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import type { ClusterConfigValue, ClusterStatusValue, GpuWorkload } from './store.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Cluster names are DNS labels (they name Kubernetes objects and appear in URLs). */
export function clusterName(value: string, field = 'input.name'): string {
  const name = value.trim();
  if (!DNS_LABEL.test(name))
    throw badInput(`${field}: "${name.slice(0, 80)}" must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`, field);
  return name;
}

export const clusterId = (value: string, field = 'id'): string => assertId('cluster', value, field);

export function clusterConfig(input: { timeSlicingGpus?: number | null }): ClusterConfigValue {
  const gpus = input.timeSlicingGpus ?? null;
  if (gpus !== null && (!Number.isInteger(gpus) || gpus < 1 || gpus > 64)) {
    throw badInput('input.timeSlicingGpus must be between 1 and 64, or null for no time-slicing', 'input.timeSlicingGpus');
  }
  return { timeSlicingGpus: gpus };
}

const MAX_NODES = 10_000;
const MAX_PODS = 100_000;
const MAX_TEXT = 253;

function text(value: string, field: string): string {
  if (value.length === 0 || value.length > MAX_TEXT) throw badInput(`${field} must be 1-${MAX_TEXT} characters`, field);
  return value;
}

function count(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 1_000_000) throw badInput(`${field} must be a non-negative integer`, field);
  return value;
}

function amount(value: number, field: string): number {
  if (!Number.isFinite(value) || value < 0) throw badInput(`${field} must be a non-negative number`, field);
  return value;
}

interface StatusInput {
  nodes: {
    name: string;
    ready: boolean;
    gpuCapacity: number;
    gpuAllocatable: number;
    gpuProduct?: string | null;
    gpuMemoryBytes?: number | null;
    cpuCores: number;
    memoryBytes: number;
  }[];
  gpuPods: { namespace: string; name: string; gpus: number; phase: string; nodeName?: string | null; workload?: GpuWorkload | null }[];
  provisionableResources?: { instanceFamily?: string | null; instanceType?: string | null }[] | null;
}

/** Checks an agent's report and computes the totals schedulers use (ready nodes only). */
export function clusterStatus(input: StatusInput): ClusterStatusValue {
  if (input.nodes.length > MAX_NODES) throw badInput(`input.nodes: at most ${MAX_NODES}`, 'input.nodes');
  if (input.gpuPods.length > MAX_PODS) throw badInput(`input.gpuPods: at most ${MAX_PODS}`, 'input.gpuPods');
  const nodes = input.nodes.map((n, i) => ({
    name: text(n.name, `input.nodes[${i}].name`),
    ready: n.ready,
    gpuCapacity: count(n.gpuCapacity, `input.nodes[${i}].gpuCapacity`),
    gpuAllocatable: count(n.gpuAllocatable, `input.nodes[${i}].gpuAllocatable`),
    gpuProduct: n.gpuProduct ? text(n.gpuProduct, `input.nodes[${i}].gpuProduct`) : null,
    gpuMemoryBytes: n.gpuMemoryBytes == null ? null : amount(n.gpuMemoryBytes, `input.nodes[${i}].gpuMemoryBytes`),
    cpuCores: amount(n.cpuCores, `input.nodes[${i}].cpuCores`),
    memoryBytes: amount(n.memoryBytes, `input.nodes[${i}].memoryBytes`),
  }));
  const gpuPods = input.gpuPods.map((p, i) => ({
    namespace: text(p.namespace, `input.gpuPods[${i}].namespace`),
    name: text(p.name, `input.gpuPods[${i}].name`),
    gpus: count(p.gpus, `input.gpuPods[${i}].gpus`),
    phase: text(p.phase, `input.gpuPods[${i}].phase`),
    nodeName: p.nodeName ? text(p.nodeName, `input.gpuPods[${i}].nodeName`) : null,
    workload: p.workload ?? 'OTHER',
  }));
  const provisionableResources = (input.provisionableResources ?? []).slice(0, 1000).map((r, i) => ({
    instanceFamily: r.instanceFamily ? text(r.instanceFamily, `input.provisionableResources[${i}].instanceFamily`) : null,
    instanceType: r.instanceType ? text(r.instanceType, `input.provisionableResources[${i}].instanceType`) : null,
  }));
  return {
    nodes,
    gpuCapacity: nodes.filter((n) => n.ready).reduce((sum, n) => sum + n.gpuAllocatable, 0),
    gpuAllocated: gpuPods.filter((p) => p.phase === 'Running' || p.phase === 'Pending').reduce((sum, p) => sum + p.gpus, 0),
    gpuPods,
    provisionableResources,
  };
}

/** Component names are short identifiers (`agent`, `executor`, `loader`). */
export function componentStatus(input: { name: string; isHealthy: boolean; message?: string | null }): { name: string; isHealthy: boolean; message: string } {
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(input.name)) throw badInput('input.name must be 1-63 lowercase letters, digits or -', 'input.name');
  return { name: input.name, isHealthy: input.isHealthy, message: (input.message ?? '').slice(0, 1024) };
}

export const organizationId = (value: string, field: string): string => assertId('organization', value, field);

/** The organizations a platform cluster is granted to: distinct organization ids, at most 1,000. */
export function organizationIds(values: readonly string[], field: string): string[] {
  if (values.length > 1000) throw badInput(`${field}: at most 1000 organizations`, field);
  return [...new Set(values.map((v, i) => organizationId(v, `${field}[${i}]`)))];
}
