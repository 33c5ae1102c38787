import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRoutes, parseAgentRoute } from '../../lib/agentContract.js';
import type { ObjectStoreConfig } from '../../lib/config.js';
import { silentLogger } from '../../lib/logging.js';
import { ADAPTER_FORMATS_HEADER, ADAPTER_MODEL_HEADER, ADAPTER_SOURCE_HEADER } from '../../lib/loraAdapters.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import type { ActiveModel, RuntimeHost } from '../executor.js';
import { adapterFile } from './llamaCppAdapters.js';
import { DEFAULT_RUNTIME_IMAGES, runtimeManifests, runtimeName } from './runtimeManifests.js';
import { createKubernetesRuntimeHost } from './runtimes.js';
import { adapterFolder, adaptersConfigMapName } from './vllmAdapters.js';

/**
 * Issue 18: LoRA adapters on llama.cpp pods. The manifests of a GGUF model with adapters (one `--lora` per
 * adapter in the control plane's order, none applied at start, their files copied by an init container);
 * and the host against the Kubernetes API double with a llama.cpp-shaped pod (the server's request field
 * `lora: [{id, scale}]`, ids in `--lora` order, recorded): an ft: request restarts the pods with its
 * adapter and is answered with the body rewritten to the base model and the adapter's id in that pod.
 */
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
const base: ActiveModel = {
  id: 'tinyllama-gguf',
  source: 'models/tenant-1/tinyllama.gguf',
  formats: ['GGUF'],
  gpu: 0,
  replicas: 1,
  extraArgs: ['--ctx-size', '2048'],
  loraAdapters: ['ft:tinyllama-gguf:a-111111', 'ft:tinyllama-gguf:b-222222'],
};
const [A, B] = base.loraAdapters as [string, string];
const sourceOf = (id: string) => `fine-tuning/tenant-1/${id.slice(-6)}/output`;
const uriOf = (id: string) => `s3://models/mariner/${sourceOf(id)}`;

describe('the manifests of a llama.cpp model with LoRA adapters', () => {
  const options = { namespace: NS, weights: { objectStore: S3, credentialsSecret: 'runtime-s3' }, images: DEFAULT_RUNTIME_IMAGES };
  const adapters = [
    { id: B, uri: uriOf(B) },
    { id: A, uri: `${uriOf(A)}/adapter.gguf` },
  ];

  it('start the server with one --lora per adapter in the given order, none applied, after copying their GGUF files', () => {
    const pod = runtimeManifests(base, { ...options, llamaCppAdapters: adapters }).statefulSet.spec!.template.spec!;
    expect(pod.containers[0]!.args).toEqual([
      ...['--model', '/models/model.gguf', '--alias', base.id, '--host', '0.0.0.0', '--port', '8000'],
      ...['--lora', `/models/adapters/${adapterFolder(B)}.gguf`, '--lora', `/models/adapters/${adapterFolder(A)}.gguf`],
      '--lora-init-without-apply',
      ...['--ctx-size', '2048'],
    ]);
    expect(pod.initContainers!.map((c) => c.name)).toEqual(['copy-weights', 'copy-adapters']);
    const copy = pod.initContainers![1]!;
    expect(copy).toMatchObject({ image: 'amazon/aws-cli:latest', envFrom: [{ secretRef: { name: 'runtime-s3' } }] });
    expect(copy.env).toContainEqual({ name: 'AWS_ENDPOINT_URL', value: 'http://minio.storage:9000' });
    // The sources reach the script as data, one `<folder> <uri>` line each.
    expect(copy.env).toContainEqual({ name: 'ADAPTERS', value: `${adapterFolder(B)} ${uriOf(B)}\n${adapterFolder(A)} ${uriOf(A)}/adapter.gguf\n` });
    expect(copy.command!.at(-1)).toContain('llama.cpp serves GGUF LoRA adapters only');
    expect(copy.volumeMounts).toEqual([{ name: 'models', mountPath: '/models' }]);
  });

  it('give the same manifest for the same adapters (no needless restart) and a different one when they change', () => {
    const hash = (list: typeof adapters) =>
      runtimeManifests(base, { ...options, llamaCppAdapters: list }).statefulSet.metadata!.annotations!['mariner.io/spec-hash'];
    expect(hash(adapters)).toBe(hash([...adapters]));
    expect(hash(adapters.slice(0, 1))).not.toBe(hash(adapters));
  });

  it('leave a model without adapters as it was (no --lora, one init container)', () => {
    const pod = runtimeManifests(base, options).statefulSet.spec!.template.spec!;
    expect(pod.containers[0]!.args).not.toContain('--lora');
    expect(pod.containers[0]!.args).not.toContain('--lora-init-without-apply');
    expect(pod.initContainers).toHaveLength(1);
  });
});

/** A llama.cpp-shaped runtime pod: chat completions record their body and say which adapter they applied. */
async function startLlamaCppPod(name: string) {
  const bodies: Record<string, unknown>[] = [];
  const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const read = async (req: IncomingMessage) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    return JSON.parse(text || '{}') as Record<string, unknown>;
  };
  const server = http.createServer((req, res) => {
    void (async () => {
      if (req.url !== '/v1/chat/completions') return json(res, 404, { error: { code: 404, message: 'File Not Found', type: 'not_found_error' } });
      const body = await read(req);
      bodies.push(body);
      const lora = (body['lora'] as { id: number; scale: number }[] | undefined) ?? [];
      return json(res, 200, {
        object: 'chat.completion',
        model: body['model'],
        choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: `adapters ${lora.map((l) => `${l.id}@${l.scale}`).join(',')}` } }],
      });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { name, bodies, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((r) => server.close(r)) };
}

describe('LoRA adapters on llama.cpp pods, through the Kubernetes runtime host', () => {
  let apiserver: KubeApiServer;
  let kubeConfig: KubeConfig;
  let core: CoreV1Api;
  let host: RuntimeHost;
  let tunnel: http2.Http2Server;
  let client: ClientHttp2Session;
  let pod: Awaited<ReturnType<typeof startLlamaCppPod>>;
  const podName = `${runtimeName(base.id)}-0`;

  /** The StatefulSet controller and kubelet: one ready pod of the StatefulSet's current template. */
  let rolling = Promise.resolve();
  function roll(): Promise<void> {
    rolling = rolling.then(async () => {
      const template = apiserver.objects('StatefulSet', NS)[0].spec.template;
      const existing = apiserver.objects('Pod', NS).find((p) => p.metadata.name === podName);
      if (existing && JSON.stringify(existing.spec.containers[0].args) === JSON.stringify(template.spec.containers[0].args)) return;
      if (existing) await core.deleteNamespacedPod({ name: podName, namespace: NS });
      await core.createNamespacedPod({ namespace: NS, body: { metadata: { name: podName, labels: template.metadata.labels }, spec: template.spec } });
      await core.patchNamespacedPodStatus(
        { name: podName, namespace: NS, body: { status: { podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    });
    return rolling;
  }

  beforeAll(async () => {
    apiserver = await startKubeApiServer();
    kubeConfig = kubeConfigFor(apiserver);
    core = kubeConfig.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    pod = await startLlamaCppPod(podName);
    host = createKubernetesRuntimeHost({
      kubeConfig,
      namespace: NS,
      logger: silentLogger(),
      objectStore: S3,
      readinessTtlMs: 0,
      podUrl: (p: V1Pod) => (p.metadata?.name === podName ? pod.url : undefined),
      adapterLoadTimeoutMs: 20_000,
      adapterRetryMs: 50,
    });
    await host.reconcile([base]);
    await kubeConfig
      .makeApiClient(AppsV1Api)
      .patchNamespacedStatefulSetStatus(
        { name: runtimeName(base.id), namespace: NS, body: { status: { replicas: 1, readyReplicas: 1 } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    await roll();
    tunnel = http2.createServer((req, res) => {
      const route = parseAgentRoute(req.url);
      if (route?.kind === 'runtime') host.forward(route.modelId, req, res, route.path);
    });
    await new Promise<void>((resolve) => tunnel.listen(0, '127.0.0.1', resolve));
    client = http2.connect(`http://127.0.0.1:${(tunnel.address() as AddressInfo).port}`);
  });
  afterAll(async () => {
    client?.close();
    await new Promise((resolve) => tunnel?.close(resolve));
    await host?.close();
    await pod?.close();
    await apiserver?.close();
  });

  /** A chat completion of `adapter` as the control plane sends it: to the base model, the adapter in headers. */
  async function chat(adapter: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    const stream = client.request({
      ':method': 'POST',
      ':path': agentRoutes.runtime(base.id, '/v1/chat/completions'),
      'content-type': 'application/json',
      [ADAPTER_MODEL_HEADER]: adapter,
      [ADAPTER_SOURCE_HEADER]: sourceOf(adapter),
      ...headers,
    });
    stream.end(JSON.stringify({ model: adapter, temperature: 0, messages: [{ role: 'user', content: 'Hi' }] }));
    const status = new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    await new Promise((resolve) => stream.once('close', resolve));
    return { status: await status, body: JSON.parse(text) as Record<string, unknown> };
  }

  const podArgs = () => apiserver.objects('Pod', NS).find((p) => p.metadata.name === podName)!.spec.containers[0].args as string[];
  const listed = () =>
    (apiserver.objects('ConfigMap', NS).find((c) => c.metadata.name === adaptersConfigMapName(runtimeName(base.id)))?.data?.adapters ?? '')
      .split('\n')
      .filter(Boolean);

  it('the base model starts without adapters until one is asked for', () => {
    expect(podArgs()).not.toContain('--lora');
  });

  it('an ft: request restarts the pod with its adapter and is answered with the base model named and the adapter applied', async () => {
    const controller = setInterval(() => void roll(), 50);
    const answer = await chat(B).finally(() => clearInterval(controller));
    expect(answer.status).toBe(200);
    expect(listed()).toEqual([`${adapterFolder(B)} ${uriOf(B)}`]);
    expect(podArgs()).toEqual(expect.arrayContaining(['--lora', adapterFile(B), '--lora-init-without-apply']));
    // What llama.cpp received: the base model (its alias), the adapter by its id in the pod's flags.
    expect(pod.bodies.at(-1)).toEqual({ model: base.id, temperature: 0, messages: [{ role: 'user', content: 'Hi' }], lora: [{ id: 0, scale: 1 }] });
    expect(answer.body['choices']).toEqual([expect.objectContaining({ message: { role: 'assistant', content: 'adapters 0@1' } })]);
  });

  it('a second adapter restarts the pod with both, in the control plane’s order, and each request names its own id', async () => {
    const controller = setInterval(() => void roll(), 50);
    const a = await chat(A).finally(() => clearInterval(controller));
    expect(a.status).toBe(200);
    const loras = podArgs().filter((_, i, args) => args[i - 1] === '--lora');
    expect(loras).toEqual([adapterFile(A), adapterFile(B)]);
    expect(pod.bodies.at(-1)!['lora']).toEqual([{ id: 0, scale: 1 }]);
    const b = await chat(B);
    expect(b.status).toBe(200);
    expect(pod.bodies.at(-1)!['lora']).toEqual([{ id: 1, scale: 1 }]);
    expect(pod.bodies.at(-1)!['model']).toBe(base.id);
    // The runtime's status says which adapters its pods started with.
    const [status] = await host.status();
    expect(status!.statusMessage).toBe(`1/1 ready; LoRA adapters loaded: ${A}, ${B}`);
  });

  it('a PEFT-only adapter is refused with a 400 naming it, and neither listed nor sent to the pod', async () => {
    const C = 'ft:tinyllama-gguf:c-333333';
    const before = pod.bodies.length;
    const answer = await chat(C, { [ADAPTER_FORMATS_HEADER]: 'PEFT_SAFETENSORS' });
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({
      error: {
        message: expect.stringContaining(`model ${C} is a LoRA adapter in the formats [PEFT_SAFETENSORS]`),
        type: 'invalid_request_error',
        param: 'model',
        code: null,
      },
    });
    expect((answer.body['error'] as { message: string }).message).toContain('serves GGUF_ADAPTER adapters only');
    expect(listed()).toHaveLength(2);
    expect(pod.bodies.length).toBe(before);
  });

  it('a GGUF adapter with its formats said is served as before', async () => {
    const answer = await chat(A, { [ADAPTER_FORMATS_HEADER]: 'GGUF_ADAPTER,PEFT_SAFETENSORS' });
    expect(answer.status).toBe(200);
    expect(pod.bodies.at(-1)!['lora']).toEqual([{ id: 0, scale: 1 }]);
  });
});
