/**
 * LoRA adapters on vLLM runtime pods (issue 18): fine-tuned models served on their base model's pods,
 * loaded at run time, without a pod per adapter.
 *
 * - The pods of a vLLM model that has adapters run with `--enable-lora` (and `--max-loras` 4,
 *   `--max-lora-rank` 16, unless the model config's extraArgs set them) and
 *   VLLM_ALLOW_RUNTIME_LORA_UPDATING, which turns on vLLM's `POST /v1/load_lora_adapter` and
 *   `/v1/unload_lora_adapter` (vLLM docs, "Dynamically serving LoRA Adapters").
 * - vLLM loads an adapter from a folder in the pod. A sidecar (the weights copier's image) copies each
 *   adapter listed in the model's ConfigMap `<runtime>-adapters` (a line `<folder> <s3 uri>` each, written
 *   by the agent) from S3 into /models/adapters/<folder>, so no pod restarts for a new adapter.
 * - An `ft:` request goes to a ready pod holding its adapter (the least busy), else to the pod holding the
 *   fewest adapters: the agent lists the adapter in the ConfigMap and calls load_lora_adapter on that pod
 *   until the sidecar has the files (the request waits, as for a runtime starting), then forwards to the
 *   pod itself. Adapters no longer served are unloaded from the pods and dropped from the ConfigMap.
 */
import { createHash } from 'node:crypto';
import type { CoreV1Api, V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { Logger } from '../../lib/logging.js';
import type { InFlightCounts } from '../../lib/requestTracker.js';
import type { ActiveModel } from '../executor.js';
import { statusCode } from './apiErrors.js';

export const ADAPTERS_DIR = '/models/adapters';
const LIST_DIR = '/etc/mariner-adapters';
const LIST_KEY = 'adapters';

/** The folder of an adapter in the pod (a hash of its id: safe in a path and a shell word). */
export const adapterFolder = (adapterId: string) => createHash('sha256').update(adapterId).digest('hex').slice(0, 24);

/** The ConfigMap listing the adapters a model's pods copy. */
export const adaptersConfigMapName = (runtimeName: string) => `${runtimeName}-adapters`;

/** Whether a vLLM model's pods serve LoRA adapters: it has some. */
export const servesAdapters = (model: ActiveModel) => (model.loraAdapters?.length ?? 0) > 0;

/** vLLM's LoRA flags, those the model config's extraArgs do not set already. */
export function vllmLoraArgs(extraArgs: readonly string[]): string[] {
  const has = (flag: string) => extraArgs.some((arg) => arg === flag || arg.startsWith(`${flag}=`));
  return [
    ...(has('--enable-lora') ? [] : ['--enable-lora']),
    ...(has('--max-loras') ? [] : ['--max-loras', '4']),
    ...(has('--max-lora-rank') ? [] : ['--max-lora-rank', '16']),
  ];
}

export const VLLM_LORA_ENV = { name: 'VLLM_ALLOW_RUNTIME_LORA_UPDATING', value: 'True' };

/** The ConfigMap volume the sidecar reads (optional: the agent writes it on an adapter's first request). */
export const adaptersListVolume = (runtimeName: string) => ({
  name: 'adapters-list',
  configMap: { name: adaptersConfigMapName(runtimeName), optional: true },
});

/** The sidecar copying the listed adapters into the pod; `copier` is the weights copier's container (image, env, credentials). */
export function adapterSyncContainer(copier: IContainer): IContainer {
  const script = [
    'set -u',
    'if [ "${S3_PATH_STYLE:-}" = true ]; then aws configure set default.s3.addressing_style path; fi',
    `mkdir -p ${ADAPTERS_DIR}`,
    'while :; do',
    `  if [ -f ${LIST_DIR}/${LIST_KEY} ]; then`,
    '    while read -r folder uri; do',
    `      [ -n "$folder" ] && [ ! -d "${ADAPTERS_DIR}/$folder" ] || continue`,
    `      rm -rf "${ADAPTERS_DIR}/.$folder"`,
    `      aws s3 cp --recursive --only-show-errors "$uri" "${ADAPTERS_DIR}/.$folder/" && mv "${ADAPTERS_DIR}/.$folder" "${ADAPTERS_DIR}/$folder"`,
    `    done < ${LIST_DIR}/${LIST_KEY}`,
    '  fi',
    '  sleep 2',
    'done',
  ].join('\n');
  return {
    name: 'sync-adapters',
    image: copier.image!,
    command: ['/bin/sh', '-c', script],
    env: (copier.env ?? []).filter((e) => e.name !== 'SOURCE' && e.name !== 'TARGET'),
    ...(copier.envFrom ? { envFrom: copier.envFrom } : {}),
    volumeMounts: [
      { name: 'models', mountPath: '/models' },
      { name: 'adapters-list', mountPath: LIST_DIR, readOnly: true },
    ],
  };
}

export interface VllmAdaptersOptions {
  core: CoreV1Api;
  namespace: string;
  logger: Logger;
  /** The base URL of a pod's runtime (default `http://<podIP>:8000`); tests point it at a local server. */
  podUrl: (pod: V1Pod) => string | undefined;
  /** How long a request waits for its adapter to load (default 180 s: the sidecar copies it first). */
  loadTimeoutMs?: number;
  /** Between two load attempts (default 1 s). */
  retryMs?: number;
}

interface Target {
  name: string;
  url: string;
}

/** The adapters of a model's vLLM pods: where an `ft:` request goes, loading, unloading. */
export class VllmAdapters {
  /** The adapters each pod (by name) holds, as last read from it or loaded on it. */
  private readonly held = new Map<string, { ids: Set<string>; at: number }>();

  constructor(private readonly options: VllmAdaptersOptions) {}

  /** The ready pods of a runtime, with their URLs. */
  async readyPods(selector: string): Promise<Target[]> {
    const pods = (await this.options.core.listNamespacedPod({ namespace: this.options.namespace, labelSelector: selector })).items;
    return pods.flatMap((pod) => {
      const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      const url = this.options.podUrl(pod);
      return ready && url && pod.metadata?.name ? [{ name: pod.metadata.name, url }] : [];
    });
  }

  /** The adapters a pod holds: vLLM lists them in GET /v1/models with the base as `parent`. */
  private async adaptersOf(pod: Target, maxAgeMs = 5_000): Promise<Set<string>> {
    const known = this.held.get(pod.name);
    if (known && Date.now() - known.at < maxAgeMs) return known.ids;
    const response = await fetch(`${pod.url}/v1/models`, { signal: AbortSignal.timeout(5_000) });
    if (!response.ok) throw new Error(`GET /v1/models answered ${response.status}`);
    const { data } = (await response.json()) as { data: { id: string; parent?: string | null }[] };
    const ids = new Set(data.filter((m) => m.parent).map((m) => m.id));
    this.held.set(pod.name, { ids, at: Date.now() });
    return ids;
  }

  /**
   * The base URL of the pod to send an adapter's request to, the adapter loaded there: a pod holding it
   * (the least busy), else the one holding the fewest adapters (then the least busy), which loads it.
   */
  async podFor(runtimeName: string, selector: string, adapterId: string, s3Uri: string, inFlight: InFlightCounts): Promise<Target> {
    const pods = await this.readyPods(selector);
    if (pods.length === 0) throw new Error('no ready runtime pod');
    const held = await Promise.all(pods.map(async (pod) => ({ pod, ids: await this.adaptersOf(pod).catch(() => new Set<string>()) })));
    const busy = (pod: Target) => inFlight.get(pod.name);
    const holder = held.filter((h) => h.ids.has(adapterId)).sort((a, b) => busy(a.pod) - busy(b.pod))[0];
    if (holder) return holder.pod;
    const chosen = held.sort((a, b) => a.ids.size - b.ids.size || busy(a.pod) - busy(b.pod))[0]!;
    await this.list(runtimeName, adapterId, s3Uri);
    await this.load(chosen.pod, adapterId);
    chosen.ids.add(adapterId);
    return chosen.pod;
  }

  /** Lists the adapter in the model's ConfigMap (created on the first), for the sidecars to copy. */
  private async list(runtimeName: string, adapterId: string, s3Uri: string): Promise<void> {
    const line = `${adapterFolder(adapterId)} ${s3Uri}`;
    await this.editList(runtimeName, (lines) => (lines.includes(line) ? null : [...lines, line]));
  }

  /** Rewrites the ConfigMap's list (`change` returns null: nothing to do); a conflicting write is tried again. */
  private async editList(runtimeName: string, change: (lines: string[]) => string[] | null): Promise<void> {
    const { core, namespace } = this.options;
    const name = adaptersConfigMapName(runtimeName);
    for (let attempt = 0; ; attempt++) {
      let existing: V1ConfigMap | undefined;
      try {
        existing = await core.readNamespacedConfigMap({ name, namespace });
      } catch (error) {
        if (statusCode(error) !== 404) throw error;
      }
      const lines = (existing?.data?.[LIST_KEY] ?? '').split('\n').filter(Boolean);
      const next = change(lines);
      if (!next) return;
      const data = { [LIST_KEY]: next.length > 0 ? `${next.join('\n')}\n` : '' };
      try {
        if (existing) await core.replaceNamespacedConfigMap({ name, namespace, body: { ...existing, data } });
        else
          await core.createNamespacedConfigMap({
            namespace,
            body: { metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'mariner' } }, data },
          });
        return;
      } catch (error) {
        if (attempt < 3 && (statusCode(error) === 409 || statusCode(error) === 404)) continue;
        throw error;
      }
    }
  }

  /** POST /v1/load_lora_adapter until vLLM has it (the sidecar may still be copying the files). */
  private async load(pod: Target, adapterId: string): Promise<void> {
    const deadline = Date.now() + (this.options.loadTimeoutMs ?? 180_000);
    const body = JSON.stringify({ lora_name: adapterId, lora_path: `${ADAPTERS_DIR}/${adapterFolder(adapterId)}` });
    let last = '';
    for (;;) {
      try {
        const response = await fetch(`${pod.url}/v1/load_lora_adapter`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(60_000),
        });
        const text = await response.text();
        // vLLM answers 400 "... has already been loaded" to a second load: loaded is what matters.
        if (response.ok || text.includes('already been loaded')) {
          this.options.logger.info({ pod: pod.name, adapter: adapterId }, 'LoRA adapter loaded');
          return;
        }
        last = `${response.status} ${text.slice(0, 300)}`;
      } catch (error) {
        last = (error as Error).message;
      }
      if (Date.now() >= deadline) throw new Error(`the LoRA adapter ${adapterId} did not load on pod ${pod.name}: ${last}`);
      await new Promise((resolve) => setTimeout(resolve, this.options.retryMs ?? 1_000));
    }
  }

  /**
   * The adapters each pod of a runtime holds, as last seen (no call is made): `<pod>: <ids>; ...`, or ''
   * when none holds any. For the runtime's status.
   */
  heldText(runtimeName: string): string {
    return [...this.held.entries()]
      .filter(([pod, { ids }]) => pod.startsWith(`${runtimeName}-`) && ids.size > 0)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([pod, { ids }]) => `${pod}: ${[...ids].sort().join(', ')}`)
      .join('; ');
  }

  /** Unloads from the model's pods, and drops from its ConfigMap, the adapters not in `served`. */
  async unloadGone(runtimeName: string, selector: string, served: readonly string[]): Promise<void> {
    const keep = new Set(served.map(adapterFolder));
    await this.editList(runtimeName, (lines) => {
      const next = lines.filter((line) => keep.has(line.split(' ')[0]!));
      return next.length === lines.length ? null : next;
    });
    for (const pod of await this.readyPods(selector)) {
      for (const id of await this.adaptersOf(pod, 0)) {
        if (served.includes(id)) continue;
        const response = await fetch(`${pod.url}/v1/unload_lora_adapter`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ lora_name: id }),
          signal: AbortSignal.timeout(30_000),
        });
        if (response.ok) this.held.get(pod.name)?.ids.delete(id);
        this.options.logger.info({ pod: pod.name, adapter: id, status: response.status }, 'LoRA adapter no longer served: unloaded');
      }
    }
  }
}
