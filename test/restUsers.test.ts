import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/** LLMariner's user-management REST API (reference/llmariner.md §6) over plain HTTP. */

let t: TestPlatform;
const spec = loadOpenApiValidator();

interface CallOptions {
  body?: unknown;
  /** A body sent as is (malformed JSON). */
  raw?: string;
  token?: string;
}

/** One REST call; every answer carries x-request-id and every error is OpenAI's ErrorResponse. */
async function call(method: string, path: string, options: CallOptions = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? t.adminKey}` };
  const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${t.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const json = await response.json();
  expect(response.headers.get('x-request-id'), `${method} ${path}`).toMatch(/^[A-Za-z0-9_-]+$/);
  if (response.status >= 400) expectValid(spec.validateSchema('ErrorResponse', json));
  return { status: response.status, body: json };
}

/** A call that must succeed. */
async function ok(method: string, path: string, options: CallOptions = {}): Promise<any> {
  const { status, body } = await call(method, path, options);
  if (status !== 200) throw new Error(`${method} ${path} answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

async function expectError(method: string, path: string, options: CallOptions, status: number, param: string | null) {
  const result = await call(method, path, options);
  expect(result.status, JSON.stringify(result.body)).toBe(status);
  expect(result.body.error.param).toBe(param);
  return result.body.error as { message: string; type: string; param: string | null; code: string | null };
}

beforeAll(async () => {
  t = await startTestPlatform();
});
afterAll(async () => {
  await t?.close();
});

describe('LLMariner user-management REST API', () => {
  it('an organization, its project, members and a key, from creation to deletion', async () => {
    const org = await ok('POST', '/v1/organizations', { body: { title: 'Research' } });
    expect(org).toEqual({ id: expect.stringMatching(/^org-/), title: 'Research', created_at: expect.any(Number), is_default: false });
    expect(Math.abs(org.created_at - Date.now() / 1000)).toBeLessThan(60);

    const project = await ok('POST', `/v1/organizations/${org.id}/projects`, {
      body: {
        title: 'Vision',
        assignments: [{ namespace: 'vision', kueue_queue_name: 'gpu-queue', node_selector: [{ key: 'nvidia.com/gpu.product', value: 'H100' }] }],
      },
    });
    expect(project).toMatchObject({
      id: expect.stringMatching(/^proj-/),
      title: 'Vision',
      organization_id: org.id,
      is_default: false,
      assignments: [{ cluster_id: '', namespace: 'vision', kueue_queue_name: 'gpu-queue', node_selector: [{ key: 'nvidia.com/gpu.product', value: 'H100' }] }],
      kubernetes_namespace: 'vision',
    });

    const orgs = await ok('GET', '/v1/organizations?include_summary=true');
    expect(orgs).toMatchObject({ object: 'list', has_more: false });
    expect(orgs.data).toContainEqual({ ...org, summary: { project_count: 1, user_count: 1 } });
    expect((await ok('GET', '/v1/organizations')).data).toContainEqual(org);

    // Members: the short role form is accepted, the proto form is answered; user ids are normalised emails.
    expect(await ok('POST', `/v1/organizations/${org.id}/users`, { body: { user_id: 'Zoe@Example.com', role: 'READER' } })).toEqual({
      user_id: 'zoe@example.com',
      organization_id: org.id,
      role: 'ORGANIZATION_ROLE_READER',
    });
    const orgMembers = await ok('GET', `/v1/organizations/${org.id}/users`);
    expect(orgMembers.data).toEqual(
      expect.arrayContaining([
        { user_id: 'admin@example.com', organization_id: org.id, role: 'ORGANIZATION_ROLE_OWNER' },
        { user_id: 'zoe@example.com', organization_id: org.id, role: 'ORGANIZATION_ROLE_READER' },
      ]),
    );
    expect(
      await ok('POST', `/v1/organizations/${org.id}/projects/${project.id}/users`, { body: { user_id: 'zoe@example.com', role: 'PROJECT_ROLE_MEMBER' } }),
    ).toEqual({
      user_id: 'zoe@example.com',
      project_id: project.id,
      organization_id: org.id,
      role: 'PROJECT_ROLE_MEMBER',
    });
    expect((await ok('GET', `/v1/organizations/${org.id}/projects/${project.id}/users`)).data).toContainEqual({
      user_id: 'zoe@example.com',
      project_id: project.id,
      organization_id: org.id,
      role: 'PROJECT_ROLE_MEMBER',
    });
    expect((await ok('GET', `/v1/organizations/${org.id}/projects?include_summary=true`)).data).toContainEqual({
      ...project,
      summary: { user_count: expect.any(Number) },
    });

    // The secret is shown once, in the create answer; lists obfuscate it.
    const key = await ok('POST', '/v1/api_keys', { body: { name: 'ci', project_id: project.id, organization_id: org.id } });
    expect(key).toMatchObject({
      id: expect.stringMatching(/^key_/),
      object: 'user.api_key',
      name: 'ci',
      secret: expect.stringMatching(/^sk-[A-Za-z0-9]{48}$/),
      created_at: expect.any(Number),
      user: { id: 'admin@example.com', is_service_account: false },
      organization: { id: org.id },
      project: { id: project.id },
      organization_role: 'ORGANIZATION_ROLE_OWNER',
      excluded_from_rate_limiting: false,
    });
    const listed = await ok('GET', '/v1/api_keys', { token: key.secret });
    expect(listed).toMatchObject({ object: 'list', first_id: key.id, last_id: key.id, has_more: false });
    const [shown] = listed.data;
    expect(shown).toEqual({ ...key, secret: expect.any(String) });
    expect(shown.secret).not.toBe(key.secret);
    expect(shown.secret.startsWith(key.secret.slice(0, 5))).toBe(true);
    expect(shown.secret.endsWith(key.secret.slice(-2))).toBe(true);
    expect(JSON.stringify(listed)).not.toContain(key.secret);

    // The new key works.
    const self = await ok('GET', '/v1/users:getSelf', { token: key.secret });
    expect(self).toMatchObject({ id: 'admin@example.com', is_service_account: false });
    expect(self.organization_role_bindings).toContainEqual({ organization_id: org.id, role: 'ORGANIZATION_ROLE_OWNER' });
    // An organization owner holds no project role of its own in a new project: it manages it as owner.
    for (const binding of self.project_role_bindings) {
      expect(binding).toEqual({
        project_id: expect.stringMatching(/^proj-/),
        organization_id: expect.stringMatching(/^org-/),
        role: expect.stringMatching(/^PROJECT_ROLE_/),
      });
    }

    // PATCH by field mask: only the masked field changes.
    const retitled = await ok('PATCH', `/v1/organizations/${org.id}/projects/${project.id}`, {
      body: { project: { title: 'Vision 2', assignments: [{ namespace: 'elsewhere' }] }, update_mask: 'title' },
    });
    expect(retitled).toMatchObject({ id: project.id, title: 'Vision 2', assignments: project.assignments });
    // grpc-gateway's form: the body is the project, the mask is in the query.
    const moved = await ok('PATCH', `/v1/organizations/${org.id}/projects/${project.id}?update_mask=assignments`, {
      body: { title: 'ignored', assignments: [{ namespace: 'elsewhere' }] },
    });
    expect(moved).toMatchObject({ title: 'Vision 2', assignments: [{ cluster_id: '', namespace: 'elsewhere', kueue_queue_name: '', node_selector: [] }] });
    // No mask: the fields present.
    expect(await ok('PATCH', `/v1/organizations/${org.id}/projects/${project.id}`, { body: { project: { title: 'Vision 3' } } })).toMatchObject({
      title: 'Vision 3',
      assignments: moved.assignments,
    });

    const renamed = await ok('PATCH', `/v1/api_keys/${key.id}`, {
      body: { api_key: { name: 'ci-renamed', excluded_from_rate_limiting: true }, update_mask: 'name' },
    });
    expect(renamed).toMatchObject({ id: key.id, name: 'ci-renamed', excluded_from_rate_limiting: false, secret: shown.secret });

    // Members leave: LLMariner answers google.protobuf.Empty.
    expect(await ok('DELETE', `/v1/organizations/${org.id}/projects/${project.id}/users/zoe@example.com`)).toEqual({});
    expect(await ok('DELETE', `/v1/organizations/${org.id}/users/zoe@example.com`)).toEqual({});
    expect((await ok('GET', `/v1/organizations/${org.id}/users`)).data.map((m: { user_id: string }) => m.user_id)).toEqual(['admin@example.com']);

    expect(await ok('DELETE', `/v1/api_keys/${key.id}`)).toEqual({ id: key.id, object: 'users.api_key', deleted: true });
    const revoked = await call('GET', '/v1/users:getSelf', { token: key.secret });
    expect(revoked.status).toBe(401);
    expect(revoked.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });

    expect(await ok('DELETE', `/v1/organizations/${org.id}/projects/${project.id}`)).toEqual({ id: project.id, object: 'project', deleted: true });
    expect(await ok('DELETE', `/v1/organizations/${org.id}`)).toEqual({ id: org.id, object: 'organization', deleted: true });
    expect((await ok('GET', '/v1/organizations')).data.map((o: { id: string }) => o.id)).not.toContain(org.id);
  });

  it('a project can be created with the legacy kubernetes_namespace', async () => {
    const org = await ok('POST', '/v1/organizations', { body: { title: 'Legacy' } });
    const project = await ok('POST', `/v1/organizations/${org.id}/projects`, { body: { title: 'Old style', kubernetes_namespace: 'old-style' } });
    expect(project).toMatchObject({
      kubernetes_namespace: 'old-style',
      assignments: [{ cluster_id: '', namespace: 'old-style', kueue_queue_name: '', node_selector: [] }],
    });
  });

  it('a namespace another project holds is 409, by kubernetes_namespace or assignments, and creates nothing', async () => {
    const org = await ok('POST', '/v1/organizations', { body: { title: 'Namespace owners' } });
    const other = await ok('POST', '/v1/organizations', { body: { title: 'Namespace takers' } });
    await ok('POST', `/v1/organizations/${org.id}/projects`, { body: { title: 'Holder', kubernetes_namespace: 'held' } });
    for (const body of [
      { title: 'Taker', kubernetes_namespace: 'held' },
      { title: 'Taker', assignments: [{ namespace: 'held', cluster_id: '' }] },
    ]) {
      const error = await expectError('POST', `/v1/organizations/${other.id}/projects`, { body }, 409, null);
      expect(error).toMatchObject({ type: 'invalid_request_error', code: 'conflict', message: expect.stringContaining('"held"') });
    }
    expect((await ok('GET', `/v1/organizations/${other.id}/projects`)).data).toEqual([]);
    const derived = await ok('POST', `/v1/organizations/${other.id}/projects`, { body: { title: 'Default' } });
    expect(derived.kubernetes_namespace).toMatch(/^default-[a-z0-9]{8}$/);
  });

  it('the default organization and project cannot be deleted', async () => {
    const orgs = await ok('GET', '/v1/organizations');
    const defaultOrg = orgs.data.find((o: { is_default: boolean }) => o.is_default);
    const refused = await expectError('DELETE', `/v1/organizations/${defaultOrg.id}`, {}, 400, null);
    expect(refused).toMatchObject({ type: 'invalid_request_error', code: 'failed_precondition' });
    const projects = await ok('GET', `/v1/organizations/${defaultOrg.id}/projects`);
    const defaultProject = projects.data.find((p: { is_default: boolean }) => p.is_default);
    expect((await expectError('DELETE', `/v1/organizations/${defaultOrg.id}/projects/${defaultProject.id}`, {}, 400, null)).code).toBe('failed_precondition');
  });

  it('a project member key cannot add members, and sees only its own keys', async () => {
    const org = await ok('POST', '/v1/organizations', { body: { title: 'Guarded' } });
    const project = await ok('POST', `/v1/organizations/${org.id}/projects`, { body: { title: 'Guarded' } });
    // A service account stands in for a person: a reader of the organization, then a project member.
    const sa = await ok('POST', '/v1/api_keys', {
      body: { name: 'robot', project_id: project.id, is_service_account: true, role: 'ORGANIZATION_ROLE_READER' },
    });
    expect(sa).toMatchObject({ user: { is_service_account: true }, organization_role: 'ORGANIZATION_ROLE_READER' });
    const robot = await ok('GET', '/v1/users:getSelf', { token: sa.secret });
    expect(robot.is_service_account).toBe(true);
    await ok('POST', `/v1/organizations/${org.id}/projects/${project.id}/users`, { body: { user_id: robot.id, role: 'MEMBER' } });
    const ownerKey = await ok('POST', '/v1/api_keys', { body: { name: 'owner', project_id: project.id } });

    const toOrg = await expectError(
      'POST',
      `/v1/organizations/${org.id}/users`,
      { token: sa.secret, body: { user_id: 'eve@example.com', role: 'OWNER' } },
      403,
      null,
    );
    expect(toOrg.code).toBe('forbidden');
    await expectError(
      'POST',
      `/v1/organizations/${org.id}/projects/${project.id}/users`,
      { token: sa.secret, body: { user_id: robot.id, role: 'OWNER' } },
      403,
      null,
    );
    await expectError('GET', `/v1/organizations/${org.id}/users`, { token: sa.secret }, 403, null);
    await expectError('DELETE', `/v1/api_keys/${ownerKey.id}`, { token: sa.secret }, 403, null);
    expect((await ok('GET', '/v1/api_keys', { token: sa.secret })).data.map((k: { id: string }) => k.id)).toEqual([sa.id]);
    expect((await ok('GET', '/v1/api_keys', { token: ownerKey.secret })).data.map((k: { id: string }) => k.id)).toEqual([sa.id, ownerKey.id]);
  });

  it('bad input is a 400 naming the parameter, and nothing is created', async () => {
    const org = await ok('POST', '/v1/organizations', { body: { title: 'Strict' } });
    const project = await ok('POST', `/v1/organizations/${org.id}/projects`, { body: { title: 'Strict' } });
    const before = (await ok('GET', '/v1/organizations')).data.length;

    await expectError('POST', '/v1/organizations', { body: { title: '   ' } }, 400, 'title');
    await expectError('POST', '/v1/organizations', { body: {} }, 400, 'title');
    await expectError('POST', '/v1/organizations', { body: { title: 42 } }, 400, 'title');
    const malformed = await expectError('POST', '/v1/organizations', { raw: '{"title": "x"' }, 400, null);
    expect(malformed).toMatchObject({ type: 'invalid_request_error', code: 'bad_user_input' });
    await expectError('POST', '/v1/organizations', { raw: '["title"]' }, 400, null);
    expect((await ok('GET', '/v1/organizations')).data.length).toBe(before);

    const projects = `/v1/organizations/${org.id}/projects`;
    await expectError('POST', projects, { body: { title: 'x', assignments: [{ namespace: 'Not_A_Namespace' }] } }, 400, 'assignments[0].namespace');
    await expectError('POST', projects, { body: { title: 'x', assignments: [{ namespace: 'ok', cluster_id: 'nope' }] } }, 400, 'assignments[0].cluster_id');
    await expectError('POST', projects, { body: { title: 'x', assignments: [{}] } }, 400, 'assignments[0].namespace');
    await expectError('POST', projects, { body: { title: 'x', kubernetes_namespace: 'Bad Namespace' } }, 400, 'kubernetes_namespace');
    await expectError('POST', projects, { body: { title: 'x', kubernetes_namespace: 'a', assignments: [{ namespace: 'b' }] } }, 400, 'kubernetes_namespace');
    expect((await ok('GET', projects)).data.map((p: { id: string }) => p.id)).toEqual([project.id]);

    await expectError('POST', `/v1/organizations/${org.id}/users`, { body: { user_id: 'a@example.com', role: 'ADMIN' } }, 400, 'role');
    await expectError('POST', `/v1/organizations/${org.id}/users`, { body: { user_id: 'a@example.com' } }, 400, 'role');
    await expectError('POST', `/v1/organizations/${org.id}/users`, { body: { user_id: 'not an email', role: 'READER' } }, 400, 'user_id');
    await expectError(
      'POST',
      `/v1/organizations/${org.id}/projects/${project.id}/users`,
      { body: { user_id: 'a@example.com', role: 'ORGANIZATION_ROLE_OWNER' } },
      400,
      'role',
    );
    await expectError('POST', '/v1/api_keys', { body: { name: 'k', project_id: project.id, role: 'READER' } }, 400, 'role');
    await expectError('POST', '/v1/api_keys', { body: { project_id: project.id } }, 400, 'name');

    const patchProject = `/v1/organizations/${org.id}/projects/${project.id}`;
    await expectError('PATCH', patchProject, { body: {} }, 400, 'update_mask');
    await expectError('PATCH', patchProject, { body: { project: {}, update_mask: '' } }, 400, 'update_mask');
    await expectError('PATCH', patchProject, { body: { project: { title: 'x' }, update_mask: 'organization_id' } }, 400, 'update_mask');
    await expectError('PATCH', patchProject, { body: { project: { title: '' }, update_mask: 'title' } }, 400, 'project.title');
    await expectError('PATCH', patchProject, { body: { project: { assignments: [{ namespace: 'UPPER' }] } } }, 400, 'project.assignments[0].namespace');
    await expectError('PATCH', patchProject, { raw: 'not json' }, 400, null);
    const key = await ok('POST', '/v1/api_keys', { body: { name: 'k', project_id: project.id } });
    await expectError('PATCH', `/v1/api_keys/${key.id}`, { body: { api_key: {} } }, 400, 'update_mask');
    await expectError('PATCH', `/v1/api_keys/${key.id}`, { body: { api_key: { name: 7 } } }, 400, 'api_key.name');
    await expectError('PATCH', `/v1/api_keys/${key.id}`, { body: { api_key: { name: 'x' }, update_mask: 'secret' } }, 400, 'update_mask');

    await expectError('GET', '/v1/organizations?include_summary=maybe', {}, 400, 'include_summary');
    await expectError('GET', '/v1/organizations?limit=0', {}, 400, 'limit');
    await expectError('GET', '/v1/organizations?order=desc', {}, 400, 'order');
    await expectError('DELETE', '/v1/organizations/not-an-org', {}, 400, 'organization_id');
  });

  it('a project is reached only through its own organization', async () => {
    const a = await ok('POST', '/v1/organizations', { body: { title: 'A' } });
    const b = await ok('POST', '/v1/organizations', { body: { title: 'B' } });
    const project = await ok('POST', `/v1/organizations/${a.id}/projects`, { body: { title: 'In A' } });
    const wrong = `/v1/organizations/${b.id}/projects/${project.id}`;
    expect((await expectError('DELETE', wrong, {}, 404, null)).code).toBe('not_found');
    await expectError('PATCH', wrong, { body: { project: { title: 'x' } } }, 404, null);
    await expectError('GET', `${wrong}/users`, {}, 404, null);
    await expectError('POST', '/v1/api_keys', { body: { name: 'k', project_id: project.id, organization_id: b.id } }, 404, null);
    await expectError('GET', '/v1/organizations/org-doesnotexist0000000000/users', {}, 404, null);
    expect((await ok('GET', `/v1/organizations/${a.id}/projects`)).data.map((p: { id: string }) => p.id)).toEqual([project.id]);
  });

  it('lists page with after and limit (members by user id)', async () => {
    const org = await ok('POST', '/v1/organizations', { body: { title: 'Paged' } });
    const ids: string[] = [];
    for (const title of ['p1', 'p2', 'p3']) ids.push((await ok('POST', `/v1/organizations/${org.id}/projects`, { body: { title } })).id);
    const first = await ok('GET', `/v1/organizations/${org.id}/projects?limit=2`);
    expect(first).toMatchObject({ object: 'list', has_more: true, first_id: ids[0], last_id: ids[1] });
    const second = await ok('GET', `/v1/organizations/${org.id}/projects?limit=2&after=${first.last_id}`);
    expect(second).toMatchObject({ has_more: false, data: [{ id: ids[2] }], first_id: ids[2], last_id: ids[2] });

    for (const user of ['m1@example.com', 'm2@example.com']) {
      await ok('POST', `/v1/organizations/${org.id}/users`, { body: { user_id: user, role: 'ORGANIZATION_ROLE_READER' } });
    }
    const seen: string[] = [];
    let after = '';
    for (;;) {
      const page = await ok('GET', `/v1/organizations/${org.id}/users?limit=1${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      expect(page.data).toHaveLength(1);
      seen.push(page.data[0].user_id);
      expect(page.last_id).toBe(page.data[0].user_id);
      if (!page.has_more) break;
      after = page.last_id;
    }
    expect(seen).toEqual(['admin@example.com', 'm1@example.com', 'm2@example.com']);
  });

  it('users:getSelf is its own route beside GET /v1/users', async () => {
    const self = await ok('GET', '/v1/users:getSelf');
    expect(self).toMatchObject({ id: 'admin@example.com', is_service_account: false });
    expect(self.organization_role_bindings).toContainEqual({ organization_id: expect.stringMatching(/^org-/), role: 'ORGANIZATION_ROLE_OWNER' });
    const users = await ok('GET', '/v1/users');
    expect(users).toMatchObject({ object: 'list', has_more: false });
    expect(users.data).toContainEqual(self);
    const unknown = await expectError('GET', '/v1/users:getOther', {}, 404, null);
    expect(unknown.code).toBe('not_found');
    const anonymous = await call('GET', '/v1/users:getSelf', { token: 'sk-wrong-key-0000000000000000000000' });
    expect(anonymous.status).toBe(401);
  });
});
