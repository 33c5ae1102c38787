/**
 * GPU utilisation from the NVIDIA DCGM exporter (https://github.com/NVIDIA/dcgm-exporter), when the
 * cluster runs it. The exporter is a DaemonSet: each of its pods serves the GPUs of its own node on
 * `:9400/metrics`, so the agent scrapes every exporter pod (as Prometheus' pod discovery does), not
 * the Service, which would answer for one node picked at random.
 *
 * Where the agent looks (docs/operations-telemetry.md):
 * - MARINER_DCGM_EXPORTER_URLS: fixed metrics URLs, comma-separated (an agent outside the cluster,
 *   an exporter on the host network); when set, nothing is discovered.
 * - else the pods matching MARINER_DCGM_EXPORTER_SELECTOR (default `app.kubernetes.io/name=dcgm-exporter`,
 *   the exporter's Helm chart; the GPU operator's is `app=nvidia-dcgm-exporter`), running, in
 *   MARINER_DCGM_EXPORTER_NAMESPACE when set, and controlled by a DaemonSet (as the exporter's chart and
 *   the GPU operator run it), at their container port named `metrics` (else their first, else 9400). A
 *   pod a project makes with the exporter's label (a federated Job's, say: a Job controls its pods, and
 *   users create no DaemonSets through /v1/sessions) is not believed; set the namespace as well where
 *   users may make DaemonSets.
 *   An empty selector turns discovery off.
 * No exporter found, or none answered: the report carries no GPU metrics and the control plane
 * counts allocations only (source ALLOCATION).
 */
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { parseExposition, type ExpositionSample } from './dcgmExposition.js';

export interface DcgmSettings {
  urls: string[];
  selector: string;
  namespace: string | null;
  /** Per scrape. */
  timeoutMs: number;
}

/** One GPU as DCGM last measured it. */
export interface GpuMetric {
  /** The node it is in: the exporter pod's node, else the exporter's `Hostname` label. */
  node: string;
  uuid: string;
  /** `gpu`: the device's index on its node. */
  index: number;
  modelName: string | null;
  /** DCGM_FI_DEV_GPU_UTIL: percent of the last sample period the GPU was busy, 0-100. */
  utilization: number;
  /** DCGM_FI_DEV_FB_USED (MiB), in bytes; null when not exported. */
  memoryUsedBytes: number | null;
  /** FB_USED + FB_FREE (+ FB_RESERVED where exported), in bytes; null when not exported. */
  memoryTotalBytes: number | null;
  /** The pod using the GPU (the exporter's Kubernetes mapping, DCGM_EXPORTER_KUBERNETES); null when idle or unmapped. */
  namespace: string | null;
  pod: string | null;
}

export interface DcgmScrape {
  /** Exporters asked. */
  exporters: number;
  /** GPUs of the exporters that answered; null when none was found or none answered. */
  gpus: GpuMetric[] | null;
  /** What went wrong with the others (one line each). */
  failures: string[];
}

export const DEFAULT_DCGM_SELECTOR = 'app.kubernetes.io/name=dcgm-exporter';
const DEFAULT_PORT = 9400;
const MIB = 2 ** 20;
/** A node's exporter answers in tens of KiB; more is not an exporter. */
const MAX_BODY_BYTES = 16 * MIB;
const CONCURRENCY = 8;

export function dcgmSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): DcgmSettings {
  const urls = (env.MARINER_DCGM_EXPORTER_URLS ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  for (const url of urls) {
    const protocol = new URL(url).protocol;
    if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`MARINER_DCGM_EXPORTER_URLS: ${url} is not an http(s) URL`);
  }
  return {
    urls,
    selector: env.MARINER_DCGM_EXPORTER_SELECTOR ?? DEFAULT_DCGM_SELECTOR,
    namespace: env.MARINER_DCGM_EXPORTER_NAMESPACE?.trim() || null,
    timeoutMs: 5_000,
  };
}

interface Exporter {
  url: string;
  /** The node of the exporter pod; null for a configured URL. */
  node: string | null;
}

/** Whether a DaemonSet controls the pod (its controller reference: set by the controller that made it, one per pod). */
const fromDaemonSet = (pod: V1Pod) => (pod.metadata?.ownerReferences ?? []).some((owner) => owner.controller === true && owner.kind === 'DaemonSet');

function exporterOf(pod: V1Pod): Exporter | null {
  const ip = pod.status?.podIP;
  if (pod.status?.phase !== 'Running' || !ip || pod.metadata?.deletionTimestamp || !fromDaemonSet(pod)) return null;
  const ports = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []);
  const port = ports.find((p) => p.name === 'metrics')?.containerPort ?? ports[0]?.containerPort ?? DEFAULT_PORT;
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return { url: `http://${host}:${port}/metrics`, node: pod.spec?.nodeName ?? null };
}

async function findExporters(core: CoreV1Api, settings: DcgmSettings): Promise<Exporter[]> {
  if (settings.urls.length > 0) return settings.urls.map((url) => ({ url, node: null }));
  if (!settings.selector) return [];
  const pods = settings.namespace
    ? await core.listNamespacedPod({ namespace: settings.namespace, labelSelector: settings.selector })
    : await core.listPodForAllNamespaces({ labelSelector: settings.selector });
  return pods.items.map(exporterOf).filter((e): e is Exporter => e !== null);
}

async function fetchMetrics(url: string, timeoutMs: number): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'text/plain;version=0.0.4' } });
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`${url} answered ${response.status}`);
  }
  const reader = response.body!.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel();
      throw new Error(`${url} answered more than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const FAMILIES = {
  DCGM_FI_DEV_GPU_UTIL: 'utilization',
  DCGM_FI_DEV_FB_USED: 'used',
  DCGM_FI_DEV_FB_FREE: 'free',
  DCGM_FI_DEV_FB_RESERVED: 'reserved',
} as const;

/** The GPUs of one exporter's answer; `node` (the exporter pod's) wins over the `Hostname` label. */
export function gpuMetricsOf(samples: ExpositionSample[], node: string | null): GpuMetric[] {
  const gpus = new Map<string, { labels: Record<string, string>; values: Partial<Record<(typeof FAMILIES)[keyof typeof FAMILIES], number>> }>();
  for (const sample of samples) {
    const field = FAMILIES[sample.name as keyof typeof FAMILIES];
    if (!field || !Number.isFinite(sample.value)) continue;
    const { labels } = sample;
    const key = labels.UUID || `${labels.Hostname ?? ''}/${labels.gpu ?? ''}`;
    const gpu = gpus.get(key) ?? { labels, values: {} };
    // A shared GPU (time-slicing) has a series per pod using it: the first pod names it.
    if (!gpu.labels.pod && labels.pod) gpu.labels = labels;
    gpu.values[field] = sample.value;
    gpus.set(key, gpu);
  }
  const metrics: GpuMetric[] = [];
  for (const [key, { labels, values }] of gpus) {
    if (values.utilization === undefined) continue;
    const hasMemory = values.used !== undefined && values.free !== undefined;
    metrics.push({
      node: node ?? labels.Hostname ?? '',
      uuid: labels.UUID || key,
      index: Number.parseInt(labels.gpu ?? '', 10) || 0,
      modelName: labels.modelName || null,
      utilization: Math.min(100, Math.max(0, values.utilization)),
      memoryUsedBytes: values.used === undefined ? null : values.used * MIB,
      memoryTotalBytes: hasMemory ? (values.used! + values.free! + (values.reserved ?? 0)) * MIB : null,
      namespace: labels.namespace || null,
      pod: labels.pod || null,
    });
  }
  return metrics.filter((m) => m.node !== '').sort((a, b) => a.node.localeCompare(b.node) || a.index - b.index);
}

/** Finds the cluster's DCGM exporters and reads every one (a few at a time); the GPUs of those that answered. */
export async function scrapeDcgm(core: CoreV1Api, settings: DcgmSettings): Promise<DcgmScrape> {
  const exporters = await findExporters(core, settings);
  const failures: string[] = [];
  const byUuid = new Map<string, GpuMetric>();
  let answered = 0;
  let next = 0;
  const worker = async () => {
    while (next < exporters.length) {
      const exporter = exporters[next++]!;
      try {
        const exposition = parseExposition(await fetchMetrics(exporter.url, settings.timeoutMs));
        answered++;
        for (const gpu of gpuMetricsOf(exposition.samples, exporter.node)) byUuid.set(gpu.uuid, gpu);
      } catch (error) {
        failures.push(`DCGM exporter ${exporter.url}: ${(error as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, exporters.length) }, worker));
  const gpus = answered === 0 ? null : [...byUuid.values()].sort((a, b) => a.node.localeCompare(b.node) || a.index - b.index);
  return { exporters: exporters.length, gpus, failures };
}
