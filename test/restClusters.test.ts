import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

/** LLMariner's cluster-manager REST API (reference/llmariner.md §7) over plain HTTP. */

let t: TestPlatform;
const agents: Agent[] = [];
const spec = loadOpenApiValidator();
const GPUS = 'device_plugin_config.time_slicing.gpus';

interface CallOptions {
  body?: unknown;
  /** A body sent as is (malformed JSON). */
  raw?: string;
  /** The caller's key; null sends no credentials. */
  token?: string | null;
}

/** One REST call; every answer carries x-request-id and every error is OpenAI's error object, nothing more. */
async function call(method: string, path: string, options: CallOptions = {}): Promise<{ status: number; body: any }> {
  const token = options.token === undefined ? t.adminKey : options.token;
  const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${t.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const json = await response.json();
  expect(response.headers.get('x-request-id'), `${method} ${path}`).toMatch(/^[A-Za-z0-9_-]+$/);
  if (response.status >= 400) {
    expectValid(spec.validateSchema('ErrorResponse', json));
    expect(Object.keys(json)).toEqual(['error']);
    expect(Object.keys(json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  }
  return { status: response.status, body: json };
}

/** A call that must succeed. */
async function ok(method: string, path: string, options: CallOptions = {}): Promise<any> {
  const { status, body } = await call(method, path, options);
  if (status !== 200) throw new Error(`${method} ${path} answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

async function expectError(method: string, path: string, options: CallOptions, status: number, param: string | null = null) {
  const result = await call(method, path, options);
  expect(result.status, JSON.stringify(result.body)).toBe(status);
  expect(result.body.error.param, JSON.stringify(result.body)).toBe(param);
  return result.body.error as { message: string; type: string; param: string | null; code: string | null };
}

const register = (name: string) => ok('POST', '/v1/clusters', { body: { name } });

beforeAll(async () => {
  t = await startTestPlatform();
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await t?.close();
});

describe('LLMariner cluster REST API', () => {
  it('a cluster is registered with its key shown once, listed and read without it, then unregistered', async () => {
    const registered = await register('gpu-west');
    expect(registered).toEqual({
      id: expect.stringMatching(/^cluster-/),
      object: 'cluster',
      name: 'gpu-west',
      registration_key: expect.stringMatching(/^clusterkey-/),
      component_statuses: {},
      is_default: false,
      created_at: expect.any(Number),
      connected: false,
      status: null,
    });
    expect(Math.abs(registered.created_at - Date.now() / 1000)).toBeLessThan(60);
    const { registration_key: _key, ...cluster } = registered;

    const list = await ok('GET', '/v1/clusters');
    expect(list).toMatchObject({ object: 'list', has_more: false });
    expect(list.data).toContainEqual(cluster);
    expect(list.data.every((c: Record<string, unknown>) => !('registration_key' in c))).toBe(true);
    expect(await ok('GET', `/v1/clusters/${cluster.id}`)).toEqual(cluster);

    const duplicate = await expectError('POST', '/v1/clusters', { body: { name: 'gpu-west' } }, 409);
    expect(duplicate.message).toMatch(/registered already/);

    expect(await ok('DELETE', `/v1/clusters/${cluster.id}`)).toEqual({ id: cluster.id, object: 'cluster', deleted: true });
    await expectError('GET', `/v1/clusters/${cluster.id}`, {}, 404);
    await expectError('DELETE', `/v1/clusters/${cluster.id}`, {}, 404);
    expect((await ok('GET', '/v1/clusters')).data.map((c: { id: string }) => c.id)).not.toContain(cluster.id);
  });

  it('unknown clusters are 404, whatever the id looks like', async () => {
    for (const id of ['cluster-doesnotexist', 'not-a-cluster-id']) {
      await expectError('GET', `/v1/clusters/${id}`, {}, 404);
      await expectError('DELETE', `/v1/clusters/${id}`, {}, 404);
      await expectError('GET', `/v1/clusters/${id}/config`, {}, 404);
      await expectError('POST', `/v1/clusters/${id}/config`, { body: { device_plugin_config: { time_slicing: { gpus: 2 } } } }, 404);
      await expectError('PATCH', `/v1/clusters/${id}/config`, { body: { device_plugin_config: { time_slicing: { gpus: 2 } } } }, 404);
      await expectError('DELETE', `/v1/clusters/${id}/config`, {}, 404);
    }
    await expectError('GET', '/v1/clusters/cluster-x/config/extra', {}, 404);
  });

  it('the GPU device-plugin config is created once, read, updated and deleted', async () => {
    const { id } = await register('time-sliced');
    const path = `/v1/clusters/${id}/config`;
    await expectError('GET', path, {}, 404);
    await expectError('PATCH', path, { body: { device_plugin_config: { time_slicing: { gpus: 2 } } } }, 404);
    await expectError('DELETE', path, {}, 404);

    const created = await ok('POST', path, { body: { device_plugin_config: { time_slicing: { gpus: 4 } } } });
    expect(created).toEqual({ cluster_id: id, device_plugin_config: { time_slicing: { gpus: 4 } }, updated_at: expect.any(Number) });
    const again = await expectError('POST', path, { body: { device_plugin_config: { time_slicing: { gpus: 2 } } } }, 409);
    expect(again.code).toBe('conflict');
    expect(await ok('GET', path)).toEqual(created);

    const updated = await ok('PATCH', path, { body: { device_plugin_config: { time_slicing: { gpus: 8 } } } });
    expect(updated.device_plugin_config).toEqual({ time_slicing: { gpus: 8 } });
    expect((await ok('GET', path)).device_plugin_config).toEqual({ time_slicing: { gpus: 8 } });
    // No time_slicing: the GPUs are not shared.
    expect((await ok('PATCH', path, { body: { device_plugin_config: {} } })).device_plugin_config).toEqual({ time_slicing: null });

    expect(await ok('DELETE', path)).toEqual({});
    await expectError('GET', path, {}, 404);
    await expectError('DELETE', path, {}, 404);
    // Deleted, it can be created again.
    expect((await ok('POST', path, { body: {} })).device_plugin_config).toEqual({ time_slicing: null });
  });

  it('bad bodies and list parameters are 400s naming the field; nothing is changed', async () => {
    await expectError('POST', '/v1/clusters', { raw: '{"name":' }, 400, null);
    await expectError('POST', '/v1/clusters', { raw: '["gpu"]' }, 400, null);
    await expectError('POST', '/v1/clusters', { body: {} }, 400, 'name');
    await expectError('POST', '/v1/clusters', { body: { name: 42 } }, 400, 'name');
    await expectError('POST', '/v1/clusters', { body: { name: 'Not A DNS Label' } }, 400, 'name');
    expect((await ok('GET', '/v1/clusters')).data.map((c: { name: string }) => c.name)).not.toContain('Not A DNS Label');

    const { id } = await register('bad-bodies');
    const path = `/v1/clusters/${id}/config`;
    await expectError('POST', path, { raw: 'gpus=4' }, 400, null);
    await expectError('POST', path, { body: { device_plugin_config: 'four' } }, 400, 'device_plugin_config');
    await expectError('POST', path, { body: { device_plugin_config: { time_slicing: [4] } } }, 400, 'device_plugin_config.time_slicing');
    for (const gpus of ['4', 1.5, true, 2 ** 40, 0, 65]) {
      await expectError('POST', path, { body: { device_plugin_config: { time_slicing: { gpus } } } }, 400, GPUS);
    }
    await expectError('GET', path, {}, 404);

    await ok('POST', path, { body: { device_plugin_config: { time_slicing: { gpus: 2 } } } });
    await expectError('PATCH', path, { body: {} }, 400, 'device_plugin_config');
    await expectError('PATCH', path, { body: { device_plugin_config: { time_slicing: { gpus: 'many' } } } }, 400, GPUS);
    await expectError('PATCH', path, { body: { device_plugin_config: { time_slicing: { gpus: 100 } } } }, 400, GPUS);
    expect((await ok('GET', path)).device_plugin_config).toEqual({ time_slicing: { gpus: 2 } });

    await expectError('GET', '/v1/clusters?limit=0', {}, 400, 'limit');
    await expectError('GET', '/v1/clusters?order=desc', {}, 400, 'order');
  });

  it('the list pages oldest first with after and limit', async () => {
    const ids = [(await register('page-a')).id, (await register('page-b')).id, (await register('page-c')).id];
    const all = (await ok('GET', '/v1/clusters')).data.map((c: { id: string }) => c.id) as string[];
    const ours = all.filter((id) => ids.includes(id));
    expect(ours).toEqual(ids);

    const start = all.indexOf(ids[0]!);
    const after = start > 0 ? `&after=${all[start - 1]}` : '';
    const first = await ok('GET', `/v1/clusters?limit=2${after}`);
    expect(first).toMatchObject({ object: 'list', has_more: true, first_id: ids[0], last_id: ids[1] });
    expect(first.data.map((c: { id: string }) => c.id)).toEqual(ids.slice(0, 2));
    const next = await ok('GET', `/v1/clusters?limit=2&after=${first.last_id}`);
    expect(next.data[0].id).toBe(ids[2]);
    expect(next.first_id).toBe(ids[2]);
  });

  it('a key without the clusters scope is refused with 403; no key at all is 401', async () => {
    const { id } = await register('guarded');
    const { key: reader } = await projectWithKey(t, 'Cluster Readers', { role: 'READER' });
    const routes: [string, string, unknown?][] = [
      ['GET', '/v1/clusters'],
      ['POST', '/v1/clusters', { name: 'sneaky' }],
      ['GET', `/v1/clusters/${id}`],
      ['DELETE', `/v1/clusters/${id}`],
      ['POST', `/v1/clusters/${id}/config`, { device_plugin_config: { time_slicing: { gpus: 2 } } }],
      ['GET', `/v1/clusters/${id}/config`],
      ['PATCH', `/v1/clusters/${id}/config`, { device_plugin_config: { time_slicing: { gpus: 2 } } }],
      ['DELETE', `/v1/clusters/${id}/config`],
    ];
    for (const [method, path, body] of routes) {
      const forbidden = await expectError(method, path, { token: reader, body }, 403);
      expect(forbidden.code).toBe('forbidden');
      const anonymous = await expectError(method, path, { token: null, body }, 401);
      expect(anonymous.code).toBe('invalid_api_key');
      await expectError(method, path, { token: 'sk-not-a-real-key-0000000000000000', body }, 401);
    }
    // Nothing happened: the cluster is there, without a config, and no `sneaky` cluster was registered.
    expect((await ok('GET', `/v1/clusters/${id}`)).name).toBe('guarded');
    await expectError('GET', `/v1/clusters/${id}/config`, {}, 404);
    expect((await ok('GET', '/v1/clusters')).data.map((c: { name: string }) => c.name)).not.toContain('sneaky');
  });

  it('a cluster whose agent connected shows connected, its component health and its status', async () => {
    const registered = await register('with-agent');
    const before = await ok('GET', `/v1/clusters/${registered.id}`);
    expect(before).toMatchObject({ connected: false, component_statuses: {}, status: null });

    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: registered.registration_key, executor: 'local', logger: silentLogger() });
    agents.push(agent);
    await agent.whenConnected();
    await agent.reportStatus();

    const cluster = await ok('GET', `/v1/clusters/${registered.id}`);
    expect(cluster.connected).toBe(true);
    expect(cluster.component_statuses.agent).toEqual({ is_healthy: true, message: expect.any(String) });
    expect(cluster.component_statuses.executor).toEqual({ is_healthy: true, message: 'local executor' });
    expect(cluster.status).toEqual({
      gpu_capacity: expect.any(Number),
      gpu_allocated: expect.any(Number),
      stale: false,
      updated_at: expect.any(Number),
      nodes: [
        {
          name: expect.any(String),
          ready: true,
          gpu_capacity: expect.any(Number),
          gpu_allocatable: expect.any(Number),
          gpu_product: expect.toSatisfy((p) => p === null || typeof p === 'string'),
        },
      ],
    });
    // The local executor's one node: its GPUs (none on a CPU-only machine) are the cluster's capacity.
    const [node] = cluster.status.nodes;
    expect(cluster.status.gpu_capacity).toBe(node.gpu_allocatable);
    expect(node.gpu_product === null).toBe(node.gpu_capacity === 0);
    expect(Math.abs(cluster.status.updated_at - Date.now() / 1000)).toBeLessThan(60);
    const listed = (await ok('GET', '/v1/clusters')).data.find((c: { id: string }) => c.id === registered.id);
    expect(listed).toEqual(cluster);
  });
});
