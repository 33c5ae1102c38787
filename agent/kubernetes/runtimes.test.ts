import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentRoutes, parseAgentRoute } from '../../lib/agentContract.js';
import type { ObjectStoreConfig } from '../../lib/config.js';
import { silentLogger } from '../../lib/logging.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import { until } from '../../test/support/until.js';
import { createAutoscaler, type AutoscaledRuntimeHost } from '../autoscaler.js';
import type { ActiveModel, RuntimeHost } from '../executor.js';
import { validateManifest } from './manifests.js';
import { DEFAULT_RUNTIME_IMAGES, modelIdHash, runtimeManifests, runtimeName } from './runtimeManifests.js';
import { createKubernetesRuntimeHost, podProblem } from './runtimes.js';

const NS = 'mariner-runtimes';
const S3: ObjectStoreConfig = {
  driver: 's3',
  bucket: 'models',
  endpoint: 'http://minio.storage:9000',
  region: 'eu-west-1',
  forcePathStyle: true,
  accessKeyId: undefined,
  secretAccessKey: undefined,
  prefix: 'mariner',
};

const llama: ActiveModel = {
  id: 'meta-llama-Llama-3.1-8B-Instruct',
  source: 's3://models/mariner/models/tenant-1/meta-llama-Llama-3.1-8B-Instruct',
  formats: ['HUGGING_FACE'],
  gpu: 1,
  replicas: 2,
  extraArgs: ['--max-model-len', '4096'],
};
const tiny: ActiveModel = { id: 'tiny-gguf', source: 'files/tenant-1/file-abc', formats: ['GGUF'], gpu: 0, replicas: 1, extraArgs: [] };

/** What the apiserver stores under a runtime's name. */
const statefulSetOf = (apiserver: KubeApiServer, model: ActiveModel) =>
  apiserver.objects('StatefulSet', NS).find((s) => s.metadata.name === runtimeName(model.id));
const serviceOf = (apiserver: KubeApiServer, model: ActiveModel) => apiserver.objects('Service', NS).find((s) => s.metadata.name === runtimeName(model.id));
const writes = (apiserver: KubeApiServer, from: number) => apiserver.requests.slice(from).filter((r) => r.method !== 'GET');

describe('runtime names and manifests', () => {
  it('names a runtime with a DNS-1035 label that is stable, unique per model id and short enough for StatefulSet pods', () => {
    const ids = [
      'meta-llama-Llama-3.1-8B-Instruct',
      'meta-llama-llama-3.1-8b-instruct',
      'ft:gpt-4o-mini:org:custom:abc123',
      '0-leading-digit',
      `x${'y'.repeat(250)}`,
      '...',
    ];
    const names = ids.map(runtimeName);
    for (const name of names) {
      expect(name).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
      expect(name.length).toBeLessThanOrEqual(52);
    }
    expect(new Set(names).size).toBe(ids.length);
    expect(runtimeName(ids[0]!)).toBe(names[0]);
    expect(modelIdHash(ids[0]!)).toMatch(/^[0-9a-f]{16}$/);
  });

  it('serves an Ollama model with Ollama, pulled by an init container under the model id', () => {
    const { kind, statefulSet } = runtimeManifests(
      { id: 'gemma2:2b', source: 'gemma2:2b', formats: ['OLLAMA'], gpu: 1, replicas: 1, extraArgs: [] },
      { namespace: NS, weights: { objectStore: S3 }, images: DEFAULT_RUNTIME_IMAGES },
    );
    expect(kind).toBe('ollama');
    const pod = statefulSet.spec!.template.spec!;
    expect(pod.containers[0]).toMatchObject({ image: 'ollama/ollama:latest', readinessProbe: { httpGet: { path: '/' } } });
    expect(pod.containers[0]!.env).toContainEqual({ name: 'OLLAMA_HOST', value: '0.0.0.0:8000' });
    expect(pod.initContainers![0]!.env).toEqual(
      expect.arrayContaining([
        { name: 'SOURCE', value: 'gemma2:2b' },
        { name: 'MODEL_ID', value: 'gemma2:2b' },
      ]),
    );
  });

  it('refuses what no runtime here can serve, saying why', () => {
    const options = { namespace: NS, weights: { objectStore: S3 }, images: DEFAULT_RUNTIME_IMAGES };
    expect(() => runtimeManifests({ ...tiny, formats: ['NVIDIA_TRITON'] }, options)).toThrow(/no Kubernetes runtime serves the formats \[NVIDIA_TRITON\]/);
    expect(() => runtimeManifests({ ...tiny, formats: ['WHISPER_GGML'] }, options)).toThrow(
      /local executor only; on Kubernetes use the model in Hugging Face format/,
    );
    expect(() => runtimeManifests({ ...tiny, gpu: 0.5 }, options)).toThrow(/whole GPUs/);
    const filesystem = { ...options, weights: { objectStore: { driver: 'filesystem' as const, dir: '/data/objects' } } };
    expect(() => runtimeManifests({ ...tiny, source: 'file:///data/objects/files/x' }, filesystem)).toThrow(/MARINER_OBJECT_STORE=s3/);
    expect(() => runtimeManifests(tiny, filesystem)).toThrow(/MARINER_OBJECT_STORE=s3/);
  });

  it('explains a pod that is not ready from its status', () => {
    const pod = (status: object) => ({ metadata: { name: 'rt-x-0' }, status });
    expect(
      podProblem(
        pod({
          phase: 'Pending',
          conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' }],
        }),
      ),
    ).toBe('pod rt-x-0 cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.');
    expect(podProblem(pod({ phase: 'Pending', initContainerStatuses: [{ name: 'copy-weights', ready: false, state: { running: {} } }] }))).toBe(
      'pod rt-x-0: copying the model weights',
    );
    expect(
      podProblem(
        pod({
          phase: 'Pending',
          initContainerStatuses: [{ name: 'copy-weights', ready: false, state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } } }],
        }),
      ),
    ).toBe('pod rt-x-0: copy-weights CrashLoopBackOff: back-off 40s');
    expect(
      podProblem(
        pod({
          phase: 'Running',
          initContainerStatuses: [{ name: 'copy-weights', ready: true, state: { terminated: { exitCode: 0 } } }],
          containerStatuses: [{ name: 'runtime', ready: false, state: { running: {} } }],
        }),
      ),
    ).toBe('pod rt-x-0: loading the model');
    expect(podProblem(pod({ phase: 'Running', containerStatuses: [{ name: 'runtime', ready: true, state: { running: {} } }] }))).toBeUndefined();
  });
});

describe('the Kubernetes runtime host against an apiserver', () => {
  let apiserver: KubeApiServer;
  let kubeConfig: KubeConfig;
  let apps: AppsV1Api;
  let host: RuntimeHost;

  /** Writes a StatefulSet's status as its controller would. */
  async function setReady(model: ActiveModel, readyReplicas: number): Promise<void> {
    await apps.patchNamespacedStatefulSetStatus(
      { name: runtimeName(model.id), namespace: NS, body: { status: { replicas: model.replicas, readyReplicas } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  beforeAll(async () => {
    apiserver = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 2 }] });
    kubeConfig = kubeConfigFor(apiserver);
    apps = kubeConfig.makeApiClient(AppsV1Api);
    await kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    host = createKubernetesRuntimeHost({ kubeConfig, namespace: NS, logger: silentLogger(), objectStore: S3, objectStoreSecret: 'runtime-s3' });
  });
  afterAll(async () => {
    await host?.close();
    await apiserver?.close();
  });

  it('deploys each active model as a StatefulSet and a Service that run the runtime of its format', async () => {
    await host.reconcile([llama, tiny]);

    const vllm = statefulSetOf(apiserver, llama);
    expect(vllm.metadata.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'mariner',
      'mariner.io/model-id-hash': modelIdHash(llama.id),
      'mariner.io/runtime': 'vllm',
    });
    expect(vllm.metadata.annotations['mariner.io/model-id']).toBe(llama.id);
    expect(vllm.spec.replicas).toBe(2);
    const vllmPod = vllm.spec.template.spec;
    expect(vllmPod.containers[0].image).toBe('vllm/vllm-openai:latest');
    expect(vllmPod.containers[0].args).toEqual(['--model', '/models/model', '--served-model-name', llama.id, '--port', '8000', '--max-model-len', '4096']);
    expect(vllmPod.containers[0].resources.limits).toEqual({ 'nvidia.com/gpu': '1' });
    expect(vllmPod.containers[0].readinessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    // The weights: copied from the store into the pod's /models before the runtime starts.
    const copier = vllmPod.initContainers[0];
    expect(copier.image).toBe('amazon/aws-cli:latest');
    expect(copier.env).toEqual(
      expect.arrayContaining([
        { name: 'SOURCE', value: `${llama.source}/` },
        { name: 'TARGET', value: '/models/model' },
        { name: 'AWS_ENDPOINT_URL', value: 'http://minio.storage:9000' },
        { name: 'AWS_REGION', value: 'eu-west-1' },
      ]),
    );
    expect(copier.envFrom).toEqual([{ secretRef: { name: 'runtime-s3' } }]);
    expect(copier.command.at(-1)).toContain('aws s3 cp --recursive');
    expect(vllmPod.volumes).toContainEqual({ name: 'models', emptyDir: {} });

    const gguf = statefulSetOf(apiserver, tiny);
    const ggufPod = gguf.spec.template.spec;
    expect(ggufPod.containers[0].image).toBe('ghcr.io/ggml-org/llama.cpp:server');
    expect(ggufPod.containers[0].args).toEqual(['--model', '/models/model.gguf', '--alias', tiny.id, '--host', '0.0.0.0', '--port', '8000']);
    expect(ggufPod.containers[0].resources).toBeUndefined();
    // A key relative to the store, under its bucket and prefix.
    expect(ggufPod.initContainers[0].env).toContainEqual({ name: 'SOURCE', value: 's3://models/mariner/files/tenant-1/file-abc' });

    for (const model of [llama, tiny]) {
      const service = serviceOf(apiserver, model);
      expect(service.spec).toMatchObject({
        type: 'ClusterIP',
        selector: { 'mariner.io/model-id-hash': modelIdHash(model.id) },
        ports: [{ port: 8000, targetPort: 'http' }],
      });
      expect(service.metadata.labels['app.kubernetes.io/managed-by']).toBe('mariner');
      // What the apiserver holds passes the schema and the unknown-field check (its status is the
      // controller's, and the test double's empty one lacks the required replicas).
      const { status: _status, ...stored } = statefulSetOf(apiserver, model);
      validateManifest(stored);
      validateManifest(service);
    }
  });

  it('leaves runtimes alone when nothing changed', async () => {
    const before = apiserver.requests.length;
    await host.reconcile([llama, tiny]);
    expect(writes(apiserver, before)).toEqual([]);
  });

  it('updates a changed model in place: same object, new resourceVersion and template', async () => {
    const before = statefulSetOf(apiserver, llama);
    const changed = { ...llama, extraArgs: ['--max-model-len', '8192'] };
    await host.reconcile([changed, tiny]);
    const after = statefulSetOf(apiserver, llama);
    expect(after.metadata.uid).toBe(before.metadata.uid);
    expect(Number(after.metadata.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));
    expect(after.metadata.generation).toBe(before.metadata.generation + 1);
    expect(after.spec.template.spec.containers[0].args).toContain('8192');
    await host.reconcile([llama, tiny]);
  });

  it('scales a model through the StatefulSet scale subresource when only its replicas change', async () => {
    const before = apiserver.requests.length;
    await host.reconcile([{ ...llama, replicas: 3 }, tiny]);
    expect(statefulSetOf(apiserver, llama).spec.replicas).toBe(3);
    expect(writes(apiserver, before).map((r) => `${r.method} ${r.path}`)).toEqual([
      `PUT /apis/apps/v1/namespaces/${NS}/statefulsets/${runtimeName(llama.id)}/scale`,
    ]);
    await host.reconcile([llama, tiny]);
    expect(statefulSetOf(apiserver, llama).spec.replicas).toBe(2);
  });

  it('deletes the runtime of a model no longer active, and nothing it does not own', async () => {
    const template = (labels: Record<string, string>) => ({ metadata: { labels }, spec: { containers: [{ name: 'main', image: 'nginx' }] } });
    const other = (name: string, labels: Record<string, string>) => ({
      metadata: { name, labels },
      spec: { selector: { matchLabels: { app: name } }, serviceName: name, template: template({ app: name }) },
    });
    await apps.createNamespacedStatefulSet({ namespace: NS, body: other('someone-elses', { app: 'someone-elses' }) });
    // The agent's other workloads (a notebook) carry the managed-by label but not the runtime component.
    await apps.createNamespacedStatefulSet({
      namespace: NS,
      body: other('notebook', { 'app.kubernetes.io/managed-by': 'mariner', 'app.kubernetes.io/component': 'notebook' }),
    });

    await host.reconcile([llama]);
    expect(statefulSetOf(apiserver, tiny)).toBeUndefined();
    expect(serviceOf(apiserver, tiny)).toBeUndefined();
    expect(apiserver.objects('StatefulSet', NS).map((s) => s.metadata.name)).toEqual(['notebook', runtimeName(llama.id), 'someone-elses'].sort());
    expect(serviceOf(apiserver, llama)).toBeDefined();
    expect((await host.status()).map((r) => r.modelId)).toEqual([llama.id]);
  });

  it('reports ready replicas from the StatefulSet status, and why pods are not ready', async () => {
    await host.reconcile([llama, tiny]);
    expect(await host.status()).toEqual([
      { modelId: llama.id, desiredReplicas: 2, readyReplicas: 0, inFlightRequests: 0, statusMessage: '0/2 ready' },
      { modelId: tiny.id, desiredReplicas: 1, readyReplicas: 0, inFlightRequests: 0, statusMessage: '0/1 ready' },
    ]);

    // The StatefulSet controller made a pod; the scheduler found no GPU for it.
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const sts = statefulSetOf(apiserver, llama);
    const name = `${sts.metadata.name}-1`;
    await core.createNamespacedPod({ namespace: NS, body: { metadata: { name, labels: sts.spec.template.metadata.labels }, spec: sts.spec.template.spec } });
    const message = '0/1 nodes are available: 1 Insufficient nvidia.com/gpu.';
    await core.patchNamespacedPodStatus(
      {
        name,
        namespace: NS,
        body: { status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }] } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await setReady(llama, 1);
    const [report] = await host.status();
    expect(report).toEqual({
      modelId: llama.id,
      desiredReplicas: 2,
      readyReplicas: 1,
      inFlightRequests: 0,
      statusMessage: `1/2 ready: pod ${name} cannot be scheduled: ${message}`,
    });

    await setReady(llama, 2);
    expect((await host.status())[0]).toMatchObject({ readyReplicas: 2, statusMessage: '2/2 ready' });
  });

  it('reports a model it cannot run with the reason, and deploys nothing for it', async () => {
    const triton: ActiveModel = { ...tiny, id: 'triton-model', formats: ['NVIDIA_TRITON'] };
    await host.reconcile([llama, triton]);
    expect(statefulSetOf(apiserver, triton)).toBeUndefined();
    expect((await host.status()).find((r) => r.modelId === triton.id)).toMatchObject({
      readyReplicas: 0,
      statusMessage: expect.stringContaining('no Kubernetes runtime serves'),
    });
  });

  it("reports a runtime it could not apply with the apiserver's reason", async () => {
    const elsewhere = createKubernetesRuntimeHost({ kubeConfig, namespace: 'missing-namespace', logger: silentLogger(), objectStore: S3 });
    await elsewhere.reconcile([tiny]);
    expect((await elsewhere.status())[0]).toMatchObject({
      readyReplicas: 0,
      statusMessage: 'cannot apply the runtime: namespaces "missing-namespace" not found',
    });
    await elsewhere.close();
  });
});

/** A fake OpenAI-compatible runtime: streams chat chunks, one more each time `next()` is called. */
async function startFakeRuntime() {
  const requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  const open = new Set<ServerResponse>();
  const closed: IncomingMessage[] = [];
  const waiters: (() => void)[] = [];
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'Hello' } }] })}\n\n`);
    open.add(res);
    res.on('close', () => {
      open.delete(res);
      if (!res.writableFinished) closed.push(req);
      for (const wake of waiters.splice(0)) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    /** Requests whose connection closed before their answer ended (aborted upstream). */
    closed,
    /** Finishes every open answer. */
    finish() {
      for (const res of open)
        res.end(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: ' world' } }] })}\n\ndata: [DONE]\n\n`);
    },
    /** Dies mid-answer: every open connection is cut. */
    kill() {
      for (const res of open) res.socket?.destroy();
    },
    /** Resolves when an answer's connection closes. */
    nextClose: () => new Promise<void>((resolve) => waiters.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('forwarding inference to a runtime Service', () => {
  let apiserver: KubeApiServer;
  let apps: AppsV1Api;
  let host: RuntimeHost;
  let runtime: Awaited<ReturnType<typeof startFakeRuntime>>;
  let tunnel: http2.Http2Server;
  let client: ClientHttp2Session;
  const services: string[] = [];

  beforeAll(async () => {
    apiserver = await startKubeApiServer();
    const kubeConfig = kubeConfigFor(apiserver);
    apps = kubeConfig.makeApiClient(AppsV1Api);
    await kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    runtime = await startFakeRuntime();
    host = createKubernetesRuntimeHost({
      kubeConfig,
      namespace: NS,
      logger: silentLogger(),
      objectStore: S3,
      // Every read of readiness goes to the apiserver, so that a test sees its own status writes.
      readinessTtlMs: 0,
      serviceUrl: (service) => {
        services.push(`${service.name}.${service.namespace}:${service.port}`);
        return runtime.url;
      },
    });
    await host.reconcile([llama]);
    // The agent's side of the tunnel: an HTTP/2 server routing runtime requests to the host.
    tunnel = http2.createServer((req, res) => {
      const route = parseAgentRoute(req.url);
      if (route?.kind === 'runtime') host.forward(route.modelId, req, res, route.path);
    });
    await new Promise<void>((resolve) => tunnel.listen(0, '127.0.0.1', resolve));
    client = http2.connect(`http://127.0.0.1:${(tunnel.address() as AddressInfo).port}`);
  });
  afterEach(() => runtime.finish());
  afterAll(async () => {
    client?.close();
    await new Promise((resolve) => tunnel?.close(resolve));
    await host?.close();
    await runtime?.close();
    await apiserver?.close();
  });

  async function setReady(readyReplicas: number): Promise<void> {
    await apps.patchNamespacedStatefulSetStatus(
      { name: runtimeName(llama.id), namespace: NS, body: { status: { replicas: 2, readyReplicas } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  function chat(model: string) {
    const stream = client.request({
      ':method': 'POST',
      ':path': agentRoutes.runtime(model, '/v1/chat/completions'),
      'content-type': 'application/json',
    });
    stream.end(JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'Hi' }] }));
    const headers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
    const chunks: string[] = [];
    const firstChunk = new Promise<string>((resolve) => stream.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
    stream.on('error', () => {}); // a reset stream: tests read rstCode
    const ended = new Promise<string>((resolve) => stream.once('close', () => resolve(chunks.join(''))));
    return { stream, headers, firstChunk, ended };
  }

  it('answers 503 in the OpenAI error shape while the model has no ready replica', async () => {
    const call = chat(llama.id);
    expect((await call.headers)[':status']).toBe(503);
    expect(JSON.parse(await call.ended)).toEqual({
      error: { message: `model ${llama.id} has no ready runtime on this cluster`, type: 'server_error', param: null, code: null },
    });
    expect(runtime.requests).toHaveLength(0);
  });

  it("streams a request to the model's Service and its answer back, chunk by chunk", async () => {
    await setReady(1);
    const call = chat(llama.id);
    expect((await call.headers)[':status']).toBe(200);
    // The first chunk arrives while the runtime is still generating.
    expect(await call.firstChunk).toContain('Hello');
    expect(runtime.requests.at(-1)).toMatchObject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' } });
    expect(JSON.parse(runtime.requests.at(-1)!.body)).toMatchObject({ model: llama.id, stream: true });
    expect(services.at(-1)).toBe(`${runtimeName(llama.id)}.${NS}:8000`);
    runtime.finish();
    const body = await call.ended;
    expect(body).toContain(' world');
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect((await host.status())[0]!.inFlightRequests).toBe(0);
  });

  it('counts requests in flight, and aborts the upstream request when the caller goes away', async () => {
    await setReady(2);
    const call = chat(llama.id);
    await call.firstChunk;
    expect((await host.status())[0]).toMatchObject({ readyReplicas: 2, inFlightRequests: 1 });
    const upstreamClosed = runtime.nextClose();
    call.stream.close(http2.constants.NGHTTP2_CANCEL);
    await upstreamClosed;
    expect(runtime.closed).toHaveLength(1);
    await call.ended;
    expect((await host.status())[0]!.inFlightRequests).toBe(0);
  });

  it('resets the tunnel stream when the runtime dies mid-answer, so the caller sees an error and not a short success', async () => {
    await setReady(1);
    const call = chat(llama.id);
    expect(await call.firstChunk).toContain('Hello');
    runtime.kill();
    expect(await call.ended).not.toContain('[DONE]');
    expect(call.stream.rstCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
});

describe('the autoscaler scales a runtime StatefulSet with its load, through the scale subresource', () => {
  const SCALED_NS = 'autoscaled-runtimes';
  let apiserver: KubeApiServer;
  let kubeConfig: KubeConfig;
  let apps: AppsV1Api;
  let runtime: Awaited<ReturnType<typeof startFakeRuntime>>;
  let host: RuntimeHost;
  let scaled: AutoscaledRuntimeHost;
  let tunnel: http2.Http2Server;
  let client: ClientHttp2Session;
  const model: ActiveModel = { ...llama, replicas: 1 };
  const settings = {
    targetInFlight: 2,
    minReplicas: 0,
    maxReplicas: 4,
    maxScaleUpRate: 3,
    maxScaleDownRate: 0.5,
    metricsWindowSeconds: 1,
    scaleToZeroGraceSeconds: 1,
  };

  const hostOf = () =>
    createKubernetesRuntimeHost({
      kubeConfig,
      namespace: SCALED_NS,
      logger: silentLogger(),
      objectStore: S3,
      readinessTtlMs: 0,
      serviceUrl: () => runtime.url,
    });
  // The agent's reconciler applies each decision by reconciling the active models again.
  const autoscaled = (inner: RuntimeHost) => {
    const result: AutoscaledRuntimeHost = createAutoscaler(
      inner,
      { enabled: true, syncPeriodMs: 50, defaults: settings, models: {} },
      silentLogger(),
      () => void result.reconcile([model]),
    );
    return result;
  };
  const replicas = () =>
    apiserver.objects('StatefulSet', SCALED_NS).find((s) => s.metadata.name === runtimeName(model.id))?.spec.replicas as number | undefined;

  beforeAll(async () => {
    apiserver = await startKubeApiServer();
    kubeConfig = kubeConfigFor(apiserver);
    apps = kubeConfig.makeApiClient(AppsV1Api);
    await kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: SCALED_NS } } });
    runtime = await startFakeRuntime();
    host = hostOf();
    scaled = autoscaled(host);
    tunnel = http2.createServer((req, res) => {
      const route = parseAgentRoute(req.url);
      if (route?.kind === 'runtime') scaled.forward(route.modelId, req, res, route.path);
    });
    await new Promise<void>((resolve) => tunnel.listen(0, '127.0.0.1', resolve));
    client = http2.connect(`http://127.0.0.1:${(tunnel.address() as AddressInfo).port}`);
  });
  afterAll(async () => {
    client?.close();
    await new Promise((resolve) => tunnel?.close(resolve));
    await scaled?.close();
    await host?.close();
    await runtime?.close();
    await apiserver?.close();
  });

  it('scales up under load, down when it ends, to zero after the grace period, and from zero when a request waits', async () => {
    await scaled.reconcile([model]);
    expect(replicas()).toBe(1);
    await apps.patchNamespacedStatefulSetStatus(
      { name: runtimeName(model.id), namespace: SCALED_NS, body: { status: { replicas: 1, readyReplicas: 1 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );

    // Six streams held open by the runtime: 6 in flight at 2 per replica wants 3 replicas.
    const before = apiserver.requests.length;
    const streams = Array.from({ length: 6 }, () => {
      const stream = client.request({
        ':method': 'POST',
        ':path': agentRoutes.runtime(model.id, '/v1/chat/completions'),
        'content-type': 'application/json',
      });
      stream.end(JSON.stringify({ model: model.id, stream: true, messages: [{ role: 'user', content: 'Hi' }] }));
      stream.on('error', () => {});
      stream.resume();
      return new Promise<void>((resolve) => stream.once('close', () => resolve()));
    });
    await until(() => runtime.requests.length >= 6, 'the six requests to reach the runtime');
    await until(() => replicas() === 3, 'the StatefulSet to be scaled to 3 replicas');
    expect(writes(apiserver, before).map((r) => `${r.method} ${r.path}`)).toContain(
      `PUT /apis/apps/v1/namespaces/${SCALED_NS}/statefulsets/${runtimeName(model.id)}/scale`,
    );
    const [report] = await scaled.status();
    expect(report!.autoscaling).toMatchObject({
      minReplicas: 0,
      maxReplicas: 4,
      targetInFlight: 2,
      lastScaleReason: expect.stringMatching(/^scaled up: /),
      idleSeconds: 0,
    });
    expect(report!.autoscaling!.averageInFlight).toBeGreaterThan(4);
    expect(report!.desiredReplicas).toBe(3);

    // The load ends: one replica through the grace period (a step down halves at most), then none.
    runtime.finish();
    await Promise.all(streams);
    await until(() => replicas() === 1, 'a step down to 1 replica');
    expect((await scaled.status())[0]!.autoscaling!.scaleToZeroAt).not.toBeNull();
    await until(() => replicas() === 0, 'the StatefulSet to be scaled to zero');
    expect((await scaled.status())[0]).toMatchObject({
      desiredReplicas: 0,
      statusMessage: 'scaled to zero',
      autoscaling: { lastScaleReason: expect.stringMatching(/^scaled to zero: no request for/), scaleToZeroAt: null },
    });

    // The control plane holds a request and wakes the model: one replica at once.
    expect(scaled.wake(model.id)).toBe(true);
    expect(scaled.wake('not-here')).toBe(false);
    await until(() => replicas() === 1, 'a replica started from zero');
    expect((await scaled.status())[0]!.autoscaling!.lastScaleReason).toBe('scaled up from zero: a request is waiting');
  });

  it('after an agent restart, keeps the replicas a runtime has instead of starting over', async () => {
    await apps.replaceNamespacedStatefulSetScale({
      name: runtimeName(model.id),
      namespace: SCALED_NS,
      body: { metadata: { name: runtimeName(model.id), namespace: SCALED_NS }, spec: { replicas: 3 } },
    });
    const restartedHost = hostOf();
    const restarted = autoscaled(restartedHost);
    try {
      const before = apiserver.requests.length;
      await restarted.reconcile([model]);
      expect(replicas()).toBe(3);
      expect(writes(apiserver, before)).toEqual([]);
      expect((await restarted.status())[0]).toMatchObject({ desiredReplicas: 3 });
    } finally {
      await restarted.close();
      await restartedHost.close();
    }
  });
});
