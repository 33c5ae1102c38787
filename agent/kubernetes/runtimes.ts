/**
 * Inference runtimes on Kubernetes: the RuntimeHost of the Kubernetes executor, the sibling of
 * agent/localRuntimeHost.ts. One StatefulSet and one ClusterIP Service per active model in one
 * namespace (runtimeManifests.ts says what they hold), applied when they change, deleted when the
 * model is no longer active; requests go to the model's Service (LLMariner §1, inference-manager
 * engine: runtime manager and model activator).
 */
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Pod, type V1Service, type V1StatefulSet } from '@kubernetes/client-node';
import type { ObjectStoreConfig } from '../../lib/config.js';
import type { Logger } from '../../lib/logging.js';
import type { ActiveModel, RuntimeHost, RuntimeReport } from '../executor.js';
import { answerRuntimeError, forwardToRuntime } from '../forwardToRuntime.js';
import {
  DEFAULT_RUNTIME_IMAGES,
  MODEL_ID_ANNOTATION,
  MODEL_ID_HASH_LABEL,
  modelIdHash,
  RUNTIME_PORT,
  RUNTIME_SELECTOR,
  runtimeKindOf,
  runtimeManifests,
  runtimeName,
  s3UriOf,
  type RuntimeImages,
  type RuntimeManifests,
  SPEC_HASH_ANNOTATION,
  UnrunnableModelError,
} from './runtimeManifests.js';
import { InFlightCounts } from '../../lib/requestTracker.js';
import { ADAPTER_FORMATS_HEADER, ADAPTER_MODEL_HEADER, ADAPTER_SOURCE_HEADER } from '../../lib/loraAdapters.js';
import { VllmAdapters } from './vllmAdapters.js';
import { type LlamaCppAdapter, LlamaCppAdapters, startedText, UnservableAdapterError, withLora } from './llamaCppAdapters.js';
import { readBody } from '../../lib/http.js';
import type { IncomingMessage } from 'node:http';
import { ignoreNotFound, statusCode } from './apiErrors.js';

export interface KubernetesRuntimeHostOptions {
  kubeConfig: KubeConfig;
  /** Where the runtimes' StatefulSets and Services live; it must exist. */
  namespace: string;
  logger: Logger;
  /** The platform's object store, where the pods copy weights from (the S3 driver only). */
  objectStore: ObjectStoreConfig;
  /** A Secret in `namespace` with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the copy. */
  objectStoreSecret?: string | undefined;
  images?: Partial<RuntimeImages> | undefined;
  /**
   * The base URL of a model's Service. Default: its cluster DNS name, `http://<name>.<namespace>.svc:8000`
   * (the agent runs in the cluster); tests point it at a local server.
   */
  serviceUrl?: ((service: { name: string; namespace: string; port: number }) => string) | undefined;
  /** How long `forward` trusts a readiness it read (ms); a model seen not ready is read again sooner. */
  readinessTtlMs?: number | undefined;
  /** The base URL of one runtime pod (LoRA adapters go to a pod, not the Service). Default `http://<podIP>:8000`. */
  podUrl?: ((pod: V1Pod) => string | undefined) | undefined;
  /** How long an adapter's first request waits for it to load on a pod (default 180 s; llama.cpp, whose pods restart: 600 s). */
  adapterLoadTimeoutMs?: number | undefined;
  /** Between two looks at a llama.cpp model's pods while an adapter's request waits for them (default 1 s). */
  adapterRetryMs?: number | undefined;
}

function hostDefaults(options: KubernetesRuntimeHostOptions) {
  return {
    images: { ...DEFAULT_RUNTIME_IMAGES, ...options.images },
    serviceUrl: options.serviceUrl ?? (({ name, namespace, port }) => `http://${name}.${namespace}.svc:${port}`),
    readinessTtlMs: options.readinessTtlMs ?? 5_000,
  };
}

/** The apiserver's own words (a Status object's message) rather than client-node's wrapper text. */
function kubeMessage(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const message = (JSON.parse(body) as { message?: unknown }).message;
      if (typeof message === 'string') return message;
    } catch {
      // not JSON: fall through
    }
  }
  return (error as Error).message;
}

/** Why a pod is not ready, when its status says so plainly; undefined otherwise. */
export function podProblem(pod: V1Pod): string | undefined {
  const name = pod.metadata?.name ?? 'pod';
  const status = pod.status;
  const unscheduled = status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
  if (unscheduled) return `pod ${name} cannot be scheduled: ${unscheduled.message ?? unscheduled.reason ?? 'no node fits'}`;
  for (const init of status?.initContainerStatuses ?? []) {
    if (init.state?.terminated?.exitCode === 0) continue;
    const waiting = init.state?.waiting;
    if (waiting && waiting.reason !== 'PodInitializing')
      return `pod ${name}: ${init.name} ${waiting.reason ?? 'waiting'}${waiting.message ? `: ${waiting.message}` : ''}`;
    if (init.state?.running) return `pod ${name}: copying the model weights`;
  }
  for (const container of status?.containerStatuses ?? []) {
    const waiting = container.state?.waiting;
    if (waiting) return `pod ${name}: ${container.name} ${waiting.reason ?? 'waiting'}${waiting.message ? `: ${waiting.message}` : ''}`;
    if (container.state?.running && !container.ready) return `pod ${name}: loading the model`;
  }
  if (status?.phase === 'Pending') return `pod ${name} is pending`;
  return undefined;
}

/**
 * The Kubernetes RuntimeHost. `reconcile` makes the namespace's runtime objects (those labelled
 * managed-by mariner and component inference-runtime, nothing else) match the active models;
 * `status` reads each StatefulSet's replicas and, for runtimes not fully ready, the reason from their
 * pods; `forward` streams a request to the model's Service, or answers 503 when no replica is ready
 * so that the control plane tries another cluster.
 */
export function createKubernetesRuntimeHost(options: KubernetesRuntimeHostOptions): RuntimeHost {
  const { namespace, logger } = options;
  const { images, serviceUrl, readinessTtlMs } = hostDefaults(options);
  const apps = options.kubeConfig.makeApiClient(AppsV1Api);
  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const weights = { objectStore: options.objectStore, credentialsSecret: options.objectStoreSecret };
  const adapters = new VllmAdapters({
    core,
    namespace,
    logger,
    podUrl: options.podUrl ?? ((pod) => (pod.status?.podIP ? `http://${pod.status.podIP}:${RUNTIME_PORT}` : undefined)),
    ...(options.adapterLoadTimeoutMs !== undefined ? { loadTimeoutMs: options.adapterLoadTimeoutMs } : {}),
  });
  const llamaCppAdapters = new LlamaCppAdapters({
    core,
    namespace,
    logger,
    podUrl: options.podUrl ?? ((pod) => (pod.status?.podIP ? `http://${pod.status.podIP}:${RUNTIME_PORT}` : undefined)),
    // The pods restart with the adapter listed: the models of the last reconcile, applied again.
    restart: () => host.reconcile([...wanted.values()]),
    ...(options.adapterLoadTimeoutMs !== undefined ? { loadTimeoutMs: options.adapterLoadTimeoutMs } : {}),
    ...(options.adapterRetryMs !== undefined ? { retryMs: options.adapterRetryMs } : {}),
  });
  /** The label selector of one model's runtime pods. */
  const podsOf = (modelId: string) => `${RUNTIME_SELECTOR},${MODEL_ID_HASH_LABEL}=${modelIdHash(modelId)}`;
  const kindOf = (model: ActiveModel | undefined) => {
    try {
      return model === undefined ? undefined : runtimeKindOf(model);
    } catch {
      return undefined;
    }
  };
  const isVllm = (model: ActiveModel | undefined) => kindOf(model) === 'vllm';

  /** The vLLM runtimes' adapters no longer served: unloaded from their pods (vllmAdapters.ts). */
  async function unloadGoneAdapters(models: ActiveModel[]): Promise<void> {
    await Promise.all(
      models
        .filter((model) => isVllm(model) && model.loraAdapters !== undefined)
        .map((model) =>
          adapters
            .unloadGone(runtimeName(model.id), podsOf(model.id), model.loraAdapters!)
            .catch((error: unknown) => logger.warn({ modelId: model.id, err: kubeMessage(error) }, 'LoRA adapters not checked; next reconcile')),
        ),
    );
  }

  /** An adapter's request: to the pod holding it, loaded on one first when none does. */
  function forwardAdapter(modelId: string, adapter: string, source: string, req: Http2ServerRequest, res: Http2ServerResponse, runtimePath: string): void {
    let s3Uri: string;
    try {
      s3Uri = s3UriOf(source, options.objectStore);
    } catch (error) {
      return answerRuntimeError(res, 502, `the LoRA adapter of ${adapter} cannot be served here: ${(error as Error).message}`);
    }
    adapters.podFor(runtimeName(modelId), podsOf(modelId), adapter, s3Uri, podInFlight).then(
      (pod) => {
        podInFlight.track(pod.name, res.stream);
        forwardToRuntime({ baseUrl: pod.url, modelId, req, res, runtimePath });
      },
      (error: unknown) => answerRuntimeError(res, 503, `the LoRA adapter of ${adapter} is not loaded: ${kubeMessage(error)}`),
    );
  }

  /**
   * An adapter's request on a llama.cpp model: to a pod started with it (the pods restart with it first
   * when none is), the body rewritten to name the base model and apply the adapter (llamaCppAdapters.ts).
   */
  function forwardLlamaCppAdapter(
    modelId: string,
    adapter: string,
    source: string,
    req: Http2ServerRequest,
    res: Http2ServerResponse,
    runtimePath: string,
  ): void {
    const refuse = (message: string) => {
      if (res.stream.destroyed || res.headersSent) return;
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message, type: 'invalid_request_error', param: 'model', code: null } }));
    };
    let s3Uri: string;
    try {
      s3Uri = s3UriOf(source, options.objectStore);
    } catch (error) {
      return answerRuntimeError(res, 502, `the LoRA adapter of ${adapter} cannot be served here: ${(error as Error).message}`);
    }
    const formats = req.headers[ADAPTER_FORMATS_HEADER];
    Promise.all([
      readBody(req as unknown as IncomingMessage, 64 * 1024 * 1024),
      llamaCppAdapters.podFor(runtimeName(modelId), podsOf(modelId), adapter, s3Uri, typeof formats === 'string' ? formats : undefined, podInFlight),
    ]).then(
      ([text, pod]) => {
        let body: Buffer;
        try {
          body = withLora(Buffer.from(text), modelId, pod.loraId);
        } catch (error) {
          return refuse(error instanceof UnservableAdapterError ? error.message : `the request body is not JSON: ${(error as Error).message}`);
        }
        podInFlight.track(pod.name, res.stream);
        forwardToRuntime({ baseUrl: pod.url, modelId, req, res, runtimePath, body });
      },
      (error: unknown) => {
        if (error instanceof UnservableAdapterError) return refuse(error.message);
        answerRuntimeError(res, 503, `the LoRA adapter of ${adapter} is not loaded: ${kubeMessage(error)}`);
      },
    );
  }

  /** The active models of the last reconcile, and why any of them is not deployed. */
  let wanted = new Map<string, ActiveModel>();
  const problems = new Map<string, string>();
  /** Requests this agent has open to each model's runtime (the only path requests take to it). */
  const inFlight = new InFlightCounts();
  /** Adapter requests open to each pod (by name): where the next adapter loads. */
  const podInFlight = new InFlightCounts();
  /** Ready replicas per model as last read, for forward. */
  const readiness = new Map<string, { ready: number; at: number }>();
  const reading = new Map<string, Promise<number>>();
  let reconciling: Promise<void> = Promise.resolve();
  let closed = false;

  const byModelHash = <T extends { metadata?: { labels?: { [key: string]: string } } }>(objects: T[]) =>
    new Map(
      objects.flatMap((object) => (object.metadata?.labels?.[MODEL_ID_HASH_LABEL] ? [[object.metadata.labels[MODEL_ID_HASH_LABEL], object] as const] : [])),
    );

  async function applyStatefulSet(model: ActiveModel, desired: RuntimeManifests, existing: V1StatefulSet | undefined): Promise<void> {
    const { name } = desired;
    if (!existing) {
      await apps.createNamespacedStatefulSet({ namespace, body: desired.statefulSet as V1StatefulSet });
      logger.info({ modelId: model.id, name, runtime: desired.kind, replicas: model.replicas }, 'runtime StatefulSet created');
    } else if (existing.metadata?.annotations?.[SPEC_HASH_ANNOTATION] !== desired.statefulSet.metadata!.annotations![SPEC_HASH_ANNOTATION]) {
      // Replaced in place: the StatefulSet controller rolls the pods to the new template.
      const body = {
        ...desired.statefulSet,
        metadata: { ...desired.statefulSet.metadata, resourceVersion: existing.metadata?.resourceVersion },
      } as V1StatefulSet;
      await apps.replaceNamespacedStatefulSet({ name, namespace, body });
      logger.info({ modelId: model.id, name, runtime: desired.kind }, 'runtime StatefulSet updated');
    } else if (existing.spec?.replicas !== model.replicas) {
      // Only the replica count changed: through the scale subresource, as an autoscaler would.
      await apps.replaceNamespacedStatefulSetScale({ name, namespace, body: { metadata: { name, namespace }, spec: { replicas: model.replicas } } });
      logger.info({ modelId: model.id, name, from: existing.spec?.replicas, to: model.replicas }, 'runtime scaled');
    }
  }

  async function applyService(desired: RuntimeManifests, existing: V1Service | undefined): Promise<void> {
    const { name } = desired;
    if (!existing) {
      await core.createNamespacedService({ namespace, body: desired.service as V1Service });
    } else if (existing.metadata?.annotations?.[SPEC_HASH_ANNOTATION] !== desired.service.metadata!.annotations![SPEC_HASH_ANNOTATION]) {
      // The cluster IP is allocated once and immutable: carried over.
      const spec = { ...desired.service.spec, clusterIP: existing.spec?.clusterIP, clusterIPs: existing.spec?.clusterIPs };
      const metadata = { ...desired.service.metadata, resourceVersion: existing.metadata?.resourceVersion };
      await core.replaceNamespacedService({ name, namespace, body: { ...desired.service, metadata, spec } as V1Service });
    }
  }

  async function reconcileOnce(models: ActiveModel[]): Promise<void> {
    wanted = new Map(models.map((model) => [model.id, model]));
    for (const id of [...problems.keys()]) if (!wanted.has(id)) problems.delete(id);
    for (const id of [...readiness.keys()]) if (!wanted.has(id)) readiness.delete(id);
    const [statefulSets, services] = await Promise.all([
      apps.listNamespacedStatefulSet({ namespace, labelSelector: RUNTIME_SELECTOR }).then((list) => byModelHash(list.items)),
      core.listNamespacedService({ namespace, labelSelector: RUNTIME_SELECTOR }).then((list) => byModelHash(list.items)),
    ]);

    const keep = new Set<string>();
    await Promise.all(
      models.map(async (model) => {
        const hash = modelIdHash(model.id);
        let desired: RuntimeManifests;
        // A llama.cpp model starts with its adapters (llamaCppAdapters.ts), read from their list; when it
        // cannot be read, the runtime is left as it is (not restarted without them, nor deleted).
        let adapters: LlamaCppAdapter[] = [];
        try {
          if (kindOf(model) === 'llama-cpp') adapters = await llamaCppAdapters.startedWith(runtimeName(model.id), model);
        } catch (error) {
          keep.add(hash);
          problems.set(model.id, `cannot read the LoRA adapters' list: ${kubeMessage(error)}`);
          return;
        }
        try {
          desired = runtimeManifests(model, { namespace, weights, images, llamaCppAdapters: adapters });
        } catch (error) {
          if (!(error instanceof UnrunnableModelError)) throw error;
          problems.set(model.id, error.message);
          return;
        }
        keep.add(hash);
        try {
          await applyService(desired, services.get(hash));
          await applyStatefulSet(model, desired, statefulSets.get(hash));
          problems.delete(model.id);
        } catch (error) {
          const message = kubeMessage(error);
          problems.set(model.id, `cannot apply the runtime: ${message}`);
          logger.warn({ modelId: model.id, name: desired.name, err: message }, 'runtime not applied; retrying on the next reconcile');
        }
      }),
    );

    // Runtimes of models no longer active. Only objects listed with the runtime selector are candidates.
    const deletions: Promise<unknown>[] = [];
    for (const [hash, statefulSet] of statefulSets) {
      if (keep.has(hash)) continue;
      const name = statefulSet.metadata!.name!;
      logger.info({ modelId: statefulSet.metadata?.annotations?.[MODEL_ID_ANNOTATION], name }, 'model no longer active: deleting its runtime');
      deletions.push(apps.deleteNamespacedStatefulSet({ name, namespace, propagationPolicy: 'Background' }).catch(ignoreNotFound));
    }
    for (const [hash, service] of services) {
      if (!keep.has(hash)) deletions.push(core.deleteNamespacedService({ name: service.metadata!.name!, namespace }).catch(ignoreNotFound));
    }
    const failed = (await Promise.allSettled(deletions)).filter((result) => result.status === 'rejected');
    if (failed.length > 0)
      logger.warn({ failures: failed.length, err: kubeMessage(failed[0]!.reason) }, 'could not delete every inactive runtime; retrying on the next reconcile');
  }

  /** Ready replicas of a model now, from its StatefulSet; fresh reads coalesce per model. */
  function readReady(modelId: string): Promise<number> {
    let pending = reading.get(modelId);
    if (!pending) {
      pending = apps
        .readNamespacedStatefulSet({ name: runtimeName(modelId), namespace })
        .then((statefulSet) => statefulSet.status?.readyReplicas ?? 0)
        .catch((error: unknown) => {
          if (statusCode(error) === 404) return 0;
          throw error;
        })
        .then((ready) => {
          readiness.set(modelId, { ready, at: Date.now() });
          return ready;
        })
        .finally(() => reading.delete(modelId));
      reading.set(modelId, pending);
    }
    return pending;
  }

  async function readyReplicas(modelId: string): Promise<number> {
    const known = readiness.get(modelId);
    // A model seen ready is trusted for the TTL; one seen not ready is read again after a fifth of it
    // (it may have just become ready), which still bounds the reads a burst of 503s makes.
    if (known && Date.now() - known.at < (known.ready > 0 ? readinessTtlMs : readinessTtlMs / 5)) return known.ready;
    return readReady(modelId);
  }

  const host: RuntimeHost = {
    reconcile(models) {
      const pass = reconciling.then(async () => {
        if (closed) return;
        await reconcileOnce(models);
        await unloadGoneAdapters(models);
      });
      reconciling = pass.catch(() => undefined);
      return pass;
    },

    async status(): Promise<RuntimeReport[]> {
      if (wanted.size === 0) return [];
      const statefulSets = byModelHash((await apps.listNamespacedStatefulSet({ namespace, labelSelector: RUNTIME_SELECTOR })).items);
      const notReady = [...wanted.values()].some((model) => {
        const status = statefulSets.get(modelIdHash(model.id));
        return status && (status.status?.readyReplicas ?? 0) < (status.spec?.replicas ?? 0);
      });
      // Pods only when a runtime is short of ready replicas: their status says why.
      const pods = notReady ? (await core.listNamespacedPod({ namespace, labelSelector: RUNTIME_SELECTOR })).items : [];
      const now = Date.now();
      return [...wanted.values()].map((model) => {
        const hash = modelIdHash(model.id);
        const statefulSet = statefulSets.get(hash);
        const desired = statefulSet?.spec?.replicas ?? model.replicas;
        const ready = statefulSet?.status?.readyReplicas ?? 0;
        readiness.set(model.id, { ready, at: now });
        let statusMessage = problems.get(model.id);
        if (!statusMessage) {
          if (!statefulSet) statusMessage = 'not deployed yet';
          else if (desired === 0) statusMessage = 'scaled to zero';
          else {
            const why =
              ready < desired
                ? pods
                    .filter((pod) => pod.metadata?.labels?.[MODEL_ID_HASH_LABEL] === hash)
                    .map(podProblem)
                    .find(Boolean)
                : undefined;
            const held = isVllm(model)
              ? adapters.heldText(runtimeName(model.id))
              : kindOf(model) === 'llama-cpp'
                ? startedText(statefulSet.spec?.template.spec?.containers.find((c) => c.name === 'runtime')?.args, model)
                : '';
            statusMessage = `${ready}/${desired} ready${why ? `: ${why}` : ''}${held ? `; LoRA adapters loaded: ${held}` : ''}`;
          }
        }
        return { modelId: model.id, desiredReplicas: desired, readyReplicas: ready, inFlightRequests: inFlight.get(model.id), statusMessage };
      });
    },

    async currentReplicas() {
      const statefulSets = (await apps.listNamespacedStatefulSet({ namespace, labelSelector: RUNTIME_SELECTOR })).items;
      return new Map(
        statefulSets.flatMap((statefulSet) => {
          const modelId = statefulSet.metadata?.annotations?.[MODEL_ID_ANNOTATION];
          return modelId ? [[modelId, statefulSet.spec?.replicas ?? 0] as const] : [];
        }),
      );
    },

    forward(modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, runtimePath: string) {
      // Counted from arrival, so the control plane sees the work even while readiness is being read.
      inFlight.track(modelId, res.stream);
      readyReplicas(modelId).then(
        (ready) => {
          if (ready === 0) return answerRuntimeError(res, 503, `model ${modelId} has no ready runtime on this cluster`);
          // A fine-tuned model served as a LoRA adapter of this vLLM model.
          const adapter = req.headers[ADAPTER_MODEL_HEADER];
          const source = req.headers[ADAPTER_SOURCE_HEADER];
          if (typeof adapter === 'string' && typeof source === 'string' && isVllm(wanted.get(modelId)))
            return forwardAdapter(modelId, adapter, source, req, res, runtimePath);
          if (typeof adapter === 'string' && typeof source === 'string' && kindOf(wanted.get(modelId)) === 'llama-cpp')
            return forwardLlamaCppAdapter(modelId, adapter, source, req, res, runtimePath);
          const baseUrl = serviceUrl({ name: runtimeName(modelId), namespace, port: RUNTIME_PORT });
          forwardToRuntime({ baseUrl, modelId, req, res, runtimePath });
        },
        (error: unknown) => answerRuntimeError(res, 503, `cannot tell whether model ${modelId} has a ready runtime: ${kubeMessage(error)}`),
      );
    },

    async close() {
      closed = true;
      await reconciling;
    },
  };
  return host;
}
