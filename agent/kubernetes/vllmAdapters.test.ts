import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRoutes, parseAgentRoute } from '../../lib/agentContract.js';
import type { ObjectStoreConfig } from '../../lib/config.js';
import { silentLogger } from '../../lib/logging.js';
import { ADAPTER_MODEL_HEADER, ADAPTER_SOURCE_HEADER } from '../../lib/loraAdapters.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import type { ActiveModel, RuntimeHost } from '../executor.js';
import { DEFAULT_RUNTIME_IMAGES, MODEL_ID_HASH_LABEL, modelIdHash, runtimeManifests, runtimeName } from './runtimeManifests.js';
import { createKubernetesRuntimeHost } from './runtimes.js';
import { adapterFolder, adaptersConfigMapName } from './vllmAdapters.js';

/**
 * Issue 18: LoRA adapters on vLLM pods. The manifests of a vLLM model with adapters (LoRA flags, runtime
 * updating, the copying sidecar); and the host against the Kubernetes API double with two vLLM-shaped
 * pods (vLLM's real routes: GET /v1/models listing adapters with their `parent`, POST
 * /v1/load_lora_adapter, which fails until the adapter's folder is there, /v1/unload_lora_adapter,
 * /v1/chat/completions naming the adapter): an ft: request loads its adapter on one pod and goes there,
 * a second adapter goes to the other pod, and adapters no longer served are unloaded.
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
  id: 'llama-8b',
  source: 's3://models/mariner/models/tenant-1/llama-8b',
  formats: ['HUGGING_FACE'],
  gpu: 1,
  replicas: 2,
  extraArgs: ['--max-lora-rank', '64'],
  loraAdapters: ['ft:llama-8b:a-111111', 'ft:llama-8b:b-222222'],
};
const [A, B] = base.loraAdapters as [string, string];
const sourceOf = (id: string) => `fine-tuning/tenant-1/${id.slice(-6)}/output`;

/** A vLLM-shaped runtime pod: adapters load from folders that "exist" once the sidecar copied them. */
async function startVllmPod(name: string, folders: Set<string>) {
  const loaded = new Set<string>();
  const calls: string[] = [];
  const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const read = async (req: IncomingMessage) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    return JSON.parse(text || '{}') as Record<string, string>;
  };
  const server = http.createServer((req, res) => {
    void (async () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        return json(res, 200, { object: 'list', data: [{ id: base.id, parent: null }, ...[...loaded].map((id) => ({ id, parent: base.id }))] });
      }
      const body = await read(req);
      calls.push(`${req.url} ${body['lora_name'] ?? body['model']}`);
      if (req.url === '/v1/load_lora_adapter') {
        if (loaded.has(body['lora_name']!))
          return json(res, 400, { object: 'error', message: `The lora adapter '${body['lora_name']}' has already been loaded.` });
        if (!folders.has(body['lora_path']!))
          return json(res, 400, { object: 'error', message: `Loading lora ${body['lora_name']} failed: No adapter found for ${body['lora_path']}` });
        loaded.add(body['lora_name']!);
        return res.writeHead(200).end(`Success: LoRA adapter '${body['lora_name']}' added successfully.`);
      }
      if (req.url === '/v1/unload_lora_adapter') {
        if (!loaded.delete(body['lora_name']!)) return json(res, 404, { object: 'error', message: `The lora adapter '${body['lora_name']}' cannot be found.` });
        return res.writeHead(200).end(`Success: LoRA adapter '${body['lora_name']}' removed successfully.`);
      }
      if (req.url === '/v1/chat/completions') {
        if (body['model'] !== base.id && !loaded.has(body['model']!))
          return json(res, 404, { object: 'error', message: `The model \`${body['model']}\` does not exist.` });
        return json(res, 200, {
          object: 'chat.completion',
          model: body['model'],
          choices: [{ index: 0, message: { role: 'assistant', content: `from ${name}` } }],
        });
      }
      json(res, 404, { object: 'error', message: 'not found' });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { name, loaded, calls, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((r) => server.close(r)) };
}

describe('the manifests of a vLLM model with LoRA adapters', () => {
  const options = { namespace: NS, weights: { objectStore: S3, credentialsSecret: 'runtime-s3' }, images: DEFAULT_RUNTIME_IMAGES };

  it('run vLLM with LoRA enabled and runtime loading allowed, the model config’s limits kept, and a sidecar copying the listed adapters', () => {
    const pod = runtimeManifests(base, options).statefulSet.spec!.template.spec!;
    const runtime = pod.containers[0]!;
    expect(runtime.args).toEqual([
      ...['--model', '/models/model', '--served-model-name', base.id, '--port', '8000'],
      ...['--enable-lora', '--max-loras', '4'],
      // --max-lora-rank comes from the model config's extraArgs, not the default.
      ...['--max-lora-rank', '64'],
    ]);
    expect(runtime.env).toEqual([{ name: 'VLLM_ALLOW_RUNTIME_LORA_UPDATING', value: 'True' }]);
    const sidecar = pod.containers[1]!;
    expect(sidecar).toMatchObject({ name: 'sync-adapters', image: 'amazon/aws-cli:latest', envFrom: [{ secretRef: { name: 'runtime-s3' } }] });
    expect(sidecar.env).toContainEqual({ name: 'AWS_ENDPOINT_URL', value: 'http://minio.storage:9000' });
    expect(sidecar.command!.at(-1)).toContain('aws s3 cp --recursive');
    expect(sidecar.volumeMounts).toContainEqual({ name: 'adapters-list', mountPath: '/etc/mariner-adapters', readOnly: true });
    expect(pod.volumes).toContainEqual({ name: 'adapters-list', configMap: { name: adaptersConfigMapName(runtimeName(base.id)), optional: true } });
  });

  it('leave a model without adapters as it was (no LoRA flags, no sidecar)', () => {
    const pod = runtimeManifests({ ...base, loraAdapters: [], extraArgs: [] }, options).statefulSet.spec!.template.spec!;
    expect(pod.containers).toHaveLength(1);
    expect(pod.containers[0]!.args).not.toContain('--enable-lora');
    expect(pod.containers[0]!.env).toBeUndefined();
  });
});

describe('LoRA adapters on vLLM pods, through the Kubernetes runtime host', () => {
  let apiserver: KubeApiServer;
  let kubeConfig: KubeConfig;
  let host: RuntimeHost;
  let tunnel: http2.Http2Server;
  let client: ClientHttp2Session;
  const folders = new Set<string>();
  let pods: Awaited<ReturnType<typeof startVllmPod>>[];

  beforeAll(async () => {
    apiserver = await startKubeApiServer();
    kubeConfig = kubeConfigFor(apiserver);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    pods = [await startVllmPod(`${runtimeName(base.id)}-0`, folders), await startVllmPod(`${runtimeName(base.id)}-1`, folders)];
    const urls = new Map(pods.map((p) => [p.name, p.url]));
    host = createKubernetesRuntimeHost({
      kubeConfig,
      namespace: NS,
      logger: silentLogger(),
      objectStore: S3,
      readinessTtlMs: 0,
      podUrl: (pod: V1Pod) => urls.get(pod.metadata!.name!),
      adapterLoadTimeoutMs: 20_000,
    });
    await host.reconcile([base]);
    // The StatefulSet's controller and kubelet: two ready pods of the runtime.
    const statefulSet = apiserver.objects('StatefulSet', NS)[0];
    await kubeConfig
      .makeApiClient(AppsV1Api)
      .patchNamespacedStatefulSetStatus(
        { name: runtimeName(base.id), namespace: NS, body: { status: { replicas: 2, readyReplicas: 2 } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    for (const pod of pods) {
      await core.createNamespacedPod({
        namespace: NS,
        body: { metadata: { name: pod.name, labels: statefulSet.spec.template.metadata.labels }, spec: { containers: [{ name: 'runtime', image: 'vllm' }] } },
      });
      await core.patchNamespacedPodStatus(
        { name: pod.name, namespace: NS, body: { status: { podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
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
    for (const pod of pods ?? []) await pod.close();
    await apiserver?.close();
  });

  /** The sidecar's part: the folders of the adapters listed in the ConfigMap appear in the pods. */
  function syncFolders(): string[] {
    const configMap = apiserver.objects('ConfigMap', NS).find((c) => c.metadata.name === adaptersConfigMapName(runtimeName(base.id)));
    const lines: string[] = (configMap?.data?.adapters ?? '').split('\n').filter(Boolean);
    for (const line of lines) folders.add(`/models/adapters/${line.split(' ')[0]}`);
    return lines;
  }

  /** A chat completion of `adapter` as the control plane sends it: to the base model, the adapter in headers. */
  async function chat(adapter: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const stream = client.request({
      ':method': 'POST',
      ':path': agentRoutes.runtime(base.id, '/v1/chat/completions'),
      'content-type': 'application/json',
      [ADAPTER_MODEL_HEADER]: adapter,
      [ADAPTER_SOURCE_HEADER]: sourceOf(adapter),
    });
    stream.end(JSON.stringify({ model: adapter, messages: [{ role: 'user', content: 'Hi' }] }));
    const status = new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    await new Promise((resolve) => stream.once('close', resolve));
    return { status: await status, body: JSON.parse(text) as Record<string, unknown> };
  }

  it('an ft: request waits while its adapter is copied, loads it on one pod and is answered there; later ones go to the same pod', async () => {
    // The sidecar copies once the ConfigMap lists the adapter (a kubelet sync later).
    const sidecar = setInterval(syncFolders, 300);
    const first = await chat(A).finally(() => clearInterval(sidecar));
    expect(first.status).toBe(200);
    expect(first.body['model']).toBe(A);
    const holder = pods.find((p) => p.loaded.has(A))!;
    expect(pods.filter((p) => p.loaded.has(A))).toHaveLength(1);
    expect(first.body['choices']).toEqual([expect.objectContaining({ message: { role: 'assistant', content: `from ${holder.name}` } })]);
    // The ConfigMap names the adapter's folder and its S3 source (the store's bucket and prefix).
    expect(syncFolders()).toEqual([`${adapterFolder(A)} s3://models/mariner/${sourceOf(A)}`]);
    // Loading was tried until the files were there, with vLLM's route and the adapter's folder.
    expect(holder.calls.filter((c) => c.startsWith('/v1/load_lora_adapter')).length).toBeGreaterThanOrEqual(1);

    for (let i = 0; i < 3; i++)
      expect((await chat(A)).body['choices']).toEqual([expect.objectContaining({ message: expect.objectContaining({ content: `from ${holder.name}` }) })]);
    expect(holder.calls.filter((c) => c === `/v1/load_lora_adapter ${A}`).length).toBe(
      holder.calls.filter((c) => c.startsWith('/v1/load_lora_adapter')).length,
    );
    expect(pods.every((p) => p === holder || p.calls.length === 0)).toBe(true);
  });

  it('a second adapter loads on the other pod (adapters spread over the replicas)', async () => {
    const sidecar = setInterval(syncFolders, 100);
    const answer = await chat(B).finally(() => clearInterval(sidecar));
    expect(answer.status).toBe(200);
    const holderA = pods.find((p) => p.loaded.has(A))!;
    const holderB = pods.find((p) => p.loaded.has(B))!;
    expect(holderB).not.toBe(holderA);
    expect(answer.body['choices']).toEqual([expect.objectContaining({ message: expect.objectContaining({ content: `from ${holderB.name}` }) })]);
    expect(syncFolders()).toHaveLength(2);
    // The runtime's status says which pod holds which adapter.
    const [status] = await host.status();
    expect(status!.statusMessage).toBe(`2/2 ready; LoRA adapters loaded: ${[`${holderA.name}: ${A}`, `${holderB.name}: ${B}`].sort().join('; ')}`);
  });

  it('an adapter no longer served (its model deleted or deactivated) is unloaded from its pod and dropped from the list', async () => {
    const holderA = pods.find((p) => p.loaded.has(A))!;
    await host.reconcile([{ ...base, loraAdapters: [B] }]);
    expect(holderA.loaded.has(A)).toBe(false);
    expect(holderA.calls).toContain(`/v1/unload_lora_adapter ${A}`);
    expect(pods.some((p) => p.loaded.has(B))).toBe(true);
    expect(syncFolders()).toEqual([`${adapterFolder(B)} s3://models/mariner/${sourceOf(B)}`]);
    expect(apiserver.objects('Pod', NS).every((p) => p.metadata.labels[MODEL_ID_HASH_LABEL] === modelIdHash(base.id))).toBe(true);
  });
});
