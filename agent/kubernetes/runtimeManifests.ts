/**
 * The manifests of an inference runtime on Kubernetes: one StatefulSet and one ClusterIP Service per
 * active model (LLMariner §1, inference-manager engine: "each model gets its own StatefulSet").
 *
 * - Runtime by the model's formats: HUGGING_FACE → vLLM (`vllm.entrypoints.openai.api_server`),
 *   GGUF → the llama.cpp server (`llama-server`: any GGUF llama.cpp reads, as the local executor's
 *   node-llama-cpp does; vLLM's GGUF support is experimental and wants the base model's tokenizer),
 *   OLLAMA → Ollama. Each listens on port 8000 and answers the OpenAI API under the model's id. A
 *   Whisper model in Hugging Face format is a HUGGING_FACE model like any other: vLLM recognises its
 *   architecture and serves `/v1/audio/transcriptions`, where transcriptions pass through.
 * - Weights: an init container copies the model from the platform's S3 store into an `emptyDir` at
 *   /models (`aws s3 cp`, credentials from a Secret). A filesystem store cannot be reached from pods
 *   (a hostPath is one node's disk, a PVC one cluster's): Kubernetes runtimes need the S3 driver.
 *   Ollama models are pulled by Ollama itself from its registry into the same volume.
 * - Every manifest passes `validateManifest`; a spec hash annotation tells the host when to replace.
 */
import { createHash } from 'node:crypto';
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IService } from 'kubernetes-models/v1/Service';
import type { ObjectStoreConfig } from '../../lib/config.js';
import type { ActiveModel } from '../executor.js';
import { MANAGED_BY_LABELS, validateManifest } from './manifests.js';
import { adapterCopyContainer, llamaCppLoraArgs, type LlamaCppAdapter } from './llamaCppAdapters.js';
import { adapterSyncContainer, adaptersListVolume, servesAdapters, VLLM_LORA_ENV, vllmLoraArgs } from './vllmAdapters.js';

/** Images of the runtimes and of the weights copier; each can be replaced (a mirror, a pinned tag). */
export interface RuntimeImages {
  /** Hugging Face models. */
  vllm: string;
  /** GGUF models without GPUs. */
  llamaCpp: string;
  /** GGUF models with GPUs (layers offloaded with `--n-gpu-layers`). */
  llamaCppCuda: string;
  ollama: string;
  /** Copies weights from S3 (runs `aws s3 cp`). */
  s3Copier: string;
}

export const DEFAULT_RUNTIME_IMAGES: RuntimeImages = {
  vllm: 'vllm/vllm-openai:latest',
  llamaCpp: 'ghcr.io/ggml-org/llama.cpp:server',
  llamaCppCuda: 'ghcr.io/ggml-org/llama.cpp:server-cuda',
  ollama: 'ollama/ollama:latest',
  s3Copier: 'amazon/aws-cli:latest',
};

/** Where runtime pods read model weights from. */
export interface RuntimeWeightsSource {
  /** The platform's object store (lib/config); only the S3 driver is reachable from pods. */
  objectStore: ObjectStoreConfig;
  /**
   * A Secret in the runtime namespace whose keys become the copier's environment
   * (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); none: the pod's own identity (IRSA, instance role).
   */
  credentialsSecret?: string | undefined;
}

export type RuntimeKind = 'vllm' | 'llama-cpp' | 'ollama';

/** The port every runtime container listens on, and the Service's port. */
export const RUNTIME_PORT = 8000;
/** Labels and annotations of runtime objects. */
export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const RUNTIME_COMPONENT = 'inference-runtime';
export const MODEL_ID_HASH_LABEL = 'mariner.io/model-id-hash';
export const RUNTIME_LABEL = 'mariner.io/runtime';
export const MODEL_ID_ANNOTATION = 'mariner.io/model-id';
export const SPEC_HASH_ANNOTATION = 'mariner.io/spec-hash';
/** Selects every runtime object the host owns (and nothing else the agent or anyone else made). */
export const RUNTIME_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY_LABELS['app.kubernetes.io/managed-by']},${COMPONENT_LABEL}=${RUNTIME_COMPONENT}`;

const MODELS_DIR = '/models';

/** A model this host cannot run, and why (reported as the model's status). */
export class UnrunnableModelError extends Error {
  override readonly name = 'UnrunnableModelError';
}

/** A label-safe hash of a model id: 16 hex digits of its SHA-256. */
export function modelIdHash(modelId: string): string {
  return createHash('sha256').update(modelId).digest('hex').slice(0, 16);
}

/**
 * The StatefulSet's and Service's name: `rt-<slug>-<hash>`, a DNS-1035 label that is stable for a model
 * id and unique (the hash tells `Llama` from `llama`). At most 52 characters: a StatefulSet's pods carry
 * a `controller-revision-hash` label of `<name>-<10 characters>`, which must fit a 63-character label.
 */
export function runtimeName(modelId: string): string {
  const slug = modelId
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, 38)
    .replace(/^-+|-+$/g, '');
  return `rt-${slug ? `${slug}-` : ''}${modelIdHash(modelId).slice(0, 10)}`;
}

/** Which runtime serves a model, from its formats (a Hugging Face folder first: vLLM serves it best). */
export function runtimeKindOf(model: Pick<ActiveModel, 'formats'>): RuntimeKind {
  if (model.formats.includes('HUGGING_FACE')) return 'vllm';
  if (model.formats.includes('GGUF')) return 'llama-cpp';
  if (model.formats.includes('OLLAMA')) return 'ollama';
  if (model.formats.includes('WHISPER_GGML')) {
    throw new UnrunnableModelError(
      "a Whisper model in whisper.cpp's ggml format runs on the local executor only; on Kubernetes use the model in Hugging Face format (vLLM serves /v1/audio/transcriptions)",
    );
  }
  throw new UnrunnableModelError(
    `no Kubernetes runtime serves the formats [${model.formats.join(', ')}] (vLLM: HUGGING_FACE, llama.cpp: GGUF, Ollama: OLLAMA)`,
  );
}

/**
 * The `s3://bucket/key` of a model's weights: an s3:// source as it is, a key relative to the store
 * under the store's bucket and prefix. A filesystem store (`file://`) cannot be read from a pod.
 */
export function s3UriOf(source: string, objectStore: ObjectStoreConfig): string {
  if (source.startsWith('s3://')) return source;
  if (objectStore.driver !== 's3' || source.includes('://') || source.startsWith('/')) {
    throw new UnrunnableModelError(
      `Kubernetes runtimes read model weights from S3, and ${source.slice(0, 200)} is not in an S3 store: run the platform with MARINER_OBJECT_STORE=s3`,
    );
  }
  const key = source.replace(/^\/+/, '');
  return `s3://${objectStore.bucket}/${objectStore.prefix ? `${objectStore.prefix}/` : ''}${key}`;
}

/** Ollama model names (`name[:tag]`, ollama/types/model/name.go), the name the model is served under. */
const OLLAMA_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,79})?$/;

interface RuntimePlan {
  kind: RuntimeKind;
  /** Copies (or pulls) the weights into /models. */
  initContainer: IContainer;
  container: IContainer;
  /** Beside the runtime: vLLM's LoRA adapters' copier (vllmAdapters.ts). */
  sidecars?: IContainer[];
  /** After the weights: llama.cpp's LoRA adapters' copy (llamaCppAdapters.ts). */
  adaptersInit?: IContainer;
}

function copierContainer(model: ActiveModel, weights: RuntimeWeightsSource, images: RuntimeImages, file: boolean): IContainer {
  const uri = s3UriOf(model.source, weights.objectStore);
  const store = weights.objectStore.driver === 's3' ? weights.objectStore : undefined;
  // Values reach the shell as environment variables, never spliced into the script.
  const env = [
    // A Hugging Face model is a folder: the objects under `<key>/`; a GGUF model one object.
    { name: 'SOURCE', value: file ? uri : `${uri.replace(/\/+$/, '')}/` },
    { name: 'TARGET', value: file ? `${MODELS_DIR}/model.gguf` : `${MODELS_DIR}/model` },
    { name: 'AWS_CONFIG_FILE', value: '/tmp/aws/config' },
    ...(store ? [{ name: 'AWS_REGION', value: store.region }] : []),
    ...(store?.endpoint ? [{ name: 'AWS_ENDPOINT_URL', value: store.endpoint }] : []),
    ...(store?.forcePathStyle ? [{ name: 'S3_PATH_STYLE', value: 'true' }] : []),
  ];
  const script = [
    'set -eu',
    // S3-compatible stores (MinIO, Ceph) addressed by path, as the platform's own client does.
    'if [ "${S3_PATH_STYLE:-}" = true ]; then aws configure set default.s3.addressing_style path; fi',
    file ? 'aws s3 cp --only-show-errors "$SOURCE" "$TARGET"' : 'aws s3 cp --recursive --only-show-errors "$SOURCE" "$TARGET"',
  ].join('\n');
  return {
    name: 'copy-weights',
    image: images.s3Copier,
    command: ['/bin/sh', '-c', script],
    env,
    ...(weights.credentialsSecret ? { envFrom: [{ secretRef: { name: weights.credentialsSecret } }] } : {}),
    volumeMounts: [{ name: 'models', mountPath: MODELS_DIR }],
  };
}

function gpuResources(gpu: number) {
  return gpu > 0 ? { resources: { limits: { 'nvidia.com/gpu': String(gpu) } } } : {};
}

function readinessProbe(path: string) {
  // Loading a large model takes minutes: the probe keeps trying; the pod is simply not ready meanwhile.
  return { httpGet: { path, port: 'http' }, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 };
}

function planOf(model: ActiveModel, weights: RuntimeWeightsSource, images: RuntimeImages, llamaCppAdapters: readonly LlamaCppAdapter[]): RuntimePlan {
  const kind = runtimeKindOf(model);
  const ports = [{ name: 'http', containerPort: RUNTIME_PORT, protocol: 'TCP' as const }];
  const volumeMounts = [{ name: 'models', mountPath: MODELS_DIR }];
  switch (kind) {
    case 'vllm': {
      // vLLM splits a model over the pod's GPUs with tensor parallelism (LLMariner's vLLM runtime does too).
      const parallel =
        model.gpu > 1 && !model.extraArgs.some((arg) => arg.startsWith('--tensor-parallel-size')) ? ['--tensor-parallel-size', String(model.gpu)] : [];
      const copier = copierContainer(model, weights, images, false);
      // A model with LoRA adapters: loaded at run time (vllmAdapters.ts), copied in by a sidecar.
      const lora = servesAdapters(model);
      return {
        kind,
        initContainer: copier,
        container: {
          name: 'runtime',
          image: images.vllm,
          // The module every vLLM image ships, whatever its entrypoint (`vllm serve` in newer ones).
          command: ['python3', '-m', 'vllm.entrypoints.openai.api_server'],
          args: [
            '--model',
            `${MODELS_DIR}/model`,
            '--served-model-name',
            model.id,
            '--port',
            String(RUNTIME_PORT),
            ...parallel,
            ...(lora ? vllmLoraArgs(model.extraArgs) : []),
            ...model.extraArgs,
          ],
          ...(lora ? { env: [VLLM_LORA_ENV] } : {}),
          ports,
          ...gpuResources(model.gpu),
          readinessProbe: readinessProbe('/health'),
          volumeMounts: [...volumeMounts, { name: 'shm', mountPath: '/dev/shm' }],
        },
        ...(lora ? { sidecars: [adapterSyncContainer(copier)] } : {}),
      };
    }
    case 'llama-cpp': {
      const copier = copierContainer(model, weights, images, true);
      return {
        kind,
        initContainer: copier,
        // LoRA adapters are loaded at start only (llamaCppAdapters.ts): their files are copied first.
        ...(llamaCppAdapters.length > 0 ? { adaptersInit: adapterCopyContainer(copier, llamaCppAdapters) } : {}),
        container: {
          name: 'runtime',
          image: model.gpu > 0 ? images.llamaCppCuda : images.llamaCpp,
          args: [
            '--model',
            `${MODELS_DIR}/model.gguf`,
            '--alias',
            model.id,
            '--host',
            '0.0.0.0',
            '--port',
            String(RUNTIME_PORT),
            ...(model.gpu > 0 ? ['--n-gpu-layers', '999'] : []),
            ...llamaCppLoraArgs(llamaCppAdapters),
            ...model.extraArgs,
          ],
          ports,
          ...gpuResources(model.gpu),
          // 503 while the model loads, 200 once it serves (llama.cpp tools/server).
          readinessProbe: readinessProbe('/health'),
          volumeMounts,
        },
      };
    }
    case 'ollama': {
      if (!OLLAMA_NAME.test(model.id)) throw new UnrunnableModelError(`Ollama cannot serve a model named ${model.id} (an Ollama name is name[:tag])`);
      const ollamaEnv = [{ name: 'OLLAMA_MODELS', value: MODELS_DIR }];
      // Ollama pulls from its registry; the copy is then named after the model's id, the name requests use.
      const script = [
        'set -eu',
        'ollama serve & server=$!',
        'until ollama list >/dev/null 2>&1; do sleep 1; done',
        'ollama pull "$SOURCE"',
        'ollama cp "$SOURCE" "$MODEL_ID"',
        'kill "$server"',
      ].join('\n');
      return {
        kind,
        initContainer: {
          name: 'pull-model',
          image: images.ollama,
          command: ['/bin/sh', '-c', script],
          env: [
            ...ollamaEnv,
            { name: 'OLLAMA_HOST', value: '127.0.0.1:11434' },
            { name: 'SOURCE', value: model.source },
            { name: 'MODEL_ID', value: model.id },
          ],
          volumeMounts,
        },
        container: {
          name: 'runtime',
          image: images.ollama,
          args: ['serve'],
          env: [...ollamaEnv, { name: 'OLLAMA_HOST', value: `0.0.0.0:${RUNTIME_PORT}` }],
          ports,
          ...gpuResources(model.gpu),
          readinessProbe: readinessProbe('/'),
          volumeMounts,
        },
      };
    }
  }
}

/** What the host applies for one model: its StatefulSet and Service, validated, with their spec hashes. */
export interface RuntimeManifests {
  name: string;
  kind: RuntimeKind;
  statefulSet: IStatefulSet;
  service: IService;
}

/** The hash of what a manifest asks for, replicas aside (they change through the scale subresource). */
export function specHash(manifest: { metadata?: { labels?: Record<string, string> | undefined } | undefined; spec?: unknown }): string {
  const { replicas: _replicas, ...spec } = (manifest.spec ?? {}) as Record<string, unknown>;
  return createHash('sha256')
    .update(JSON.stringify({ labels: manifest.metadata?.labels ?? {}, spec }))
    .digest('hex')
    .slice(0, 16);
}

/**
 * The StatefulSet and Service of one model, validated. Throws UnrunnableModelError when no runtime
 * here can serve the model (its formats, a source outside S3, a GPU count that is not a whole number).
 */
export function runtimeManifests(
  model: ActiveModel,
  options: {
    namespace: string;
    weights: RuntimeWeightsSource;
    images: RuntimeImages;
    /** A llama.cpp model's LoRA adapters, in the order of their `--lora` flags (llamaCppAdapters.ts). */
    llamaCppAdapters?: readonly LlamaCppAdapter[];
  },
): RuntimeManifests {
  if (!Number.isInteger(model.gpu) || model.gpu < 0) throw new UnrunnableModelError(`a runtime pod takes whole GPUs, not ${model.gpu}`);
  if (!Number.isInteger(model.replicas) || model.replicas < 0) throw new UnrunnableModelError(`replicas must be a whole number, not ${model.replicas}`);
  const plan = planOf(model, options.weights, options.images, options.llamaCppAdapters ?? []);
  const name = runtimeName(model.id);
  const selector = { [COMPONENT_LABEL]: RUNTIME_COMPONENT, [MODEL_ID_HASH_LABEL]: modelIdHash(model.id) };
  const labels = { ...MANAGED_BY_LABELS, ...selector, [RUNTIME_LABEL]: plan.kind };
  const annotations = { [MODEL_ID_ANNOTATION]: model.id };
  const metadata = () => ({ name, namespace: options.namespace, labels, annotations });

  const volumes = [
    { name: 'models', emptyDir: {} },
    // vLLM's workers share tensors through /dev/shm, which a container runtime caps at 64 MiB.
    ...(plan.kind === 'vllm' ? [{ name: 'shm', emptyDir: { medium: 'Memory' } }] : []),
    ...(plan.sidecars ? [adaptersListVolume(name)] : []),
  ];
  const tolerations = model.gpu > 0 ? [{ key: 'nvidia.com/gpu', operator: 'Exists' as const, effect: 'NoSchedule' as const }] : [];
  const statefulSet: IStatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: metadata(),
    spec: {
      replicas: model.replicas,
      serviceName: name,
      // Replicas start together (the default, OrderedReady, would copy weights one pod after another).
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: selector },
      template: {
        metadata: { labels, annotations },
        spec: {
          initContainers: [plan.initContainer, ...(plan.adaptersInit ? [plan.adaptersInit] : [])],
          containers: [plan.container, ...(plan.sidecars ?? [])],
          volumes,
          ...(tolerations.length > 0 ? { tolerations } : {}),
        },
      },
    },
  };
  const service: IService = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(),
    spec: { type: 'ClusterIP', selector, ports: [{ name: 'http', port: RUNTIME_PORT, targetPort: 'http', protocol: 'TCP' }] },
  };
  for (const manifest of [statefulSet, service]) {
    manifest.metadata!.annotations = { ...annotations, [SPEC_HASH_ANNOTATION]: specHash(manifest) };
    validateManifest(manifest);
  }
  return { name, kind: plan.kind, statefulSet, service };
}
