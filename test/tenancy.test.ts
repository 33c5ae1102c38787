import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await startTestPlatform();
});
afterAll(async () => {
  await t?.close();
});

const CREATE_ORG = `mutation($title: String!) { createOrganization(input: { title: $title }) { id title isDefault } }`;
const CREATE_PROJECT = `mutation($org: ID!, $title: String!) { createProject(input: { organizationId: $org, title: $title }) { id title organizationId assignments { namespace clusterId } } }`;
const ADD_ORG_MEMBER = `mutation($org: ID!, $user: ID!, $role: OrganizationRole!) { addOrganizationMember(organizationId: $org, userId: $user, role: $role) { role user { id } } }`;
const ADD_PROJECT_MEMBER = `mutation($project: ID!, $user: ID!, $role: ProjectRole!) { addProjectMember(projectId: $project, userId: $user, role: $role) { role user { id } } }`;
const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id name secret project { id } user { id } organizationRole projectRole isServiceAccount } } }`;

/** An organization with a project, owned by the admin. */
async function orgWithProject(title: string) {
  const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title });
  const { createProject: project } = await t.gqlOk(CREATE_PROJECT, { org: org.id, title: `${title} research` });
  return { org, project };
}

/** A service-account key with the given organization role, project OWNER. */
async function serviceAccountKey(projectId: string, role: string) {
  const { createApiKey } = await t.gqlOk(CREATE_KEY, { input: { name: `sa-${role}`, projectId, isServiceAccount: true, role } });
  return createApiKey.secret as string;
}

describe('tenancy and RBAC through the gateway', () => {
  it('the admin key can create an organization, a project, a member and a key', async () => {
    const { org, project } = await orgWithProject('Acme');
    expect(org.isDefault).toBe(false);
    expect(project.assignments).toEqual([{ namespace: expect.stringMatching(/^acme-research-[a-z0-9]{8}$/), clusterId: null }]);

    const member = await t.gqlOk(ADD_ORG_MEMBER, { org: org.id, user: 'Alice@Example.com', role: 'READER' });
    expect(member.addOrganizationMember).toEqual({ role: 'READER', user: { id: 'alice@example.com' } });
    await t.gqlOk(ADD_PROJECT_MEMBER, { project: project.id, user: 'alice@example.com', role: 'MEMBER' });

    const { createApiKey } = await t.gqlOk(CREATE_KEY, { input: { name: 'ci', projectId: project.id } });
    expect(createApiKey.secret).toMatch(/^sk-[A-Za-z0-9]{48}$/);
    expect(createApiKey.apiKey.secret).toBe(`${createApiKey.secret.slice(0, 5)}...${createApiKey.secret.slice(-2)}`);
    expect(createApiKey.apiKey.project.id).toBe(project.id);

    const summary = await t.gqlOk(`query($id: ID!) { organization(id: $id) { summary { projectCount userCount } } }`, { id: org.id });
    expect(summary.organization.summary).toEqual({ projectCount: 1, userCount: 2 });
  });

  it('a key is stored hashed: the listing shows only the obfuscated form', async () => {
    const { project } = await orgWithProject('Hashco');
    const { createApiKey } = await t.gqlOk(CREATE_KEY, { input: { name: 'hashed', projectId: project.id } });
    const rows = await t.platform.db.knex.withSchema('users').table('api_keys').where({ id: createApiKey.apiKey.id });
    expect(JSON.stringify(rows)).not.toContain(createApiKey.secret);
    const projectKey = await serviceAccountKey(project.id, 'OWNER');
    const listed = await t.gqlOk(`{ apiKeys { items { id secret } } }`, {}, { token: projectKey });
    const mine = listed.apiKeys.items.find((k: { id: string }) => k.id === createApiKey.apiKey.id);
    expect(mine.secret).toBe(createApiKey.apiKey.secret);
    expect(JSON.stringify(listed)).not.toContain(createApiKey.secret);
  });

  it('a project member key can read but not manage members', async () => {
    const { org, project } = await orgWithProject('Readers Inc');
    const memberKey = await serviceAccountKey(project.id, 'READER');
    // Demote the service account to a plain project member.
    const self = await t.gqlOk(`{ self { id } }`, {}, { token: memberKey });
    await t.gqlOk(ADD_PROJECT_MEMBER, { project: project.id, user: self.self.id, role: 'MEMBER' });

    const read = await t.gqlOk(`query($id: ID!) { project(id: $id) { title members { items { role } } } }`, { id: project.id }, { token: memberKey });
    expect(read.project.title).toBe('Readers Inc research');

    await t.gqlOk(ADD_ORG_MEMBER, { org: org.id, user: 'bob@example.com', role: 'READER' });
    const denied = await t.gql(ADD_PROJECT_MEMBER, { project: project.id, user: 'bob@example.com', role: 'MEMBER' }, { token: memberKey });
    expect(denied.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const members = await t.gqlOk(`query($id: ID!) { project(id: $id) { members { items { user { id } } } } }`, { id: project.id });
    expect(members.project.members.items.map((m: { user: { id: string } }) => m.user.id)).not.toContain('bob@example.com');
  });

  it('a key of organization A sees nothing of organization B', async () => {
    const a = await orgWithProject('Tenant A');
    const b = await orgWithProject('Tenant B');
    const keyA = await serviceAccountKey(a.project.id, 'OWNER');

    const orgs = await t.gqlOk(`{ organizations { items { id } } }`, {}, { token: keyA });
    expect(orgs.organizations.items.map((o: { id: string }) => o.id)).toEqual([a.org.id]);
    const orgB = await t.gqlOk(`query($id: ID!) { organization(id: $id) { id } project(id: "${b.project.id}") { id } }`, { id: b.org.id }, { token: keyA });
    expect(orgB).toEqual({ organization: null, project: null });
    const projectsB = await t.gql(`query($id: ID!) { projects(organizationId: $id) { items { id } } }`, { id: b.org.id }, { token: keyA });
    expect(projectsB.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const addToB = await t.gql(ADD_ORG_MEMBER, { org: b.org.id, user: 'eve@example.com', role: 'OWNER' }, { token: keyA });
    expect(addToB.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const header = await t.gql(`{ apiKeys { items { id } } }`, {}, { token: keyA, headers: { 'OpenAI-Project': b.project.id } });
    expect(header.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('no credential is UNAUTHENTICATED with HTTP 401', async () => {
    const result = await t.gql(`{ self { id } }`, {}, { token: undefined });
    expect(result.status).toBe(401);
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    const bad = await t.gql(`{ self { id } }`, {}, { token: 'sk-not-a-real-key-000000000000000' });
    expect(bad.status).toBe(401);
    expect(bad.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('a revoked key stops working at once', async () => {
    const { project } = await orgWithProject('Revokers');
    const { createApiKey } = await t.gqlOk(CREATE_KEY, { input: { name: 'short-lived', projectId: project.id } });
    const before = await t.gql(`{ self { id } }`, {}, { token: createApiKey.secret });
    expect(before.data?.self.id).toBe('admin@example.com');
    await t.gqlOk(`mutation($id: ID!) { deleteApiKey(id: $id) { id deleted } }`, { id: createApiKey.apiKey.id });
    const after = await t.gql(`{ self { id } }`, {}, { token: createApiKey.secret });
    expect(after.status).toBe(401);
    expect(after.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('the default organization and project cannot be deleted', async () => {
    const self = await t.gqlOk(`{ self { organizationRoleBindings { organization { id isDefault } } projectRoleBindings { project { id isDefault } } } }`);
    const org = self.self.organizationRoleBindings.find((b: any) => b.organization.isDefault).organization;
    const project = self.self.projectRoleBindings.find((b: any) => b.project.isDefault).project;
    const orgResult = await t.gql(`mutation($id: ID!) { deleteOrganization(id: $id) { deleted } }`, { id: org.id });
    expect(orgResult.errors?.[0]?.extensions?.code).toBe('FAILED_PRECONDITION');
    const projectResult = await t.gql(`mutation($id: ID!) { deleteProject(id: $id) { deleted } }`, { id: project.id });
    expect(projectResult.errors?.[0]?.extensions?.code).toBe('FAILED_PRECONDITION');
  });

  it('organization summaries cost the same number of queries for one organization or many', async () => {
    for (let i = 0; i < 4; i++) await orgWithProject(`Summary ${i}`);
    const query = `query($limit: Int) { organizations(limit: $limit) { items { id title summary { projectCount userCount } } } }`;
    const countOnce = async (limit: number) => {
      let count = 0;
      const listener = () => count++;
      t.platform.db.knex.on('query', listener);
      try {
        const result = await t.gqlOk(query, { limit });
        expect(result.organizations.items).toHaveLength(limit);
      } finally {
        t.platform.db.knex.off('query', listener);
      }
      return count;
    };
    // The fewest of three: a call may also look up the caller's principal, which the gateway's cache
    // dropped when the changes above were announced (the announcement may arrive during any call).
    const countQueries = async (limit: number) => Math.min(await countOnce(limit), await countOnce(limit), await countOnce(limit));
    expect(await countQueries(5)).toBe(await countQueries(1));
  });
});
