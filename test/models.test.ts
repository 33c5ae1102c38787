import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

let t: TestPlatform;
let client: OpenAI;

async function rest(method: string, path: string, body?: unknown, token = t.adminKey) {
  const response = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

/** An adapter file in the platform's store, as a fine-tuning job would leave it. */
async function adapterPath(): Promise<string> {
  const file = await client.files.create({ file: await toFile(Buffer.from('adapter weights'), 'adapter.bin'), purpose: 'user_data' });
  const { file: stored } = await t.gqlOk(`query($id: ID!) { file(id: $id) { objectStorePath } }`, { id: file.id });
  return stored.objectStorePath;
}

beforeAll(async () => {
  t = await startTestPlatform();
  client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await t?.close();
});

describe('models: OpenAI routes and LLMariner extras', () => {
  it('a base model from a repository is recorded as REQUESTED and hidden from the list until loaded', async () => {
    const created = await rest('POST', '/v1/models', { id: 'meta-llama/Llama-3.1-8B-Instruct', source_repository: 'HUGGING_FACE' });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      id: 'meta-llama-Llama-3.1-8B-Instruct',
      object: 'model',
      loading_status: 'MODEL_LOADING_STATUS_REQUESTED',
      activation_status: 'ACTIVATION_STATUS_INACTIVE',
      formats: ['MODEL_FORMAT_HUGGING_FACE'],
    });
    const listed = await client.models.list();
    expect(listed.data.map((m) => m.id)).not.toContain('meta-llama-Llama-3.1-8B-Instruct');
    const withLoading = await rest('GET', '/v1/models?include_loading_models=true');
    expect(withLoading.body.data.map((m: { id: string }) => m.id)).toContain('meta-llama-Llama-3.1-8B-Instruct');
    // Either form of the id finds it (LLMariner normalises `/` to `-`).
    const byRepoName = await rest('GET', '/v1/models/meta-llama/Llama-3.1-8B-Instruct?include_loading_model=true');
    expect(byRepoName.body.id).toBe('meta-llama-Llama-3.1-8B-Instruct');
    const again = await rest('POST', '/v1/models', { id: 'meta-llama/Llama-3.1-8B-Instruct', source_repository: 'HUGGING_FACE' });
    expect(again.status).toBe(409);
  });

  it('a fine-tuned model is registered, listed, activated, refused deletion while active, then deleted', async () => {
    await rest('POST', '/v1/models', { id: 'tiny-base', source_repository: 'OLLAMA' });
    const registered = await rest('POST', '/v1/models', {
      is_fine_tuned_model: true,
      base_model_id: 'tiny-base',
      suffix: 'support-bot',
      model_file_location: await adapterPath(),
    });
    expect(registered.status).toBe(200);
    // A registration other than a fine-tuning job's gets a random tag (ids never collide with another project's).
    const id: string = registered.body.id;
    expect(id).toMatch(/^ft:tiny-base:support-bot-[a-z0-9]{6}$/);
    expect(registered.body).toMatchObject({ is_base_model: false, base_model_id: 'tiny-base', loading_status: 'MODEL_LOADING_STATUS_SUCCEEDED' });

    const model = await client.models.retrieve(id);
    expect(model).toMatchObject({ id, object: 'model', owned_by: expect.any(String) });
    expect((await client.models.list()).data.map((m) => m.id)).toContain(id);

    expect((await rest('POST', `/v1/models/${id}:activate`)).status).toBe(200);
    const refused = await client.models.delete(id).catch((e) => e);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect(refused.message).toMatch(/active/);
    expect((await client.models.retrieve(id)).id).toBe(id);

    expect((await rest('POST', `/v1/models/${id}:deactivate`)).status).toBe(200);
    expect(await client.models.delete(id)).toEqual({ id, object: 'model', deleted: true });
    await expect(client.models.retrieve(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('a model not yet loaded cannot be activated', async () => {
    await rest('POST', '/v1/models', { id: 'waiting-model', source_repository: 'OLLAMA' });
    const result = await rest('POST', '/v1/models/waiting-model:activate');
    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(/not loaded/);
  });

  it('the runtime config is updated with PATCH', async () => {
    await rest('POST', '/v1/models', { id: 'configurable', source_repository: 'OLLAMA', config: { runtime_config: { resources: { gpu: 1 } } } });
    const patched = await rest('PATCH', '/v1/models/configurable', {
      model: { config: { runtime_config: { replicas: 3, extra_args: ['--max-model-len=4096'] } } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.config.runtime_config).toEqual({ resources: { gpu: 1 }, replicas: 3, extra_args: ['--max-model-len=4096'] });
    const bad = await rest('PATCH', '/v1/models/configurable', { model: { config: { runtime_config: { resources: { gpu: -1 } } } } });
    expect(bad.status).toBe(400);
  });

  it('bad input is a 400 naming the parameter; nothing is created', async () => {
    const badId = await rest('POST', '/v1/models', { id: '../etc', source_repository: 'OLLAMA' });
    expect(badId.status).toBe(400);
    const badSource = await rest('POST', '/v1/models', { id: 'x', source_repository: 'OBJECT_STORE', model_file_location: 's3://someone-elses-bucket/model' });
    expect(badSource.status).toBe(400);
    expect(badSource.body.error.param).toBe('source');
    const badSuffix = await rest('POST', '/v1/models', {
      is_fine_tuned_model: true,
      base_model_id: 'tiny-base',
      suffix: 'THIS-IS-WAY-TOO-LONG-A-SUFFIX',
      model_file_location: 'x',
    });
    expect(badSuffix.status).toBe(400);
    const notJson = await fetch(`${t.url}/v1/models`, { method: 'POST', headers: { authorization: `Bearer ${t.adminKey}` }, body: '{' });
    expect(notJson.status).toBe(400);
    const all = await rest('GET', '/v1/models?include_loading_models=true');
    expect(all.body.data.map((m: { id: string }) => m.id)).not.toContain('x');
  });

  it('another project sees the tenant models but not this project’s models', async () => {
    await rest('POST', '/v1/models', { id: 'private-base', source_repository: 'OLLAMA' });
    await rest('POST', '/v1/models', { id: 'shared-base', source_repository: 'OLLAMA', is_project_scoped: false });
    const { createOrganization } = await t.gqlOk(`mutation { createOrganization(input: { title: "Model Viewers" }) { id } }`);
    const { createProject } = await t.gqlOk(`mutation($o: ID!) { createProject(input: { organizationId: $o, title: "Viewers" }) { id } }`, {
      o: createOrganization.id,
    });
    const { createApiKey } = await t.gqlOk(`mutation($p: ID!) { createApiKey(input: { name: "viewer", projectId: $p }) { secret } }`, { p: createProject.id });
    const visible = await rest('GET', '/v1/models?include_loading_models=true', undefined, createApiKey.secret);
    const ids = visible.body.data.map((m: { id: string }) => m.id);
    expect(ids).toContain('shared-base');
    expect(ids).not.toContain('private-base');
    const deleteShared = await rest('DELETE', '/v1/models/private-base', undefined, createApiKey.secret);
    expect(deleteShared.status).toBe(404);
  });

  it('responses and errors match the OpenAI API description', async () => {
    const spec = loadOpenApiValidator();
    await rest('POST', '/v1/models', { id: 'spec-base', source_repository: 'OLLAMA' });
    const ft = await rest('POST', '/v1/models', {
      is_fine_tuned_model: true,
      base_model_id: 'spec-base',
      suffix: 'spec',
      model_file_location: await adapterPath(),
    });
    for (const [method, path] of [
      ['GET', '/v1/models'],
      ['GET', `/v1/models/${ft.body.id}`],
      ['GET', '/v1/models/no-such-model'],
      ['DELETE', `/v1/models/${ft.body.id}`],
    ] as const) {
      const result = await rest(method, path);
      expectValid(
        spec.validateResponse(
          method,
          path.replace(/^\/v1\/models\/(.+)$/, (_m, id) => `/v1/models/${encodeURIComponent(id)}`),
          result.status,
          result.body,
        ),
      );
    }
  });
});
