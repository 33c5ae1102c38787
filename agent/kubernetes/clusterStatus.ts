/**
 * What the agent reports about its cluster: nodes, GPUs, GPUs in use, and the instance types the
 * cluster runs on (LLMariner's ClusterStatus: gpu_nodes, gpu_pods, provisionable_resources); with
 * the NVIDIA DCGM exporter running, each GPU's utilisation and memory (dcgm.ts). The control plane
 * keeps the reports as the cluster's telemetry series (subgraphs/clusters/telemetry.ts).
 */
import type { CoreV1Api, V1Node, V1Pod } from '@kubernetes/client-node';
import { JOB_ID_LABEL, NOTEBOOK_NAME_LABEL } from '../../lib/jobSpec.js';
import { dcgmSettingsFromEnv, scrapeDcgm, type DcgmSettings, type GpuMetric } from './dcgm.js';
import { COMPONENT_LABEL, RUNTIME_COMPONENT } from './runtimeManifests.js';

export interface ClusterNodeStatus {
  name: string;
  ready: boolean;
  gpuCapacity: number;
  gpuAllocatable: number;
  /** The `nvidia.com/gpu.product` label that NVIDIA GPU feature discovery sets, e.g. `NVIDIA-A100-SXM4-80GB`. */
  gpuProduct: string | null;
  /** Memory of one GPU: GPU feature discovery's `nvidia.com/gpu.memory` label (MiB), in bytes; null without it. */
  gpuMemoryBytes: number | null;
  cpuCores: number;
  memoryBytes: number;
}

/** What a GPU pod is to the platform: an inference runtime, a job's or notebook's pod, or anything else. */
export type GpuWorkload = 'RUNTIME' | 'JOB' | 'NOTEBOOK' | 'OTHER';

export interface GpuPodStatus {
  namespace: string;
  name: string;
  gpus: number;
  phase: string;
  /** The node it was scheduled on; null while unscheduled. */
  nodeName: string | null;
  workload: GpuWorkload;
}

export interface ClusterStatusReport {
  nodes: ClusterNodeStatus[];
  /** Sum over ready nodes of allocatable `nvidia.com/gpu`. */
  gpuCapacity: number;
  /** Sum of the `nvidia.com/gpu` limits (else requests) of pods that have not terminated. */
  gpuAllocated: number;
  gpuPods: GpuPodStatus[];
  /** Distinct instance families and types of the nodes (well-known and Karpenter node labels). */
  provisionableResources: { instanceFamily: string | null; instanceType: string | null }[];
  /** Every GPU as the DCGM exporters measured it; null when the cluster runs none (allocation only). */
  gpuMetrics: GpuMetric[] | null;
  /** DCGM exporters found (0: none, allocation only). */
  dcgmExporters: number;
  /** Why exporters could not be found or read, one line each (the control plane shows them as the `dcgm-exporter` component's health). */
  dcgmProblems: string[];
}

export const GPU_RESOURCE = 'nvidia.com/gpu';
const GPU_PRODUCT_LABEL = 'nvidia.com/gpu.product';
const GPU_MEMORY_LABEL = 'nvidia.com/gpu.memory';
const INSTANCE_TYPE_LABELS = ['node.kubernetes.io/instance-type', 'beta.kubernetes.io/instance-type'];
const INSTANCE_FAMILY_LABELS = ['karpenter.k8s.aws/instance-family'];
/** Page size for lists, so one report never asks a large cluster for every pod at once. */
const LIST_PAGE_SIZE = 500;

const SUFFIXES = new Map<string, number>([
  ['Ki', 2 ** 10],
  ['Mi', 2 ** 20],
  ['Gi', 2 ** 30],
  ['Ti', 2 ** 40],
  ['Pi', 2 ** 50],
  ['Ei', 2 ** 60],
  ['n', 1e-9],
  ['u', 1e-6],
  ['m', 1e-3],
  ['', 1],
  ['k', 1e3],
  ['M', 1e6],
  ['G', 1e9],
  ['T', 1e12],
  ['P', 1e15],
  ['E', 1e18],
]);
const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(.*)$/;
const EXPONENT = /^[eE]([+-]?\d+)$/;

/**
 * The value of a Kubernetes quantity (k8s.io/apimachinery resource.Quantity): a decimal number
 * followed by a binary-SI suffix (`16Gi`), a decimal-SI suffix (`500m`, `129M`) or a decimal
 * exponent (`1e3`). A plain number is taken as it is. Throws on anything else.
 */
export function parseQuantity(quantity: string | number): number {
  if (typeof quantity === 'number') return quantity;
  const match = QUANTITY.exec(quantity.trim());
  if (match) {
    const [, number, suffix] = match;
    const exponent = EXPONENT.exec(suffix);
    const multiplier = exponent ? 10 ** Number(exponent[1]) : SUFFIXES.get(suffix);
    if (multiplier !== undefined) return Number(number) * multiplier;
  }
  throw new RangeError(`not a Kubernetes quantity: "${quantity}"`);
}

function resourceOf(resources: Record<string, string> | undefined, name: string): number {
  const value = resources?.[name];
  return value === undefined ? 0 : parseQuantity(value);
}

function isReady(node: V1Node): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

function firstLabel(labels: Record<string, string> | undefined, names: string[]): string | null {
  for (const name of names) {
    if (labels?.[name]) return labels[name];
  }
  return null;
}

/**
 * The GPUs a pod holds: as the scheduler counts them, the larger of the sum over its containers
 * and the largest single init container; per container the limit, else the request.
 */
export function gpusOfPod(pod: V1Pod): number {
  const gpusOf = (c: { resources?: { limits?: Record<string, string>; requests?: Record<string, string> } }) =>
    c.resources?.limits?.[GPU_RESOURCE] !== undefined ? resourceOf(c.resources.limits, GPU_RESOURCE) : resourceOf(c.resources?.requests, GPU_RESOURCE);
  const containers = (pod.spec?.containers ?? []).reduce((sum, c) => sum + gpusOf(c), 0);
  const initContainers = Math.max(0, ...(pod.spec?.initContainers ?? []).map(gpusOf));
  return Math.max(containers, initContainers);
}

function workloadOf(pod: V1Pod): GpuWorkload {
  const labels = pod.metadata?.labels ?? {};
  if (labels[COMPONENT_LABEL] === RUNTIME_COMPONENT) return 'RUNTIME';
  if (labels[NOTEBOOK_NAME_LABEL]) return 'NOTEBOOK';
  if (labels[JOB_ID_LABEL]) return 'JOB';
  return 'OTHER';
}

function gpuMemoryOf(node: V1Node): number | null {
  const mib = Number(node.metadata?.labels?.[GPU_MEMORY_LABEL]);
  return Number.isFinite(mib) && mib > 0 ? mib * 2 ** 20 : null;
}

function isTerminated(pod: V1Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}

async function listAllNodes(core: CoreV1Api): Promise<V1Node[]> {
  const nodes: V1Node[] = [];
  let next: string | undefined;
  do {
    const page = await core.listNode({ limit: LIST_PAGE_SIZE, _continue: next });
    nodes.push(...page.items);
    next = page.metadata?._continue || undefined;
  } while (next);
  return nodes;
}

async function listAllPods(core: CoreV1Api): Promise<V1Pod[]> {
  const pods: V1Pod[] = [];
  let next: string | undefined;
  do {
    const page = await core.listPodForAllNamespaces({ limit: LIST_PAGE_SIZE, _continue: next });
    pods.push(...page.items);
    next = page.metadata?._continue || undefined;
  } while (next);
  return pods;
}

/** The DCGM exporters' GPUs; null (allocation only) when there are none, or finding them failed. */
async function gpuMetricsOf(core: CoreV1Api, dcgm: DcgmSettings): Promise<{ gpus: GpuMetric[] | null; exporters: number; problems: string[] }> {
  try {
    const scrape = await scrapeDcgm(core, dcgm);
    return { gpus: scrape.gpus, exporters: scrape.exporters, problems: scrape.failures.slice(0, 20) };
  } catch (error) {
    // Listing the exporter pods was refused or failed: the report goes out with allocations only.
    return { gpus: null, exporters: 0, problems: [`finding the DCGM exporter pods failed: ${(error as Error).message}`.slice(0, 500)] };
  }
}

/**
 * Reads the cluster's nodes and pods and sums up what it has and what is in use; scrapes the DCGM
 * exporters when the cluster runs them (settings: dcgm.ts, from the environment by default).
 */
export async function collectClusterStatus(core: CoreV1Api, dcgm: DcgmSettings = dcgmSettingsFromEnv()): Promise<ClusterStatusReport> {
  const [nodeList, podList, dcgmScrape] = await Promise.all([listAllNodes(core), listAllPods(core), gpuMetricsOf(core, dcgm)]);

  const nodes = nodeList.map((node): ClusterNodeStatus => ({
    name: node.metadata?.name ?? '',
    ready: isReady(node),
    gpuCapacity: resourceOf(node.status?.capacity, GPU_RESOURCE),
    gpuAllocatable: resourceOf(node.status?.allocatable, GPU_RESOURCE),
    gpuProduct: node.metadata?.labels?.[GPU_PRODUCT_LABEL] ?? null,
    gpuMemoryBytes: gpuMemoryOf(node),
    cpuCores: resourceOf(node.status?.capacity, 'cpu'),
    memoryBytes: resourceOf(node.status?.capacity, 'memory'),
  }));

  const gpuPods = podList
    .map((pod) => ({
      namespace: pod.metadata?.namespace ?? '',
      name: pod.metadata?.name ?? '',
      gpus: gpusOfPod(pod),
      phase: pod.status?.phase ?? 'Unknown',
      nodeName: pod.spec?.nodeName || null,
      workload: workloadOf(pod),
      terminated: isTerminated(pod),
    }))
    .filter((pod) => pod.gpus > 0);

  const provisionable = new Map<string, ClusterStatusReport['provisionableResources'][number]>();
  for (const node of nodeList) {
    const labels = node.metadata?.labels;
    const instanceFamily = firstLabel(labels, INSTANCE_FAMILY_LABELS);
    const instanceType = firstLabel(labels, INSTANCE_TYPE_LABELS);
    if (instanceFamily === null && instanceType === null) continue;
    provisionable.set(JSON.stringify([instanceFamily, instanceType]), { instanceFamily, instanceType });
  }

  return {
    nodes,
    gpuCapacity: nodes.filter((n) => n.ready).reduce((sum, n) => sum + n.gpuAllocatable, 0),
    gpuAllocated: gpuPods.filter((p) => !p.terminated).reduce((sum, p) => sum + p.gpus, 0),
    gpuPods: gpuPods.map(({ terminated: _, ...pod }) => pod),
    provisionableResources: [...provisionable.values()],
    gpuMetrics: dcgmScrape.gpus,
    dcgmExporters: dcgmScrape.exporters,
    dcgmProblems: dcgmScrape.problems,
  };
}
