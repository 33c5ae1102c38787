import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logging.js';
import { startFakeHuggingFace, type FakeHuggingFace } from '../test/support/fakeHuggingFace.js';
import { startFakeOllama, type FakeOllama } from '../test/support/fakeOllama.js';
import { tinyGguf } from '../test/support/tinyGguf.js';
import { startTestPlatform, type TestPlatform } from '../test/support/platform.js';
import { startAgent } from './index.js';
import { startModelLoader, type ModelLoader } from './loader.js';

// The agent's model loader against the real platform (its worker API and object store) and a fake
// Hugging Face Hub and a fake Ollama registry. The loaders' queue is the tenant's: every model a test creates is loaded (or left
// to a later step) within that test. Loads are driven with loadOnce(), except where the loop is tested.

const MiB = 1024 * 1024;
const CREATE = `mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id loadingStatus } }`;
const MODEL = `query($id: ID!) {
  model(id: $id, includeLoading: true) { id source formats loadingStatus loadingStatusMessage loadingFailureReason loadingClusterId }
}`;
const LISTED = '{ models(limit: 100) { items { id } } }';

interface ModelView {
  id: string;
  source: string;
  formats: string[];
  loadingStatus: string;
  loadingStatusMessage: string | null;
  loadingFailureReason: string | null;
  loadingClusterId: string | null;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value, null, 2));
const weights = (bytes: number) => randomBytes(bytes);

const repos = {
  'acme/tiny-llm': {
    'config.json': json({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }),
    'tokenizer.json': json({ version: '1.0', model: { type: 'BPE' } }),
    'model.safetensors': weights(4 * MiB),
  },
  'meta/gated-model': {
    'config.json': json({ model_type: 'llama' }),
    'model.safetensors': weights(64 * 1024),
  },
  'acme/interrupted': {
    'config.json': json({ model_type: 'llama' }),
    'model.safetensors': weights(3 * MiB),
  },
  'acme/flaky': {
    'config.json': json({ model_type: 'llama' }),
    'nested/weights.safetensors': weights(2 * MiB),
  },
  'acme/breaks': {
    'config.json': json({ model_type: 'llama' }),
    'model.safetensors': weights(2 * MiB),
  },
  'acme/tiny-gguf': {
    'README.md': Buffer.from('# tiny GGUF\n'),
    'tiny.Q4_0.gguf': Buffer.concat([Buffer.from('GGUF'), weights(256 * 1024)]),
  },
  'acme/loop-a': { 'config.json': json({ model_type: 'llama' }), 'model.safetensors': weights(1 * MiB) },
  'acme/loop-b': { 'config.json': json({ model_type: 'llama' }), 'model.safetensors': weights(1 * MiB) },
};

describe('the agent’s model loader', () => {
  let t: TestPlatform;
  let hub: FakeHuggingFace;
  let ollama: FakeOllama;
  const ollamaGguf = tinyGguf({ seed: 7 });
  let registrationKey: string;
  let clusterId: string;
  const loaders: ModelLoader[] = [];

  beforeAll(async () => {
    // A short lease, so that progress reports (every third of it) show and a lapsed load is retried quickly.
    [t, hub, ollama] = await Promise.all([
      startTestPlatform({ config: { models: { loadLeaseSeconds: 2 } } }),
      startFakeHuggingFace(repos, { gated: ['meta/gated-model'], tokens: ['hf_granted'], tokensWithoutAccess: ['hf_not_granted'] }),
      startFakeOllama({
        'tinyllama:1.1b': {
          gguf: ollamaGguf,
          template: '<|user|>\n{{ .Prompt }}</s>\n<|assistant|>\n',
          params: { stop: ['</s>'] },
          license: 'Apache License 2.0',
        },
      }),
    ]);
    const { registerCluster } = await t.gqlOk(`mutation { registerCluster(input: { name: "loader-cluster" }) { registrationKey cluster { id } } }`);
    registrationKey = registerCluster.registrationKey;
    clusterId = registerCluster.cluster.id;
  });
  afterEach(async () => {
    await Promise.all(loaders.splice(0).map((loader) => loader.close()));
  });
  afterAll(async () => {
    await hub?.close();
    await ollama?.close();
    await t?.close();
  });

  function loader(options: { token?: string; pollIntervalMs?: number; concurrency?: number } = {}): ModelLoader {
    const started = startModelLoader({
      graphqlUrl: t.graphqlUrl,
      registrationKey,
      objectStore: t.platform.objectStore,
      logger: silentLogger(),
      huggingFace: { endpoint: hub.url, token: options.token },
      ollama: { registry: ollama.url },
      pollIntervalMs: options.pollIntervalMs ?? 0,
      concurrency: options.concurrency,
    });
    loaders.push(started);
    return started;
  }

  async function createModel(input: { id: string; sourceRepository: string; source: string }): Promise<void> {
    expect((await t.gqlOk(CREATE, { input })).createBaseModel.loadingStatus).toBe('REQUESTED');
  }

  const model = async (id: string): Promise<ModelView> => (await t.gqlOk(MODEL, { id })).model;
  const listed = async (): Promise<string[]> => (await t.gqlOk(LISTED)).models.items.map((m: { id: string }) => m.id);

  /** Polls the model (the platform emits no event for it) until `check` holds. */
  async function modelUntil(id: string, check: (m: ModelView) => boolean, what: string): Promise<ModelView> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const current = await model(id);
      if (check(current)) return current;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${id}: ${what} (last: ${JSON.stringify(current)})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The keys stored under a model's destination, `models/<tenant>/<model id>/`. */
  async function storedUnder(modelId: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const object of t.platform.objectStore.list('models/')) {
      if (object.key.split('/')[2] === modelId) keys.push(object.key);
    }
    return keys;
  }

  async function read(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await t.platform.objectStore.get(key)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async function put(key: string, bytes: Buffer): Promise<void> {
    await t.platform.objectStore.put(
      key,
      (async function* () {
        yield bytes;
      })(),
    );
  }

  it('a Hugging Face repository is streamed file by file into the model’s folder, reporting progress; the model then lists as loaded, formats HUGGING_FACE, its files byte-identical', async () => {
    await createModel({ id: 'acme/tiny-llm', sourceRepository: 'HUGGING_FACE', source: 'acme/tiny-llm' });
    expect(await listed()).not.toContain('acme-tiny-llm');
    const pause = hub.pauseDownload('acme/tiny-llm', 'model.safetensors', 1 * MiB);
    const loading = loader().loadOnce();
    await pause.reached;

    // LOADING reports (each renews the lease) say how far the download is.
    const during = await modelUntil('acme-tiny-llm', (m) => /model\.safetensors/.test(m.loadingStatusMessage ?? ''), 'progress on the weights');
    expect(during).toMatchObject({ loadingStatus: 'LOADING', loadingClusterId: clusterId });
    expect(during.loadingStatusMessage).toMatch(
      /^downloaded [\d.]+ (KiB|MiB) of 4\.0 MiB \(file 3 of 3: model\.safetensors\) from Hugging Face acme\/tiny-llm$/,
    );
    expect(await listed()).not.toContain('acme-tiny-llm');

    pause.release();
    expect(await loading).toBe('acme-tiny-llm');
    const loaded = await model('acme-tiny-llm');
    expect(loaded).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['HUGGING_FACE'], loadingFailureReason: null });
    expect(loaded.loadingStatusMessage).toMatch(/^downloaded 3 files \(4\.0 MiB\) from Hugging Face acme\/tiny-llm at [0-9a-f]{40}$/);
    const folder = t.platform.objectStore.keyFromUri(loaded.source)!;
    expect(folder).toMatch(/^models\/[^/]+\/acme-tiny-llm$/);
    for (const [name, bytes] of Object.entries(repos['acme/tiny-llm'])) {
      expect((await read(`${folder}/${name}`)).equals(bytes)).toBe(true);
    }
    expect((await storedUnder('acme-tiny-llm')).sort()).toEqual(
      Object.keys(repos['acme/tiny-llm'])
        .map((name) => `${folder}/${name}`)
        .sort(),
    );
    expect(await listed()).toContain('acme-tiny-llm');

    // The weights came from the CDN (another origin) through the hub's redirect.
    expect(hub.requests.some((r) => r.server === 'cdn')).toBe(true);
  });

  it('a gated repository fails with what to do without a token, and with a token lacking access; with a granted token it loads, and the token never reaches the CDN', async () => {
    await createModel({ id: 'meta/gated-model', sourceRepository: 'HUGGING_FACE', source: 'meta/gated-model' });
    expect(await loader().loadOnce()).toBe('meta-gated-model');
    const anonymous = await model('meta-gated-model');
    expect(anonymous.loadingStatus).toBe('FAILED');
    expect(anonymous.loadingFailureReason).toMatch(/gated.*set HF_TOKEN/);
    expect(await storedUnder('meta-gated-model')).toEqual([]);
    expect(await listed()).not.toContain('meta-gated-model');

    await t.gqlOk('mutation { deleteModel(id: "meta-gated-model") { deleted } }');
    await createModel({ id: 'meta/gated-model', sourceRepository: 'HUGGING_FACE', source: 'meta/gated-model' });
    expect(await loader({ token: 'hf_not_granted' }).loadOnce()).toBe('meta-gated-model');
    expect((await model('meta-gated-model')).loadingFailureReason).toMatch(/has no access.*request access at .*meta\/gated-model/);

    await t.gqlOk('mutation { deleteModel(id: "meta-gated-model") { deleted } }');
    await createModel({ id: 'meta/gated-model', sourceRepository: 'HUGGING_FACE', source: 'meta/gated-model' });
    const since = hub.requests.length;
    expect(await loader({ token: 'hf_granted' }).loadOnce()).toBe('meta-gated-model');
    const loaded = await model('meta-gated-model');
    expect(loaded).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['HUGGING_FACE'] });
    const folder = t.platform.objectStore.keyFromUri(loaded.source)!;
    expect((await read(`${folder}/model.safetensors`)).equals(repos['meta/gated-model']['model.safetensors'])).toBe(true);
    const requests = hub.requests.slice(since);
    expect(requests.filter((r) => r.server === 'hub').every((r) => r.authorization === 'Bearer hf_granted')).toBe(true);
    expect(requests.filter((r) => r.server === 'cdn')).not.toHaveLength(0);
    expect(requests.filter((r) => r.server === 'cdn').every((r) => r.authorization === undefined)).toBe(true);
  });

  it('an unknown repository fails: no such repository, with the hint for private ones', async () => {
    await createModel({ id: 'nobody/nothing', sourceRepository: 'HUGGING_FACE', source: 'nobody/nothing' });
    expect(await loader().loadOnce()).toBe('nobody-nothing');
    const failed = await model('nobody-nothing');
    expect(failed.loadingStatus).toBe('FAILED');
    expect(failed.loadingFailureReason).toMatch(/^no such repository on Hugging Face: nobody\/nothing \(if it is private or gated, set HF_TOKEN/);
  });

  it('a repository of one GGUF file loads as that file, formats GGUF', async () => {
    await createModel({ id: 'acme/tiny-gguf', sourceRepository: 'HUGGING_FACE', source: 'acme/tiny-gguf' });
    expect(await loader().loadOnce()).toBe('acme-tiny-gguf');
    const loaded = await model('acme-tiny-gguf');
    expect(loaded).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['GGUF'] });
    const key = t.platform.objectStore.keyFromUri(loaded.source)!;
    expect(key).toMatch(/^models\/[^/]+\/acme-tiny-gguf\/tiny\.Q4_0\.gguf$/);
    expect((await read(key)).equals(repos['acme/tiny-gguf']['tiny.Q4_0.gguf'])).toBe(true);
  });

  it('a download cut off mid-file is retried, and the model loads whole', async () => {
    await createModel({ id: 'acme/flaky', sourceRepository: 'HUGGING_FACE', source: 'acme/flaky' });
    const pause = hub.pauseDownload('acme/flaky', 'nested/weights.safetensors', 512 * 1024);
    const loading = loader().loadOnce();
    await pause.reached;
    pause.cut();
    expect(await loading).toBe('acme-flaky');
    const loaded = await model('acme-flaky');
    expect(loaded.loadingStatus).toBe('SUCCEEDED');
    const folder = t.platform.objectStore.keyFromUri(loaded.source)!;
    expect((await read(`${folder}/nested/weights.safetensors`)).equals(repos['acme/flaky']['nested/weights.safetensors'])).toBe(true);
  });

  it('a download that fails midway is FAILED and leaves nothing stored under the model’s destination', async () => {
    await createModel({ id: 'acme/breaks', sourceRepository: 'HUGGING_FACE', source: 'acme/breaks' });
    const pause = hub.pauseDownload('acme/breaks', 'model.safetensors', 256 * 1024);
    const loading = loader().loadOnce();
    await pause.reached;
    // config.json is stored by now; the weights break off and the retry finds them gone.
    expect(await storedUnder('acme-breaks')).toHaveLength(1);
    hub.failNext(1, 404);
    pause.cut();
    expect(await loading).toBe('acme-breaks');
    const failed = await model('acme-breaks');
    expect(failed.loadingStatus).toBe('FAILED');
    expect(failed.loadingFailureReason).toMatch(/Hugging Face answered 404 for model\.safetensors of acme\/breaks/);
    expect(await storedUnder('acme-breaks')).toEqual([]);
  });

  it('a model already in the object store loads as stored: a GGUF object, or a Hugging Face folder; nothing there fails', async () => {
    const gguf = Buffer.concat([Buffer.from('GGUF'), weights(1024)]);
    await put('shared/models/tiny.gguf', gguf);
    await put('shared/models/hf-folder/config.json', json({ model_type: 'llama' }));
    await put('shared/models/hf-folder/model.safetensors', weights(1024));
    const store = t.platform.objectStore;

    await createModel({ id: 'stored-gguf', sourceRepository: 'OBJECT_STORE', source: store.uri('shared/models/tiny.gguf') });
    expect(await loader().loadOnce()).toBe('stored-gguf');
    expect(await model('stored-gguf')).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['GGUF'], source: store.uri('shared/models/tiny.gguf') });

    await createModel({ id: 'stored-folder', sourceRepository: 'OBJECT_STORE', source: store.uri('shared/models/hf-folder') });
    expect(await loader().loadOnce()).toBe('stored-folder');
    expect(await model('stored-folder')).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['HUGGING_FACE'], source: store.uri('shared/models/hf-folder') });

    await createModel({ id: 'stored-missing', sourceRepository: 'OBJECT_STORE', source: store.uri('shared/models/missing.gguf') });
    expect(await loader().loadOnce()).toBe('stored-missing');
    expect(await model('stored-missing')).toMatchObject({
      loadingStatus: 'FAILED',
      loadingFailureReason: `nothing is stored at ${store.uri('shared/models/missing.gguf')}`,
    });
    // The sources are used where they are: nothing was copied.
    expect([...(await storedUnder('stored-gguf')), ...(await storedUnder('stored-folder'))]).toEqual([]);
    expect(await listed()).toEqual(expect.arrayContaining(['stored-gguf', 'stored-folder']));
  });

  it('a model from an uploaded GGUF File loads as that file, formats GGUF', async () => {
    const form = new FormData();
    form.append('purpose', 'user_data');
    form.append('file', new Blob([Buffer.concat([Buffer.from('GGUF'), weights(2048)])]), 'uploaded.gguf');
    const response = await fetch(`${t.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.adminKey}` }, body: form });
    expect(response.status).toBe(200);
    const fileId = ((await response.json()) as { id: string }).id;
    const objectPath = (await t.gqlOk(`query($id: ID!) { file(id: $id) { objectStorePath } }`, { id: fileId })).file.objectStorePath;

    await createModel({ id: 'from-a-file', sourceRepository: 'FILE', source: fileId });
    expect(await loader().loadOnce()).toBe('from-a-file');
    expect(await model('from-a-file')).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['GGUF'], source: objectPath });
  });

  it('a Whisper model from an uploaded ggml-*.bin File loads as that file, formats WHISPER_GGML (the transcription runtime serves it)', async () => {
    const form = new FormData();
    form.append('purpose', 'user_data');
    form.append('file', new Blob([new Uint8Array(weights(2048))]), 'ggml-tiny.en.bin');
    const response = await fetch(`${t.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.adminKey}` }, body: form });
    expect(response.status).toBe(200);
    const fileId = ((await response.json()) as { id: string }).id;
    await createModel({ id: 'whisper-from-a-file', sourceRepository: 'FILE', source: fileId });
    expect(await loader().loadOnce()).toBe('whisper-from-a-file');
    expect(await model('whisper-from-a-file')).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['WHISPER_GGML'] });
  });

  it('an Ollama library model loads as its GGUF (model layer), its template, params and license beside it, each blob checked against its digest', async () => {
    await createModel({ id: 'tinyllama', sourceRepository: 'OLLAMA', source: 'tinyllama:1.1b' });
    // The first download of the model blob arrives corrupted: the digest check catches it and fetches it again.
    ollama.corruptNextModelBlob('tinyllama');
    const before = ollama.requests.length;
    expect(await loader().loadOnce()).toBe('tinyllama');
    const loaded = await model('tinyllama');
    expect(loaded).toMatchObject({ loadingStatus: 'SUCCEEDED', formats: ['GGUF'], loadingFailureReason: null });
    const key = t.platform.objectStore.keyFromUri(loaded.source)!;
    expect(key).toMatch(/\/tinyllama\/model\.gguf$/);
    expect((await read(key)).equals(ollamaGguf)).toBe(true);
    const folder = key.replace(/\/model\.gguf$/, '');
    expect((await read(`${folder}/template`)).toString()).toContain('{{ .Prompt }}');
    expect(JSON.parse((await read(`${folder}/params.json`)).toString())).toEqual({ stop: ['</s>'] });
    expect((await read(`${folder}/license`)).toString()).toBe('Apache License 2.0');
    const paths = ollama.requests.slice(before).map((r) => r.path);
    expect(paths[0]).toBe('/v2/library/tinyllama/manifests/1.1b');
    expect(paths.filter((p) => p.includes('/blobs/sha256:')).length).toBe(5);
    expect(await listed()).toContain('tinyllama');
  });

  it('an Ollama model the library does not have fails with the reason and stores nothing', async () => {
    await createModel({ id: 'no-such-model', sourceRepository: 'OLLAMA', source: 'no-such-model' });
    expect(await loader().loadOnce()).toBe('no-such-model');
    const failed = await model('no-such-model');
    expect(failed.loadingStatus).toBe('FAILED');
    expect(failed.loadingFailureReason).toBe('no such model in the Ollama library: no-such-model:latest (see https://ollama.com/library/no-such-model)');
    expect(await storedUnder('no-such-model')).toEqual([]);
  });

  it('an Ollama blob that never matches its digest fails the load and leaves nothing stored', async () => {
    await createModel({ id: 'corrupt', sourceRepository: 'OLLAMA', source: 'tinyllama:1.1b' });
    ollama.corruptNextModelBlob('tinyllama', 3);
    expect(await loader().loadOnce()).toBe('corrupt');
    const failed = await model('corrupt');
    expect(failed.loadingStatus).toBe('FAILED');
    expect(failed.loadingFailureReason).toMatch(/model\.gguf blob of Ollama tinyllama:1\.1b does not match its manifest: expected sha256:[0-9a-f]{64}/);
    expect(await storedUnder('corrupt')).toEqual([]);
  }, 20_000);

  it('a download interrupted by close() is not loaded and leaves nothing stored; once its lease lapses another loader loads it', async () => {
    await createModel({ id: 'acme/interrupted', sourceRepository: 'HUGGING_FACE', source: 'acme/interrupted' });
    const pause = hub.pauseDownload('acme/interrupted', 'model.safetensors', 1 * MiB);
    const first = loader();
    const loading = first.loadOnce();
    await pause.reached;
    await first.close();
    expect(await loading).toBe('acme-interrupted');
    expect(await model('acme-interrupted')).toMatchObject({ loadingStatus: 'LOADING', loadingFailureReason: null });
    expect(await storedUnder('acme-interrupted')).toEqual([]);
    expect(await listed()).not.toContain('acme-interrupted');
    expect(await first.loadOnce()).toBeNull();

    // The lease (2 s here) is the database's clock: try as a loader's poll would until it lapses.
    const second = loader();
    let taken: string | null = null;
    const deadline = Date.now() + 10_000;
    while (!taken && Date.now() < deadline) {
      taken = await second.loadOnce();
      if (!taken) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(taken).toBe('acme-interrupted');
    const loaded = await model('acme-interrupted');
    expect(loaded.loadingStatus).toBe('SUCCEEDED');
    const folder = t.platform.objectStore.keyFromUri(loaded.source)!;
    expect((await read(`${folder}/model.safetensors`)).equals(repos['acme/interrupted']['model.safetensors'])).toBe(true);
  });

  it('an agent given a loader loads its tenant’s models, and stops it on close', async () => {
    await put('shared/models/agent.gguf', Buffer.from('GGUF agent'));
    const agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey,
      executor: 'local',
      logger: silentLogger(),
      loader: { objectStore: t.platform.objectStore, huggingFace: { endpoint: hub.url }, pollIntervalMs: 50 },
    });
    try {
      await createModel({ id: 'through-the-agent', sourceRepository: 'OBJECT_STORE', source: t.platform.objectStore.uri('shared/models/agent.gguf') });
      expect(await modelUntil('through-the-agent', (m) => m.loadingStatus !== 'REQUESTED' && m.loadingStatus !== 'LOADING', 'its load')).toMatchObject({
        loadingStatus: 'SUCCEEDED',
        formats: ['GGUF'],
        loadingClusterId: clusterId,
      });
    } finally {
      await agent.close();
    }
    // Closed: nothing takes this one.
    await createModel({ id: 'after-the-agent', sourceRepository: 'OLLAMA', source: 'after' });
    expect(await loader().loadOnce()).toBe('after-the-agent');
  });

  it('on its own the loader polls for models and loads up to `concurrency` at once', async () => {
    const pauses = ['acme/loop-a', 'acme/loop-b'].map((repo) => hub.pauseDownload(repo, 'model.safetensors', 64 * 1024));
    await createModel({ id: 'acme/loop-a', sourceRepository: 'HUGGING_FACE', source: 'acme/loop-a' });
    await createModel({ id: 'acme/loop-b', sourceRepository: 'HUGGING_FACE', source: 'acme/loop-b' });
    loader({ pollIntervalMs: 50, concurrency: 2 });
    // Both downloads are under way at the same time.
    await Promise.all(pauses.map((pause) => pause.reached));
    pauses.forEach((pause) => pause.release());
    for (const id of ['acme-loop-a', 'acme-loop-b']) {
      expect(await modelUntil(id, (m) => m.loadingStatus !== 'LOADING', 'the end of its load')).toMatchObject({
        loadingStatus: 'SUCCEEDED',
        formats: ['HUGGING_FACE'],
      });
    }
  });
});
