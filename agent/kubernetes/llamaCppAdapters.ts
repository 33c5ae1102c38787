/**
 * LoRA adapters on llama.cpp runtime pods (issue 18): fine-tuned models in GGUF_ADAPTER format served on
 * their GGUF base model's pods, without a pod per adapter.
 *
 * - llama.cpp's server loads adapters at start only (`--lora <file>`, one per adapter; tools/server
 *   README), so, unlike vLLM (vllmAdapters.ts), a new adapter restarts the pods: the StatefulSet's spec
 *   lists the adapters, a change rolls the pods. `--lora-init-without-apply` starts every adapter at
 *   scale 0, and each request picks its own with the request field `lora: [{id, scale}]`, `id` being the
 *   adapter's position in the `--lora` flags (the server's `GET /lora-adapters` lists them in that order).
 * - The adapters' GGUF files are copied in by an init container (the weights copier's image) from S3:
 *   a `.gguf` object as it is, a job's output folder its first `.gguf` (as the local executor does). A
 *   PEFT-only adapter (no GGUF file) cannot be served by llama.cpp: its request is refused with a 400
 *   when the control plane says its formats (`x-mariner-adapter-formats`), else the init container fails
 *   with the reason, which the runtime's status shows.
 * - Which adapters a model's pods start with: those the control plane lists as served (`loraAdapters`)
 *   whose source the agent has seen (an `ft:` request carries it), kept in the ConfigMap
 *   `<runtime>-adapters` (lines `<folder> <s3 uri>`, as for vLLM), so an agent restart rebuilds them.
 * - An `ft:` request: the adapter is listed (a first one restarts the pods, and the request waits as for
 *   a runtime starting), then it goes to a ready pod started with the adapter, its body rewritten: `model`
 *   the base model, `lora` the adapter's position in THAT pod's flags (pods of an older spec may still run
 *   during a roll, with other positions).
 */
import type { CoreV1Api, V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { Logger } from '../../lib/logging.js';
import type { InFlightCounts } from '../../lib/requestTracker.js';
import type { ActiveModel } from '../executor.js';
import { statusCode } from './apiErrors.js';
import { adapterFolder, adaptersConfigMapName } from './vllmAdapters.js';

const ADAPTERS_DIR = '/models/adapters';
const LIST_KEY = 'adapters';

/** An adapter a llama.cpp pod starts with: its id and where its GGUF file (or folder holding one) is in S3. */
export interface LlamaCppAdapter {
  id: string;
  uri: string;
}

/** The file of an adapter in the pod. */
export const adapterFile = (adapterId: string) => `${ADAPTERS_DIR}/${adapterFolder(adapterId)}.gguf`;

/** The server's flags for its adapters, in their given order (their ids in requests), none applied by default. */
export function llamaCppLoraArgs(adapters: readonly LlamaCppAdapter[]): string[] {
  if (adapters.length === 0) return [];
  return [...adapters.flatMap((adapter) => ['--lora', adapterFile(adapter.id)]), '--lora-init-without-apply'];
}

/** The init container copying the adapters' GGUF files; `copier` is the weights copier's container (image, env, credentials). */
export function adapterCopyContainer(copier: IContainer, adapters: readonly LlamaCppAdapter[]): IContainer {
  const script = [
    'set -eu',
    'if [ "${S3_PATH_STYLE:-}" = true ]; then aws configure set default.s3.addressing_style path; fi',
    `mkdir -p ${ADAPTERS_DIR}`,
    'printf "%s\\n" "$ADAPTERS" | while read -r folder uri; do',
    '  [ -n "$folder" ] || continue',
    '  case "$uri" in',
    `    *.gguf|*.GGUF) aws s3 cp --only-show-errors "$uri" "${ADAPTERS_DIR}/$folder.gguf" ;;`,
    `    *) rm -rf "${ADAPTERS_DIR}/.$folder"`,
    `       aws s3 cp --recursive --only-show-errors --exclude "*" --include "*.gguf" "\${uri%/}/" "${ADAPTERS_DIR}/.$folder/"`,
    `       file=$(find "${ADAPTERS_DIR}/.$folder" -name "*.gguf" -type f 2>/dev/null | sort | head -n 1)`,
    '       if [ -z "$file" ]; then echo "the LoRA adapter at $uri has no GGUF file: llama.cpp serves GGUF LoRA adapters only" | tee /dev/termination-log >&2; exit 1; fi',
    `       mv "$file" "${ADAPTERS_DIR}/$folder.gguf"; rm -rf "${ADAPTERS_DIR}/.$folder" ;;`,
    '  esac',
    'done',
  ].join('\n');
  return {
    name: 'copy-adapters',
    image: copier.image!,
    command: ['/bin/sh', '-c', script],
    env: [
      ...(copier.env ?? []).filter((e) => e.name !== 'SOURCE' && e.name !== 'TARGET'),
      // Values reach the shell as an environment variable, never spliced into the script.
      { name: 'ADAPTERS', value: adapters.map((adapter) => `${adapterFolder(adapter.id)} ${adapter.uri}\n`).join('') },
    ],
    ...(copier.envFrom ? { envFrom: copier.envFrom } : {}),
    volumeMounts: [{ name: 'models', mountPath: '/models' }],
  };
}

/** An adapter llama.cpp cannot serve (a 400 for its request, naming it). */
export class UnservableAdapterError extends Error {
  override readonly name = 'UnservableAdapterError';
}

export interface LlamaCppAdaptersOptions {
  core: CoreV1Api;
  namespace: string;
  logger: Logger;
  /** The base URL of a pod's runtime; tests point it at a local server. */
  podUrl: (pod: V1Pod) => string | undefined;
  /** Applies the model's runtime again (the host's reconcile with its current models): the pods restart with the new list. */
  restart: () => Promise<void>;
  /** How long a request waits for a pod started with its adapter (default 600 s: the pods restart). */
  loadTimeoutMs?: number;
  /** Between two looks at the pods (default 1 s). */
  retryMs?: number;
}

/** A pod to send an adapter's request to, and the adapter's id in that pod's `--lora` flags. */
export interface LlamaCppTarget {
  name: string;
  url: string;
  loraId: number;
}

/**
 * The served adapters a runtime's pods start with, from its StatefulSet's runtime container args, in
 * their `--lora` order: `A, B`, or '' when none. For the runtime's status.
 */
export function startedText(args: readonly string[] | undefined, model: ActiveModel): string {
  const files = (args ?? []).flatMap((arg, i, all) => (arg === '--lora' && i + 1 < all.length ? [all[i + 1]] : []));
  return files.flatMap((file) => (model.loraAdapters ?? []).filter((id) => adapterFile(id) === file)).join(', ');
}

/** The position of an adapter's file among a pod's `--lora` flags, or -1. */
function loraIdIn(pod: V1Pod, adapterId: string): number {
  const args = pod.spec?.containers?.find((c) => c.name === 'runtime')?.args ?? [];
  const files = args.flatMap((arg, i) => (arg === '--lora' && i + 1 < args.length ? [args[i + 1]] : []));
  return files.indexOf(adapterFile(adapterId));
}

/** The adapters of a model's llama.cpp pods: which ones they start with, where an `ft:` request goes. */
export class LlamaCppAdapters {
  constructor(private readonly options: LlamaCppAdaptersOptions) {}

  /**
   * The adapters a model's pods start with: the served ones (in the control plane's order) whose source
   * is listed. One ConfigMap read per reconcile of a llama.cpp model that has adapters.
   */
  async startedWith(runtimeName: string, model: ActiveModel): Promise<LlamaCppAdapter[]> {
    if (!model.loraAdapters?.length) return [];
    const listed = await this.listed(runtimeName);
    return model.loraAdapters.flatMap((id) => {
      const uri = listed.get(adapterFolder(id));
      return uri ? [{ id, uri }] : [];
    });
  }

  /**
   * The pod for an adapter's request: a ready one started with it (the least busy). A first request lists
   * it and restarts the pods, then waits for one.
   */
  async podFor(
    runtimeName: string,
    selector: string,
    adapterId: string,
    s3Uri: string,
    formats: string | undefined,
    inFlight: InFlightCounts,
  ): Promise<LlamaCppTarget> {
    if (formats !== undefined && !formats.split(',').includes('GGUF_ADAPTER'))
      throw new UnservableAdapterError(
        `model ${adapterId} is a LoRA adapter in the formats [${formats}]: its base model runs on llama.cpp, which serves GGUF_ADAPTER adapters only`,
      );
    // One adapter a line in the list and in the init container's data: a line break would add another.
    if (/[\r\n]/.test(s3Uri)) throw new UnservableAdapterError(`model ${adapterId} has a source with a line break, which cannot be copied`);
    const deadline = Date.now() + (this.options.loadTimeoutMs ?? 600_000);
    let listed = false;
    for (;;) {
      const pods = await this.readyPods(selector);
      const holders = pods.flatMap((pod) => {
        const loraId = loraIdIn(pod.pod, adapterId);
        return loraId >= 0 ? [{ name: pod.name, url: pod.url, loraId }] : [];
      });
      const chosen = holders.sort((a, b) => inFlight.get(a.name) - inFlight.get(b.name))[0];
      if (chosen) return chosen;
      if (!listed) {
        listed = true;
        if (await this.list(runtimeName, adapterId, s3Uri)) {
          this.options.logger.info({ runtime: runtimeName, adapter: adapterId }, 'LoRA adapter listed: the llama.cpp pods restart with it');
          await this.options.restart();
        }
      }
      if (Date.now() >= deadline) throw new Error(`no ready llama.cpp pod started with the LoRA adapter ${adapterId} yet`);
      await new Promise((resolve) => setTimeout(resolve, this.options.retryMs ?? 1_000));
    }
  }

  private async readyPods(selector: string): Promise<{ name: string; url: string; pod: V1Pod }[]> {
    const pods = (await this.options.core.listNamespacedPod({ namespace: this.options.namespace, labelSelector: selector })).items;
    return pods.flatMap((pod) => {
      const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      const url = this.options.podUrl(pod);
      return ready && url && pod.metadata?.name ? [{ name: pod.metadata.name, url, pod }] : [];
    });
  }

  /** The ConfigMap's adapters: folder → S3 URI. */
  private async listed(runtimeName: string): Promise<Map<string, string>> {
    const configMap = await this.read(runtimeName);
    const lines = (configMap?.data?.[LIST_KEY] ?? '').split('\n').filter(Boolean);
    return new Map(lines.map((line) => [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)]));
  }

  private async read(runtimeName: string): Promise<V1ConfigMap | undefined> {
    try {
      return await this.options.core.readNamespacedConfigMap({ name: adaptersConfigMapName(runtimeName), namespace: this.options.namespace });
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw error;
    }
  }

  /** Lists an adapter's source in the ConfigMap (created on the first); false when it was already. */
  private async list(runtimeName: string, adapterId: string, s3Uri: string): Promise<boolean> {
    const { core, namespace } = this.options;
    const name = adaptersConfigMapName(runtimeName);
    const line = `${adapterFolder(adapterId)} ${s3Uri}`;
    for (let attempt = 0; ; attempt++) {
      const existing = await this.read(runtimeName);
      const lines = (existing?.data?.[LIST_KEY] ?? '').split('\n').filter(Boolean);
      if (lines.includes(line)) return false;
      const next = [...lines.filter((l) => !l.startsWith(`${adapterFolder(adapterId)} `)), line];
      const data = { [LIST_KEY]: `${next.join('\n')}\n` };
      try {
        if (existing) await core.replaceNamespacedConfigMap({ name, namespace, body: { ...existing, data } });
        else
          await core.createNamespacedConfigMap({
            namespace,
            body: { metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'mariner' } }, data },
          });
        return true;
      } catch (error) {
        if (attempt < 3 && (statusCode(error) === 409 || statusCode(error) === 404)) continue;
        throw error;
      }
    }
  }
}

/**
 * A chat or completion body for llama.cpp: the base model named, the adapter applied at scale 1 by its
 * id in the pod's flags (llama.cpp tools/server: the request field `lora`, ids in `--lora` order).
 */
export function withLora(body: Buffer, baseModelId: string, loraId: number): Buffer {
  const parsed = JSON.parse(body.toString('utf8')) as unknown;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UnservableAdapterError('the request body is not a JSON object');
  return Buffer.from(JSON.stringify({ ...parsed, model: baseModelId, lora: [{ id: loraId, scale: 1 }] }));
}
