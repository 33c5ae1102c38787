import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

/**
 * Issue 24 item 3: the bodies of Mariner's and LLMariner's own REST routes are checked field by field.
 * A field the route does not take is refused with 400 in OpenAI's error shape, naming it (a wrong
 * cluster-config shape was accepted with 200 and ignored), and nothing changes; grpc-gateway's JSON
 * names (lowerCamelCase) are still taken. A model id with `/` is stored as LLMariner stores it (`-`),
 * the create answer says which id was asked for, and the original id keeps working as an alias.
 */
let t: TestPlatform;
let clusterId: string;

async function rest(method: string, path: string, body?: unknown, token = t.adminKey) {
  const response = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** OpenAI's error shape, naming the unknown field. */
const unknownField = (param: string) => ({
  error: { message: expect.stringContaining(param), type: 'invalid_request_error', param, code: 'unknown_parameter' },
});

beforeAll(async () => {
  t = await startTestPlatform();
  clusterId = (await rest('POST', '/v1/clusters', { name: 'strict' })).body.id;
});
afterAll(async () => {
  await t?.close();
});

describe('strict REST bodies', () => {
  it('a cluster config of the wrong shape is refused, naming the field and what the body takes, and nothing is stored', async () => {
    const wrong = await rest('POST', `/v1/clusters/${clusterId}/config`, { device_config: { time_slicing: { gpus: 4 } } });
    expect(wrong.status).toBe(400);
    expect(wrong.body).toEqual(unknownField('device_config'));
    expect(wrong.body.error.message).toContain('device_plugin_config');
    expect((await rest('GET', `/v1/clusters/${clusterId}/config`)).status).toBe(404);

    const nested = await rest('POST', `/v1/clusters/${clusterId}/config`, { device_plugin_config: { time_slicing: { gpu: 4 } } });
    expect(nested.body).toEqual(unknownField('device_plugin_config.time_slicing.gpu'));
    expect((await rest('GET', `/v1/clusters/${clusterId}/config`)).status).toBe(404);

    // grpc-gateway's JSON names are the same fields.
    const camel = await rest('POST', `/v1/clusters/${clusterId}/config`, { devicePluginConfig: { timeSlicing: { gpus: 4 } } });
    expect(camel.status).toBe(200);
    expect(camel.body.device_plugin_config).toEqual({ time_slicing: { gpus: 4 } });
    const patched = await rest('PATCH', `/v1/clusters/${clusterId}/config`, { device_plugin_config: { time_slicing: { gpus: 2 } }, extra: true });
    expect(patched.body).toEqual(unknownField('extra'));
    expect((await rest('GET', `/v1/clusters/${clusterId}/config`)).body.device_plugin_config).toEqual({ time_slicing: { gpus: 4 } });
  });

  it('POST /v1/models names every unknown field, nested ones with their path, and creates nothing', async () => {
    const wrong = await rest('POST', '/v1/models', {
      id: 'strict-model',
      source_repository: 'OLLAMA',
      source: 'ollama://x',
      config: { runtime_config: { gpus: 1 } },
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toMatchObject({ type: 'invalid_request_error', param: 'source', code: 'unknown_parameter' });
    expect(wrong.body.error.message).toContain('source, config.runtime_config.gpus');
    expect((await rest('GET', '/v1/models/strict-model?include_loading_model=true')).status).toBe(404);
    const patch = await rest('PATCH', '/v1/models/strict-model', { model: { config: { runtime_config: { replica: 2 } } } });
    expect(patch.body).toEqual(unknownField('model.config.runtime_config.replica'));
  });

  it('notebooks and batch jobs refuse fields they do not take', async () => {
    const notebook = await rest('POST', '/v1/workspaces/notebooks', { name: 'nb', image: { type: 'jupyter-lab-base' }, gpus: 1 });
    expect(notebook.status).toBe(400);
    expect(notebook.body).toEqual(unknownField('gpus'));
    const resources = await rest('POST', '/v1/workspaces/notebooks', { name: 'nb', image: { type: 'jupyter-lab-base' }, resources: { gpu: 1 } });
    expect(resources.body).toEqual(unknownField('resources.gpu'));
    const batch = await rest('POST', '/v1/batch/jobs', { image: 'pytorch-2.1', command: 'true', env: { A: 'b' } });
    expect(batch.body).toEqual(unknownField('env'));
    expect((await rest('GET', '/v1/workspaces/notebooks')).body.data ?? []).toEqual([]);
  });
});

describe('strict REST bodies: organizations, projects, members and API keys (LLMariner user-manager)', () => {
  it('refuse fields they do not take; an assignment takes its JSON names too', async () => {
    expect((await rest('POST', '/v1/organizations', { title: 'Acme', name: 'acme' })).body).toEqual(unknownField('name'));
    const { id: orgId } = (await rest('POST', '/v1/organizations', { title: 'Acme' })).body;
    const wrongAssignment = await rest('POST', `/v1/organizations/${orgId}/projects`, { title: 'P', assignments: [{ namespace: 'acme-p', queue: 'q' }] });
    expect(wrongAssignment.body).toEqual(unknownField('assignments[0].queue'));
    const camel = await rest('POST', `/v1/organizations/${orgId}/projects`, {
      title: 'P',
      assignments: [{ clusterId: clusterId, namespace: 'acme-p', kueueQueueName: 'q' }],
    });
    expect(camel.status).toBe(200);
    expect(camel.body.assignments).toEqual([expect.objectContaining({ cluster_id: clusterId, namespace: 'acme-p', kueue_queue_name: 'q' })]);
    const member = await rest('POST', `/v1/organizations/${orgId}/users`, { user_id: 'fay@example.com', role: 'READER', project: 'x' });
    expect(member.body).toEqual(unknownField('project'));
    const key = await rest('POST', '/v1/api_keys', { name: 'k', user: 'someone' });
    expect(key.body).toEqual(unknownField('user'));
  });
});

describe('model ids with /', () => {
  const original = 'acme/Tiny-Model';
  const stored = 'acme-Tiny-Model';

  it('the create answer names the stored id and the id asked for', async () => {
    const created = await rest('POST', '/v1/models', { id: original, source_repository: 'HUGGING_FACE' });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({ id: stored, requested_id: original });
    // An id without `/` is stored as given: nothing to say.
    const plain = await rest('POST', '/v1/models', { id: 'plain-id', source_repository: 'OLLAMA' });
    expect(plain.body.id).toBe('plain-id');
    expect(plain.body).not.toHaveProperty('requested_id');
  });

  it('GET by the original id: while the model loads, the 404 says so and names the stored id', async () => {
    const loading = await rest('GET', `/v1/models/${original}`);
    expect(loading.status).toBe(404);
    expect(loading.body.error.message).toContain(`stored as '${stored}'`);
    expect(loading.body.error.message).toContain('include_loading_model=true');
    const shown = await rest('GET', `/v1/models/${original}?include_loading_model=true`);
    expect(shown.body.id).toBe(stored);
    // Another organization learns nothing of it.
    const other = await projectWithKey(t, 'strict-other');
    const hidden = await rest('GET', `/v1/models/${original}`, undefined, other.key);
    expect(hidden.status).toBe(404);
    expect(hidden.body.error.message).toBe(`The model '${original}' does not exist`);
  });

  it('activate and DELETE take the original id', async () => {
    const activate = await rest('POST', `/v1/models/${original}:activate`);
    // Not loaded: refused for that reason, not as an unknown model.
    expect(activate.status).toBe(400);
    expect(activate.body.error.message).toContain(stored);
    const deleted = await rest('DELETE', `/v1/models/${original}`);
    expect(deleted.body).toEqual({ id: stored, object: 'model', deleted: true });
    expect((await rest('GET', `/v1/models/${original}?include_loading_model=true`)).status).toBe(404);
  });
});
