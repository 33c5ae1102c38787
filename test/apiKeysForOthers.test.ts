import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

/**
 * Issue 24 item 5, "give them keys": an organization owner makes API keys for a member of a project
 * (createApiKey's userId) or for a service account, as LLMariner lets organization owners; nobody else
 * can, and no owner of another organization; the create answer is where the secret is, and the schema
 * says so.
 */
let t: TestPlatform;
let projectId: string;
let organizationId: string;
const member = 'dana@example.com';
const outsider = 'erin@example.com';
const CREATE = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id name } } }`;
const SELF = `query { self { id } }`;

beforeAll(async () => {
  t = await startTestPlatform();
  const { organizations } = await t.gqlOk('{ organizations { items { id } } }');
  organizationId = organizations.items[0].id;
  const { createProject } = await t.gqlOk('mutation($org: ID!) { createProject(input: { organizationId: $org, title: "Team" }) { id } }', {
    org: organizationId,
  });
  projectId = createProject.id;
  for (const user of [member, outsider])
    await t.gqlOk('mutation($org: ID!, $user: ID!) { addOrganizationMember(organizationId: $org, userId: $user, role: READER) { role } }', {
      org: organizationId,
      user,
    });
  await t.gqlOk('mutation($p: ID!, $user: ID!) { addProjectMember(projectId: $p, userId: $user, role: MEMBER) { role } }', { p: projectId, user: member });
});
afterAll(async () => {
  await t?.close();
});

describe('createApiKey for someone else', () => {
  it('an organization owner makes a key for a project member: it acts as that member', async () => {
    const { createApiKey } = await t.gqlOk(CREATE, { input: { name: 'for-dana', projectId, userId: member } });
    expect(createApiKey.secret).toMatch(/^sk-/);
    const { self } = await t.gqlOk(SELF, {}, { token: createApiKey.secret });
    expect(self.id).toBe(member);
  });

  it('a user who is not in the project gets no key', async () => {
    const result = await t.gql(CREATE, { input: { name: 'for-erin', projectId, userId: outsider } });
    expect(result.errors?.[0]?.extensions?.code).toBe('FAILED_PRECONDITION');
    expect(result.errors?.[0]?.message).toContain('addProjectMember');
  });

  it('a member cannot make keys for others, nor an owner of another organization', async () => {
    const { createApiKey: own } = await t.gqlOk(CREATE, { input: { name: 'dana-own', projectId, userId: member } });
    const byMember = await t.gql(CREATE, { input: { name: 'for-admin', projectId, userId: 'admin@mariner.local' } }, { token: own.secret });
    expect(byMember.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const other = await projectWithKey(t, 'elsewhere', { role: 'OWNER' });
    const byOther = await t.gql(CREATE, { input: { name: 'sneaky', projectId, userId: member } }, { token: other.key });
    expect(['FORBIDDEN', 'NOT_FOUND']).toContain(byOther.errors?.[0]?.extensions?.code);
    expect(byOther.data?.createApiKey ?? null).toBeNull();
  });

  it('a service-account key is made by an owner; userId does not go with it', async () => {
    const { createApiKey } = await t.gqlOk(CREATE, { input: { name: 'ci', projectId, isServiceAccount: true, role: 'READER' } });
    const { self } = await t.gqlOk(SELF, {}, { token: createApiKey.secret });
    expect(self.id).toMatch(/@serviceaccount\.mariner$/);
    const both = await t.gql(CREATE, { input: { name: 'x', projectId, isServiceAccount: true, userId: member } });
    expect(both.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
  });

  it('the schema says that the create answer is the only place the secret is shown', async () => {
    const { __type } = await t.gqlOk('{ __type(name: "CreateApiKeyPayload") { fields { name description } } }');
    const secret = __type.fields.find((f: { name: string }) => f.name === 'secret');
    expect(secret.description).toContain('cannot be read again');
  });
});
