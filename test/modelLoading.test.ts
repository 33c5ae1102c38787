import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type GraphQLResult, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

// The model loader's worker API (LLMariner ModelsWorkerService AcquireUnloadedBaseModel and
// UpdateBaseModelLoadingStatus) and base models made from a File. Every model a test creates is
// acquired within that test: the loaders' queue is the whole tenant's, shared by the file's tests.

const REGISTER = `mutation($name: String!) { registerCluster(input: { name: $name }) { registrationKey cluster { id } } }`;
const TASK = 'modelId sourceRepository source formats destination loadingStatus loadingStatusMessage loadingFailureReason leaseExpiresAt';
const ACQUIRE = `mutation { acquireModelLoad { ${TASK} } }`;
const REPORT = `mutation($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { ${TASK} } }`;
const CREATE = `mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id sourceRepository source formats loadingStatus } }`;
const MODEL = `query($id: ID!) {
  model(id: $id, includeLoading: true) { id source formats loadingStatus loadingStatusMessage loadingFailureReason loadingClusterId activationStatus }
}`;

interface LoadTask {
  modelId: string;
  sourceRepository: string;
  source: string;
  formats: string[];
  destination: string;
  loadingStatus: string;
  loadingStatusMessage: string | null;
  loadingFailureReason: string | null;
  leaseExpiresAt: string | null;
}

interface Loader {
  clusterId: string;
  key: string;
}

const codeOf = (result: GraphQLResult) => result.errors?.[0]?.extensions?.code;

/** A registered cluster, acting through its registration key as its loader would. */
async function registerLoader(t: TestPlatform, name: string): Promise<Loader> {
  const { registerCluster } = await t.gqlOk(REGISTER, { name });
  return { clusterId: registerCluster.cluster.id, key: registerCluster.registrationKey };
}

async function acquire(t: TestPlatform, loader: Loader): Promise<LoadTask | null> {
  return (await t.gqlOk<{ acquireModelLoad: LoadTask | null }>(ACQUIRE, {}, { token: loader.key })).acquireModelLoad;
}

function report(t: TestPlatform, loader: Loader, input: Record<string, unknown>) {
  return t.gql<{ reportModelLoading: LoadTask }>(REPORT, { input }, { token: loader.key });
}

async function createModel(t: TestPlatform, input: Record<string, unknown>) {
  return (await t.gqlOk(CREATE, { input })).createBaseModel;
}

async function model(t: TestPlatform, id: string) {
  return (await t.gqlOk(MODEL, { id })).model;
}

/** Puts a small object in the platform's store, as a loader would after its download. */
async function store(t: TestPlatform, key: string, text = 'weights'): Promise<void> {
  await t.platform.objectStore.put(
    key,
    (async function* () {
      yield Buffer.from(text);
    })(),
  );
}

/** The key under which a task's loader stores the model. */
const destinationKey = (t: TestPlatform, task: LoadTask) => t.platform.objectStore.keyFromUri(task.destination)!;

describe('model loading: the loader worker API', () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('a worker acquires a requested model with where to fetch and store it; nothing is left for a second acquire; the user sees it LOADING on that cluster', async () => {
    const loader = await registerLoader(t, 'loader-one');
    const other = await registerLoader(t, 'loader-two');
    const created = await createModel(t, { id: 'org/first-model', sourceRepository: 'HUGGING_FACE', source: 'org/first-model' });
    expect(created).toMatchObject({ id: 'org-first-model', loadingStatus: 'REQUESTED' });

    const before = Date.now();
    const task = await acquire(t, loader);
    expect(task).toMatchObject({
      modelId: 'org-first-model',
      sourceRepository: 'HUGGING_FACE',
      source: 'org/first-model',
      formats: ['HUGGING_FACE'],
      loadingStatus: 'LOADING',
      loadingStatusMessage: expect.stringContaining('loader-one'),
    });
    expect(task!.destination.endsWith('/')).toBe(true);
    expect(destinationKey(t, task!)).toMatch(/^models\/[^/]+\/org-first-model$/);
    // The default lease: 10 minutes.
    const lease = Date.parse(task!.leaseExpiresAt!);
    expect(lease).toBeGreaterThan(before + 9 * 60_000);
    expect(lease).toBeLessThan(Date.now() + 11 * 60_000);

    expect(await acquire(t, loader)).toBeNull();
    expect(await acquire(t, other)).toBeNull();
    expect(await model(t, 'org-first-model')).toMatchObject({ loadingStatus: 'LOADING', loadingClusterId: loader.clusterId });

    // LOADING is progress: the message changes, the lease is renewed.
    const progress = await report(t, loader, { id: 'org-first-model', status: 'LOADING', message: 'downloading: 40%' });
    expect(progress.errors).toBeUndefined();
    expect(progress.data!.reportModelLoading).toMatchObject({ loadingStatus: 'LOADING', loadingStatusMessage: 'downloading: 40%' });
    expect(Date.parse(progress.data!.reportModelLoading.leaseExpiresAt!)).toBeGreaterThan(lease);
    expect(await model(t, 'org/first-model')).toMatchObject({ loadingStatus: 'LOADING', loadingStatusMessage: 'downloading: 40%' });
  });

  it('concurrent acquires take different models, never the same one twice', async () => {
    const loaders = await Promise.all(['race-a', 'race-b', 'race-c'].map((name) => registerLoader(t, name)));
    const ids = ['race-model-1', 'race-model-2', 'race-model-3'];
    for (const id of ids) await createModel(t, { id, sourceRepository: 'OLLAMA', source: 'tinyllama' });

    const tasks = await Promise.all([...loaders, ...loaders].map((loader) => acquire(t, loader)));
    const taken = tasks.filter((task) => task !== null).map((task) => task.modelId);
    expect(taken.sort()).toEqual(ids);
    expect(tasks.filter((task) => task === null)).toHaveLength(3);
  });

  it('SUCCEEDED with the stored model: it lists as loaded and can be activated; a path with nothing stored, or outside the destination, changes nothing', async () => {
    const loader = await registerLoader(t, 'loader-succeeds');
    await createModel(t, { id: 'org/loadable', sourceRepository: 'HUGGING_FACE', source: 'org/loadable' });
    const task = (await acquire(t, loader))!;
    expect(task.modelId).toBe('org-loadable');

    const missing = await report(t, loader, { id: task.modelId, status: 'SUCCEEDED', formats: ['GGUF'], objectPath: `${task.destination}model.gguf` });
    expect(missing.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.objectPath' });
    expect(missing.errors?.[0]?.message).toMatch(/nothing is stored/);
    await store(t, 'elsewhere/model.gguf');
    const outside = await report(t, loader, {
      id: task.modelId,
      status: 'SUCCEEDED',
      formats: ['GGUF'],
      objectPath: t.platform.objectStore.uri('elsewhere/model.gguf'),
    });
    expect(outside.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.objectPath' });
    const foreign = await report(t, loader, { id: task.modelId, status: 'SUCCEEDED', objectPath: 's3://someone-elses-bucket/model.gguf' });
    expect(foreign.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.objectPath' });
    expect(await model(t, 'org-loadable')).toMatchObject({ loadingStatus: 'LOADING', source: 'org/loadable', formats: ['HUGGING_FACE'] });
    const listed = async () => (await t.gqlOk('{ models(limit: 100) { items { id } } }')).models.items.map((m: { id: string }) => m.id);
    expect(await listed()).not.toContain('org-loadable');

    const key = `${destinationKey(t, task)}/model.gguf`;
    await store(t, key);
    const done = await report(t, loader, {
      id: task.modelId,
      status: 'SUCCEEDED',
      formats: ['GGUF'],
      objectPath: `${task.destination}model.gguf`,
      message: 'converted',
    });
    expect(done.errors).toBeUndefined();
    expect(done.data!.reportModelLoading).toMatchObject({
      loadingStatus: 'SUCCEEDED',
      formats: ['GGUF'],
      leaseExpiresAt: null,
      source: t.platform.objectStore.uri(key),
    });
    expect(await model(t, 'org-loadable')).toMatchObject({
      loadingStatus: 'SUCCEEDED',
      source: t.platform.objectStore.uri(key),
      formats: ['GGUF'],
      loadingStatusMessage: 'converted',
      loadingClusterId: loader.clusterId,
    });
    expect(await listed()).toContain('org-loadable');
    const activated = await t.gqlOk('mutation { activateModel(id: "org-loadable") { activationStatus } }');
    expect(activated.activateModel.activationStatus).toBe('ACTIVE');

    // The load is over: further reports are refused and change nothing.
    const late = await report(t, loader, { id: task.modelId, status: 'FAILED', message: 'too late' });
    expect(codeOf(late)).toBe('FAILED_PRECONDITION');
    expect(await model(t, 'org-loadable')).toMatchObject({ loadingStatus: 'SUCCEEDED', loadingFailureReason: null });
  });

  it('SUCCEEDED with a folder (a Hugging Face model) keeps the formats known so far', async () => {
    const loader = await registerLoader(t, 'loader-folder');
    await createModel(t, { id: 'org/folder-model', sourceRepository: 'HUGGING_FACE', source: 'org/folder-model' });
    const task = (await acquire(t, loader))!;
    await store(t, `${destinationKey(t, task)}/config.json`, '{}');
    await store(t, `${destinationKey(t, task)}/model.safetensors`);
    const done = await report(t, loader, { id: 'org/folder-model', status: 'SUCCEEDED', objectPath: task.destination });
    expect(done.errors).toBeUndefined();
    expect(await model(t, 'org-folder-model')).toMatchObject({
      loadingStatus: 'SUCCEEDED',
      formats: ['HUGGING_FACE'],
      source: t.platform.objectStore.uri(destinationKey(t, task)),
    });
  });

  it('FAILED records the reason the user sees; a failure without a reason is refused', async () => {
    const loader = await registerLoader(t, 'loader-fails');
    await createModel(t, { id: 'org/unreachable', sourceRepository: 'HUGGING_FACE', source: 'org/unreachable' });
    const task = (await acquire(t, loader))!;
    const bare = await report(t, loader, { id: task.modelId, status: 'FAILED' });
    expect(bare.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.message' });
    const failed = await report(t, loader, { id: task.modelId, status: 'FAILED', message: 'repository org/unreachable not found (401)' });
    expect(failed.data!.reportModelLoading).toMatchObject({
      loadingStatus: 'FAILED',
      loadingFailureReason: 'repository org/unreachable not found (401)',
      leaseExpiresAt: null,
    });
    expect(await model(t, 'org-unreachable')).toMatchObject({ loadingStatus: 'FAILED', loadingFailureReason: 'repository org/unreachable not found (401)' });
    // A failed model is not handed out again.
    expect(await acquire(t, loader)).toBeNull();
  });

  it('only the cluster holding the load reports on it; users cannot call the loader API and registration keys cannot call the user API', async () => {
    const holder = await registerLoader(t, 'loader-holder');
    const intruder = await registerLoader(t, 'loader-intruder');
    await createModel(t, { id: 'guarded-model', sourceRepository: 'OLLAMA', source: 'guarded' });

    const early = await report(t, holder, { id: 'guarded-model', status: 'LOADING', message: 'not acquired yet' });
    expect(codeOf(early)).toBe('FAILED_PRECONDITION');
    expect((await report(t, holder, { id: 'no-such-model', status: 'LOADING' })).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');

    const userAcquire = await t.gql(ACQUIRE);
    expect(codeOf(userAcquire)).toBe('FORBIDDEN');
    expect((await acquire(t, holder))!.modelId).toBe('guarded-model');

    const stolen = await report(t, intruder, { id: 'guarded-model', status: 'FAILED', message: 'sabotage' });
    expect(codeOf(stolen)).toBe('FAILED_PRECONDITION');
    expect(stolen.errors?.[0]?.message).toMatch(/another cluster/);
    const userReport = await t.gql(REPORT, { input: { id: 'guarded-model', status: 'FAILED', message: 'by a user' } });
    expect(codeOf(userReport)).toBe('FORBIDDEN');
    expect(await model(t, 'guarded-model')).toMatchObject({ loadingStatus: 'LOADING', loadingFailureReason: null, loadingClusterId: holder.clusterId });

    const workerListsModels = await t.gql('{ models { items { id } } }', {}, { token: holder.key });
    expect(codeOf(workerListsModels)).toBe('FORBIDDEN');
    const workerCreates = await t.gql(CREATE, { input: { id: 'by-a-worker', sourceRepository: 'OLLAMA', source: 'x' } }, { token: holder.key });
    expect(codeOf(workerCreates)).toBe('FORBIDDEN');
  });
});

describe('model loading: a lapsed lease', () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform({ config: { models: { loadLeaseSeconds: 1 } } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('a load whose lease ran out is taken over by another cluster, and the first cluster’s late reports are refused', async () => {
    const crashed = await registerLoader(t, 'crashed-loader');
    const rescuer = await registerLoader(t, 'rescuer');
    await createModel(t, { id: 'org/orphan', sourceRepository: 'HUGGING_FACE', source: 'org/orphan' });
    const first = (await acquire(t, crashed))!;
    expect(first.modelId).toBe('org-orphan');

    // The lease is the database's clock: poll until it has run out (1 s here), as a loader polls.
    let taken: LoadTask | null = null;
    const deadline = Date.now() + 10_000;
    while (!taken && Date.now() < deadline) {
      taken = await acquire(t, rescuer);
      if (!taken) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(taken).toMatchObject({ modelId: 'org-orphan', loadingStatus: 'LOADING', loadingStatusMessage: expect.stringContaining('rescuer') });
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(first.leaseExpiresAt!) - 50);
    expect(await model(t, 'org-orphan')).toMatchObject({ loadingStatus: 'LOADING', loadingClusterId: rescuer.clusterId });

    await store(t, `${destinationKey(t, first)}/model.gguf`);
    const late = await report(t, crashed, { id: 'org-orphan', status: 'SUCCEEDED', formats: ['GGUF'], objectPath: `${first.destination}model.gguf` });
    expect(codeOf(late)).toBe('FAILED_PRECONDITION');
    expect(codeOf(await report(t, crashed, { id: 'org-orphan', status: 'LOADING', message: 'still here' }))).toBe('FAILED_PRECONDITION');
    expect(await model(t, 'org-orphan')).toMatchObject({ loadingStatus: 'LOADING', loadingClusterId: rescuer.clusterId, source: 'org/orphan' });

    const done = await report(t, rescuer, { id: 'org-orphan', status: 'SUCCEEDED', formats: ['GGUF'], objectPath: `${taken!.destination}model.gguf` });
    expect(done.data?.reportModelLoading.loadingStatus).toBe('SUCCEEDED');
  });
});

describe('base models from a File', () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Uploads a file through the REST layer (multipart), as the OpenAI SDK does. */
  async function upload(filename: string, token = t.adminKey): Promise<string> {
    const form = new FormData();
    form.append('purpose', 'user_data');
    form.append('file', new Blob([Buffer.from('GGUF tiny weights')]), filename);
    const response = await fetch(`${t.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
    expect(response.status).toBe(200);
    return ((await response.json()) as { id: string }).id;
  }

  const objectPathOf = async (fileId: string, token = t.adminKey) =>
    (await t.gqlOk(`query($id: ID!) { file(id: $id) { objectStorePath } }`, { id: fileId }, { token })).file.objectStorePath as string;

  it('a base model from a file of the project is REQUESTED with the file’s object as source; a loader can use that object as is', async () => {
    const fileId = await upload('tiny-model.gguf');
    const created = await createModel(t, { id: 'tiny-from-file', sourceRepository: 'FILE', source: fileId });
    const objectPath = await objectPathOf(fileId);
    expect(created).toEqual({ id: 'tiny-from-file', sourceRepository: 'FILE', source: objectPath, formats: ['GGUF'], loadingStatus: 'REQUESTED' });

    const loader = await registerLoader(t, 'file-loader');
    const task = (await acquire(t, loader))!;
    expect(task).toMatchObject({ modelId: 'tiny-from-file', sourceRepository: 'FILE', source: objectPath, formats: ['GGUF'] });
    const done = await report(t, loader, { id: 'tiny-from-file', status: 'SUCCEEDED', objectPath: task.source });
    expect(done.data?.reportModelLoading).toMatchObject({ loadingStatus: 'SUCCEEDED', source: objectPath, formats: ['GGUF'] });
  });

  it('an unknown, malformed or other project’s file id is refused and nothing is created', async () => {
    const other = await projectWithKey(t, 'file-owner-elsewhere');
    const foreignFile = await upload('foreign.gguf', other.key);
    const attempts: [string, string][] = [
      ['file-doesnotexist000000000', 'NOT_FOUND'],
      [foreignFile, 'NOT_FOUND'],
      ['not-a-file', 'BAD_USER_INPUT'],
    ];
    for (const [source, code] of attempts) {
      const result = await t.gql(CREATE, { input: { id: 'never-created', sourceRepository: 'FILE', source } });
      expect(result.errors?.[0]?.extensions).toMatchObject({ code, field: 'input.source' });
    }
    expect(await model(t, 'never-created')).toBeNull();

    // Nor can the other project's file object be named directly as an object-store source.
    const foreignPath = await objectPathOf(foreignFile, other.key);
    const direct = await t.gql(CREATE, { input: { id: 'never-created', sourceRepository: 'OBJECT_STORE', source: foreignPath } });
    expect(direct.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN' });
    expect(await model(t, 'never-created')).toBeNull();

    // Its own project may not make a base model of it either: base models are the platform admins'
    // (the tenant's catalog), through the REST layer too.
    const response = await fetch(`${t.url}/v1/models`, {
      method: 'POST',
      headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'foreign-model', source_repository: 'FILE', file_id: foreignFile }),
    });
    expect(response.status).toBe(403);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/only platform admins/);
    const loader = await registerLoader(t, 'file-drain');
    expect(await acquire(t, loader)).toBeNull();
  });
});
