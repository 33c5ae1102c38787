import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INTERNAL_TOKEN_HEADER } from '../../lib/identity.js';
import { loadedModelFromFile } from '../support/loadedModel.js';
import { graphqlCall, startTestPlatform, type GraphQLResult, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { DEFAULT_TENANT_ID } from '../../subgraphs/users/index.js';

// Issue 14, "Organizations isolated from each other", for models and files: org B's owner (and the
// cluster it registers) must not see, run, load, manage, name-probe or copy org A's private models,
// nor change the tenant's catalog, which is the platform admins' (the admin key here).

const REGISTER = `mutation($input: RegisterClusterInput!) { registerCluster(input: $input) { registrationKey cluster { id } } }`;
const ACTIVE = `{ workerActiveModels { id source } }`;
const ACQUIRE = `mutation { acquireModelLoad { modelId source destination } }`;
const REPORT = `mutation($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { modelId } }`;
const CREATE = `mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }`;
const REGISTER_FT = `mutation($input: RegisterFineTunedModelInput!) { registerFineTunedModel(input: $input) { id source } }`;
const MODEL = `query($id: ID!) { model(id: $id, includeLoading: true) { id activationStatus config { runtime { replicas } } } }`;
const LINK = `mutation($input: CreateFileFromObjectPathInput!) { createFileFromObjectPath(input: $input) { id } }`;
const OWNERS = `query($tenantId: ID!, $ids: [ID!]!) { modelOwners(tenantId: $tenantId, ids: $ids) { id organizationId projectId isBaseModel } }`;

type Org = Awaited<ReturnType<typeof projectWithKey>>;

let t: TestPlatform;
let a: Org;
let b: Org;
/** The platform's cluster (registered by the admin), shared with every organization. */
let platformKey: string;
/** Org B's own cluster, registered by B's owner: the rogue worker. */
let rogueKey: string;
/** A platform cluster granted to org A only. */
let aOnlyKey: string;
let aModel: string;
let bModel: string;

const codeOf = (result: GraphQLResult) => result.errors?.[0]?.extensions?.code;
const sdkFor = (key: string) => new OpenAI({ apiKey: key, baseURL: `${t.url}/v1`, maxRetries: 0 });

async function rest(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

/** A file uploaded by `token`'s project, with the object path the platform gave it. */
async function upload(token: string, name: string, text = 'adapter weights'): Promise<{ id: string; objectStorePath: string }> {
  const file = await sdkFor(token).files.create({ file: await toFile(Buffer.from(text), name), purpose: 'user_data' });
  const { file: stored } = await t.gqlOk(`query($id: ID!) { file(id: $id) { objectStorePath } }`, { id: file.id }, { token });
  return { id: file.id, objectStorePath: stored.objectStorePath };
}

async function put(key: string, text = 'weights'): Promise<void> {
  await t.platform.objectStore.put(
    key,
    (async function* () {
      yield Buffer.from(text);
    })(),
  );
}

/** A private fine-tuned model of `org`, registered from its own file and activated. */
async function privateModel(org: Org, suffix: string): Promise<string> {
  const adapter = await upload(org.key, `${suffix}.gguf`);
  const { registerFineTunedModel } = await t.gqlOk(
    REGISTER_FT,
    { input: { baseModelId: 'catalog-chat', suffix, source: adapter.objectStorePath } },
    { token: org.key },
  );
  await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { id } }', { id: registerFineTunedModel.id }, { token: org.key });
  return registerFineTunedModel.id;
}

async function activeIds(workerKey: string): Promise<{ id: string; source: string }[]> {
  return (await t.gqlOk<{ workerActiveModels: { id: string; source: string }[] }>(ACTIVE, {}, { token: workerKey })).workerActiveModels;
}

/** A call to the models subgraph itself, as the inference subgraph makes it (not through the gateway). */
async function callModels(query: string, variables: Record<string, unknown>, system: boolean): Promise<GraphQLResult> {
  const token = await t.platform.tokens.mint('models', 'security-test', null, system);
  const response = await fetch(t.platform.subgraphUrls.models, {
    method: 'POST',
    headers: { 'content-type': 'application/json', [INTERNAL_TOKEN_HEADER]: token },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as GraphQLResult;
}

beforeAll(async () => {
  // No runtime ever answers here: a request waits one second for one.
  t = await startTestPlatform({ config: { inference: { requestWaitSeconds: 1 } } });
  a = await projectWithKey(t, 'Org A', { role: 'OWNER' });
  b = await projectWithKey(t, 'Org B', { role: 'OWNER' });
  platformKey = (await t.gqlOk(REGISTER, { input: { name: 'platform' } })).registerCluster.registrationKey;
  rogueKey = (await t.gqlOk(REGISTER, { input: { name: 'b-own' } }, { token: b.key })).registerCluster.registrationKey;
  aOnlyKey = (await t.gqlOk(REGISTER, { input: { name: 'a-only', sharedWithAllOrganizations: false, grantedOrganizationIds: [a.organizationId] } }))
    .registerCluster.registrationKey;

  // The tenant's catalog, loaded by the platform cluster: one active model, one activated on demand.
  const weights = Buffer.from('GGUF weights');
  await loadedModelFromFile(t, { id: 'catalog-chat', weights, registrationKey: platformKey, input: { isProjectScoped: false } });
  await loadedModelFromFile(t, {
    id: 'catalog-lazy',
    weights,
    registrationKey: platformKey,
    input: { isProjectScoped: false, config: { clusterAllocationPolicy: { enableOnDemandAllocation: true } } },
    activate: false,
  });
  aModel = await privateModel(a, 'a-secret');
  bModel = await privateModel(b, 'b-own');
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe('the worker API: a cluster sees, runs and loads only what its organizations may', () => {
  it("org B's own cluster sees (with sources) only the catalog and B's models, never A's; a cluster granted to A sees A's and not B's", async () => {
    const rogue = await activeIds(rogueKey);
    expect(rogue.map((m) => m.id).sort()).toEqual(['catalog-chat', bModel].sort());
    expect(JSON.stringify(rogue)).not.toContain(a.projectId);
    expect(JSON.stringify(rogue)).not.toContain('a-secret');

    const aOnly = await activeIds(aOnlyKey);
    expect(aOnly.map((m) => m.id).sort()).toEqual(['catalog-chat', aModel].sort());
    // The platform cluster shared with every organization runs them all.
    expect((await activeIds(platformKey)).map((m) => m.id).sort()).toEqual(['catalog-chat', aModel, bModel].sort());
  });

  it("org B's cluster cannot claim a catalog load (its weights would be served to every organization) nor another organization's, and learns nothing of them from reports", async () => {
    await t.gqlOk(CREATE, { input: { id: 'pending-catalog', sourceRepository: 'OLLAMA', source: 'tinyllama', isProjectScoped: false } });
    // A model of the admin's own project: private to the default organization.
    await t.gqlOk(CREATE, { input: { id: 'pending-private', sourceRepository: 'OLLAMA', source: 'tinyllama' } });

    expect((await t.gqlOk(ACQUIRE, {}, { token: rogueKey })).acquireModelLoad).toBeNull();
    // Claiming nothing, the rogue cluster cannot report on the loads either: they are not found, as unknown ids.
    const report = await t.gql(REPORT, { input: { id: 'pending-catalog', status: 'FAILED', message: 'sabotage' } }, { token: rogueKey });
    expect(codeOf(report)).toBe('NOT_FOUND');

    // The platform cluster claims both, oldest first; while it holds them, B's cluster is still told nothing.
    expect((await t.gqlOk(ACQUIRE, {}, { token: platformKey })).acquireModelLoad.modelId).toBe('pending-catalog');
    const held = await t.gql(REPORT, { input: { id: 'pending-catalog', status: 'LOADING', message: 'mine now' } }, { token: rogueKey });
    expect(codeOf(held)).toBe('NOT_FOUND');
    expect(held.errors?.[0]?.message).not.toMatch(/another cluster/);
    // The cluster granted to A only is a platform cluster, but not the default organization's.
    expect((await t.gqlOk(ACQUIRE, {}, { token: aOnlyKey })).acquireModelLoad).toBeNull();
    expect((await t.gqlOk(ACQUIRE, {}, { token: platformKey })).acquireModelLoad.modelId).toBe('pending-private');
    expect((await t.gqlOk(ACQUIRE, {}, { token: rogueKey })).acquireModelLoad).toBeNull();
  });
});

describe('modelOwners: the system query the inference subgraph asks', () => {
  it('answers the owners of the ids that exist in the tenant, only to the system, and is not in the public API', async () => {
    const ids = ['catalog-chat', aModel, bModel, 'no-such-model'];
    const answered = await callModels(OWNERS, { tenantId: DEFAULT_TENANT_ID, ids }, true);
    expect(answered.errors).toBeUndefined();
    expect((answered.data as { modelOwners: unknown[] }).modelOwners).toEqual(
      expect.arrayContaining([
        { id: 'catalog-chat', organizationId: null, projectId: null, isBaseModel: true },
        { id: aModel, organizationId: a.organizationId, projectId: a.projectId, isBaseModel: false },
        { id: bModel, organizationId: b.organizationId, projectId: b.projectId, isBaseModel: false },
      ]),
    );
    expect((answered.data as { modelOwners: unknown[] }).modelOwners).toHaveLength(3);
    const otherTenant = await callModels(OWNERS, { tenantId: 'another-tenant', ids }, true);
    expect((otherTenant.data as { modelOwners: unknown[] }).modelOwners).toEqual([]);

    const tooMany = await callModels(OWNERS, { tenantId: DEFAULT_TENANT_ID, ids: Array.from({ length: 1001 }, (_, i) => `m-${i}`) }, true);
    expect(tooMany.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'ids' });
    const notSystem = await callModels(OWNERS, { tenantId: DEFAULT_TENANT_ID, ids }, false);
    expect(notSystem.data?.['modelOwners']).toBeUndefined();
    expect(notSystem.errors?.length).toBeGreaterThan(0);

    for (const token of [b.key, t.adminKey]) {
      const viaGateway = await graphqlCall(t.graphqlUrl, OWNERS, { tenantId: DEFAULT_TENANT_ID, ids }, { token });
      expect(viaGateway.data ?? null).toBeNull();
      expect(viaGateway.errors?.[0]?.message).toMatch(/modelOwners/);
    }
  });
});

describe('the catalog is the platform admins’', () => {
  it("org B's owner cannot deactivate, activate, reconfigure or delete a catalog model, nor create base models, by GraphQL or REST", async () => {
    const refusals = [
      await t.gql('mutation { deactivateModel(id: "catalog-chat") { id } }', {}, { token: b.key }),
      await t.gql('mutation { updateModelConfig(input: { id: "catalog-chat", config: { runtime: { replicas: 0 } } }) { id } }', {}, { token: b.key }),
      await t.gql('mutation { deleteModel(id: "catalog-chat") { id } }', {}, { token: b.key }),
      await t.gql(CREATE, { input: { id: 'b-catalog', sourceRepository: 'OLLAMA', source: 'tinyllama', isProjectScoped: false } }, { token: b.key }),
      await t.gql(CREATE, { input: { id: 'b-base', sourceRepository: 'OLLAMA', source: 'tinyllama' } }, { token: b.key }),
    ];
    for (const refused of refusals) {
      expect(codeOf(refused)).toBe('FORBIDDEN');
      expect(refused.errors?.[0]?.message).toMatch(/only platform admins/);
    }
    const viaRest = await rest('POST', '/v1/models/catalog-chat:deactivate', b.key);
    expect(viaRest.status).toBe(403);
    expect(viaRest.body.error.message).toMatch(/only platform admins/);
    expect((await rest('PATCH', '/v1/models/catalog-chat', b.key, { model: { config: { runtime_config: { replicas: 0 } } } })).status).toBe(403);
    expect((await rest('DELETE', '/v1/models/catalog-chat', b.key)).status).toBe(403);
    expect((await t.gqlOk(MODEL, { id: 'catalog-chat' })).model).toMatchObject({ activationStatus: 'ACTIVE', config: { runtime: { replicas: 1 } } });

    // Once the admin deactivates it, B cannot activate it back (it has no on-demand allocation).
    await t.gqlOk('mutation { deactivateModel(id: "catalog-chat") { id } }');
    try {
      const activate = await t.gql('mutation { activateModel(id: "catalog-chat") { id } }', {}, { token: b.key });
      expect(codeOf(activate)).toBe('FORBIDDEN');
      expect((await t.gqlOk(MODEL, { id: 'catalog-chat' })).model.activationStatus).toBe('INACTIVE');
    } finally {
      await t.gqlOk('mutation { activateModel(id: "catalog-chat") { id } }');
    }

    // B's owner still manages B's own model.
    await t.gqlOk('mutation($id: ID!) { deactivateModel(id: $id) { id } }', { id: bModel }, { token: b.key });
    await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { id } }', { id: bModel }, { token: b.key });
  });

  it('a catalog model with on-demand allocation is activated by the first inference request of any project, made as its caller', async () => {
    expect((await t.gqlOk(MODEL, { id: 'catalog-lazy' })).model.activationStatus).toBe('INACTIVE');
    // A project owner, not an organization owner: on-demand activation needs no right to manage the catalog.
    const member = await projectWithKey(t, 'Org C', { role: 'READER' });
    // No runtime answers in this platform: the request fails after activating the model, but not for want of rights.
    const outcome = await sdkFor(member.key)
      .chat.completions.create({ model: 'catalog-lazy', messages: [{ role: 'user', content: 'wake up' }] })
      .catch((error: unknown) => error);
    expect(outcome).not.toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((await t.gqlOk(MODEL, { id: 'catalog-lazy' })).model.activationStatus).toBe('ACTIVE');
    // Turning it off again is the admins'.
    expect(codeOf(await t.gql('mutation { deactivateModel(id: "catalog-lazy") { id } }', {}, { token: member.key }))).toBe('FORBIDDEN');
  });
});

describe('model ids do not reveal other organizations’ models', () => {
  it('B registering the suffix A used (even A’s whole tagged suffix) gets a model of its own, not CONFLICT; B cannot create a base model by A’s id', async () => {
    const adapter = await upload(b.key, 'b-adapter.gguf');
    const aSuffix = aModel.slice('ft:catalog-chat:'.length);
    for (const suffix of ['a-secret', aSuffix]) {
      const result = await t.gql<{ registerFineTunedModel: { id: string } }>(
        REGISTER_FT,
        { input: { baseModelId: 'catalog-chat', suffix, source: adapter.objectStorePath } },
        { token: b.key },
      );
      expect(result.errors).toBeUndefined();
      expect(result.data!.registerFineTunedModel.id).toMatch(new RegExp(`^ft:catalog-chat:${suffix}-[a-z0-9]{6}$`));
      expect(result.data!.registerFineTunedModel.id).not.toBe(aModel);
    }
    // Through REST as well: a model of B's own.
    const viaRest = await rest('POST', '/v1/models', b.key, {
      is_fine_tuned_model: true,
      base_model_id: 'catalog-chat',
      suffix: 'a-secret',
      model_file_location: adapter.objectStorePath,
    });
    expect(viaRest.status).toBe(200);
    expect(viaRest.body.id).not.toBe(aModel);
    expect((await t.gql(MODEL, { id: aModel }, { token: b.key })).data?.model).toBeNull();

    const byId = await t.gql(CREATE, { input: { id: aModel, sourceRepository: 'OLLAMA', source: 'tinyllama' } }, { token: b.key });
    expect(codeOf(byId)).toBe('FORBIDDEN');
    // Not even a platform admin learns of it: fine-tuned ids are not base models'.
    const admin = await t.gql(CREATE, { input: { id: aModel, sourceRepository: 'OLLAMA', source: 'tinyllama' } });
    expect(admin.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.id' });
  });

  it("a fine-tuning job's output is registered with its job's suffix by its project only, once; another project cannot take it", async () => {
    const jobId = 'ftjob-Q7xk2PzR9mWb4TnC8vLd3Hs1';
    const output = `models/${DEFAULT_TENANT_ID}/fine-tuned/${jobId}`;
    await put(`${output}/adapter_model.safetensors`);
    const input = { baseModelId: 'catalog-chat', suffix: 'tuned-q7xk2p', source: t.platform.objectStore.uri(output) };
    const { registerFineTunedModel } = await t.gqlOk(REGISTER_FT, { input }, { token: a.key });
    expect(registerFineTunedModel.id).toBe('ft:catalog-chat:tuned-q7xk2p');
    // The job registering again (its first answer lost) is told the model exists: it is the project's own.
    expect(codeOf(await t.gql(REGISTER_FT, { input }, { token: a.key }))).toBe('CONFLICT');

    for (const attempt of [
      input,
      { ...input, suffix: 'mine-q7xk2p' },
      { ...input, suffix: 'mine' },
      { ...input, source: `${output}/adapter_model.safetensors` },
    ]) {
      const stolen = await t.gql(REGISTER_FT, { input: attempt }, { token: b.key });
      expect(codeOf(stolen)).toBe('FORBIDDEN');
    }
  });
});

describe("objects Mariner writes cannot be named by path: no copying another organization's model or file", () => {
  it("B cannot link A's fine-tuning output, a model's weights or A's files as a File of its own, however the path is written; paths elsewhere still work", async () => {
    const jobOutput = `models/${DEFAULT_TENANT_ID}/fine-tuned/ftjob-Lnk0000000000000000000001/adapter_model.safetensors`;
    await put(jobOutput, 'private adapter');
    const aFile = await upload(a.key, 'a-notes.txt', 'org A notes');
    const uri = (key: string) => t.platform.objectStore.uri(key);
    const root = uri('probe').replace(/probe$/, '');
    const attempts = [
      jobOutput,
      uri(jobOutput),
      `models/${DEFAULT_TENANT_ID}/catalog-chat/model.gguf`,
      aFile.objectStorePath,
      t.platform.objectStore.keyFromUri(aFile.objectStorePath)!,
      `./${jobOutput}`,
      `datasets/../${jobOutput}`,
      jobOutput.replace('models/', 'models//'),
      `${root}datasets/../${jobOutput}`,
      `${root}datasets/%2e%2e/${jobOutput}`,
      `${root}%6Dodels/${jobOutput.slice('models/'.length)}`,
      `${root}.//${jobOutput}`,
      `Models/${jobOutput.slice('models/'.length)}`,
    ];
    const before = (await sdkFor(b.key).files.list()).data.length;
    for (const objectPath of attempts) {
      const result = await t.gql(LINK, { input: { objectPath, purpose: 'user_data' } }, { token: b.key });
      expect([objectPath, codeOf(result)]).toEqual([objectPath, expect.stringMatching(/^(FORBIDDEN|BAD_USER_INPUT)$/)]);
    }
    const viaRest = await rest('POST', '/v1/files:createFromObjectPath', b.key, { object_path: uri(jobOutput), purpose: 'user_data' });
    expect(viaRest.status).toBe(403);
    expect(viaRest.body.error.message).toMatch(/models\/ is where Mariner keeps/);
    expect((await sdkFor(b.key).files.list()).data.length).toBe(before);

    await put('datasets/b/notes.txt', 'shared notes');
    const linked = await rest('POST', '/v1/files:createFromObjectPath', b.key, { object_path: uri('datasets/b/notes.txt'), purpose: 'user_data' });
    expect(linked.status).toBe(200);
    expect(await (await sdkFor(b.key).files.content(linked.body.id)).text()).toBe('shared notes');
  });

  it("nor as a model's source: fine-tuned from another project's objects, or a catalog model from a project's file, output or private model", async () => {
    const jobOutput = `models/${DEFAULT_TENANT_ID}/fine-tuned/ftjob-Src0000000000000000000001`;
    await put(`${jobOutput}/adapter_model.safetensors`, 'private adapter');
    const aFile = await upload(a.key, 'a-adapter.gguf');
    for (const source of [aFile.objectStorePath, `models/${DEFAULT_TENANT_ID}/catalog-chat/model.gguf`, `${jobOutput}/adapter_model.safetensors`]) {
      const stolen = await t.gql(REGISTER_FT, { input: { baseModelId: 'catalog-chat', suffix: 'copy', source } }, { token: b.key });
      expect([source, codeOf(stolen)]).toEqual([source, 'FORBIDDEN']);
    }

    // A model of another project of the admin's own organization: the admin does not see it either.
    const { organizations } = await t.gqlOk(`{ organizations(limit: 100) { items { id isDefault } } }`);
    const defaultOrg = organizations.items.find((o: { isDefault: boolean }) => o.isDefault).id;
    const { createProject } = await t.gqlOk(`mutation($o: ID!) { createProject(input: { organizationId: $o, title: "Research" }) { id } }`, { o: defaultOrg });
    const { createApiKey } = await t.gqlOk(`mutation($p: ID!) { createApiKey(input: { name: "research", projectId: $p }) { secret } }`, {
      p: createProject.id,
    });
    await t.gqlOk(CREATE, { input: { id: 'research-private', sourceRepository: 'OLLAMA', source: 'tinyllama' } }, { token: createApiKey.secret });
    await put(`models/${DEFAULT_TENANT_ID}/research-private/model.gguf`);
    const sources = [aFile.objectStorePath, `${jobOutput}/adapter_model.safetensors`, `models/${DEFAULT_TENANT_ID}/research-private/model.gguf`];
    for (const source of sources) {
      const copied = await t.gql(CREATE, { input: { id: 'copied', sourceRepository: 'OBJECT_STORE', source, isProjectScoped: false } });
      expect([source, codeOf(copied)]).toEqual([source, 'FORBIDDEN']);
    }
    // Catalog weights staged by the admin in the tenant's area, or anywhere outside Mariner's areas, are sources.
    for (const [id, source] of [
      ['staged', `models/${DEFAULT_TENANT_ID}/uploads/staged/model.gguf`],
      ['shared', 'shared/models/tiny.gguf'],
    ]) {
      const created = await t.gql(CREATE, {
        input: { id, sourceRepository: 'OBJECT_STORE', source: t.platform.objectStore.uri(source!), isProjectScoped: false },
      });
      expect(created.errors).toBeUndefined();
    }
  });
});
