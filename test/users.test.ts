import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

let t: TestPlatform;
let org: { id: string };
let project: { id: string };

const KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id name excludedFromRateLimiting user { id } } } }`;

beforeAll(async () => {
  t = await startTestPlatform();
  ({ createOrganization: org } = await t.gqlOk(`mutation { createOrganization(input: { title: "Users Org" }) { id } }`));
  ({ createProject: project } = await t.gqlOk(
    `mutation($org: ID!) { createProject(input: { organizationId: $org, title: "Users Project", assignments: [{ namespace: "team-a", kueueQueueName: "gpu-queue", nodeSelector: [{ key: "nvidia.com/gpu.product", value: "H100" }] }] }) { id } }`,
    { org: org.id },
  ));
});
afterAll(async () => {
  await t?.close();
});

async function memberKey(userId: string, role: 'OWNER' | 'MEMBER') {
  // A service account stands in for a person: give it the project role wanted.
  const { createApiKey } = await t.gqlOk(KEY, { input: { name: `${userId}-key`, projectId: project.id, isServiceAccount: true, role: 'READER' } });
  const self = await t.gqlOk(`{ self { id } }`, {}, { token: createApiKey.secret });
  await t.gqlOk(`mutation($p: ID!, $u: ID!, $r: ProjectRole!) { addProjectMember(projectId: $p, userId: $u, role: $r) { role } }`, {
    p: project.id,
    u: self.self.id,
    r: role,
  });
  return { secret: createApiKey.secret as string, userId: self.self.id as string, keyId: createApiKey.apiKey.id as string };
}

describe('users, projects and API keys', () => {
  it('a project keeps its assignments: namespace, Kueue queue and node selector', async () => {
    const read = await t.gqlOk(`query($id: ID!) { project(id: $id) { assignments { clusterId namespace kueueQueueName nodeSelector { key value } } } }`, {
      id: project.id,
    });
    expect(read.project.assignments).toEqual([
      { clusterId: null, namespace: 'team-a', kueueQueueName: 'gpu-queue', nodeSelector: [{ key: 'nvidia.com/gpu.product', value: 'H100' }] },
    ]);
    const updated = await t.gqlOk(
      `mutation($id: ID!) { updateProject(input: { id: $id, title: "Users Project 2", assignments: [{ namespace: "team-b" }] }) { title assignments { namespace } } }`,
      { id: project.id },
    );
    expect(updated.updateProject).toEqual({ title: 'Users Project 2', assignments: [{ namespace: 'team-b' }] });
  });

  it('members see their own keys; owners see every key of the project', async () => {
    const owner = await memberKey('owner', 'OWNER');
    const member = await memberKey('member', 'MEMBER');
    const list = async (token: string) =>
      (await t.gqlOk(`{ apiKeys(limit: 100) { items { id user { id } } } }`, {}, { token })).apiKeys.items.map((k: { id: string }) => k.id);
    expect(await list(member.secret)).toEqual([member.keyId]);
    expect(await list(owner.secret)).toEqual(expect.arrayContaining([owner.keyId, member.keyId]));
  });

  it('a key can be renamed; only organization owners change rate-limit exclusion', async () => {
    const member = await memberKey('renamer', 'MEMBER');
    const renamed = await t.gqlOk(
      `mutation($id: ID!) { updateApiKey(input: { id: $id, name: "renamed" }) { name } }`,
      { id: member.keyId },
      { token: member.secret },
    );
    expect(renamed.updateApiKey.name).toBe('renamed');
    const refused = await t.gql(
      `mutation($id: ID!) { updateApiKey(input: { id: $id, excludedFromRateLimiting: true }) { name } }`,
      { id: member.keyId },
      { token: member.secret },
    );
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const byOwner = await t.gqlOk(`mutation($id: ID!) { updateApiKey(input: { id: $id, excludedFromRateLimiting: true }) { excludedFromRateLimiting } }`, {
      id: member.keyId,
    });
    expect(byOwner.updateApiKey.excludedFromRateLimiting).toBe(true);
  });

  it('removing someone from the organization revokes their keys there', async () => {
    const leaver = await memberKey('leaver', 'MEMBER');
    await t.gqlOk(`mutation($o: ID!, $u: ID!) { removeOrganizationMember(organizationId: $o, userId: $u) { deleted } }`, { o: org.id, u: leaver.userId });
    const after = await t.gql(`{ self { id } }`, {}, { token: leaver.secret });
    expect(after.status).toBe(401);
  });

  it('an organization keeps at least one owner', async () => {
    const result = await t.gql(`mutation($o: ID!) { removeOrganizationMember(organizationId: $o, userId: "admin@example.com") { deleted } }`, { o: org.id });
    expect(result.errors?.[0]?.extensions?.code).toBe('FAILED_PRECONDITION');
    const still = await t.gqlOk(`query($id: ID!) { organization(id: $id) { members { items { role user { id } } } } }`, { id: org.id });
    expect(still.organization.members.items).toContainEqual({ role: 'OWNER', user: { id: 'admin@example.com' } });
  });

  it('a project member must first belong to the organization', async () => {
    const result = await t.gql(`mutation($p: ID!) { addProjectMember(projectId: $p, userId: "outsider@example.com", role: MEMBER) { role } }`, {
      p: project.id,
    });
    expect(result.errors?.[0]?.extensions?.code).toBe('FAILED_PRECONDITION');
  });

  it('lists page with after/limit/hasMore and no overlap', async () => {
    for (const title of ['Page A', 'Page B', 'Page C'])
      await t.gqlOk(`mutation($t: String!) { createOrganization(input: { title: $t }) { id } }`, { t: title });
    const all: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = await t.gqlOk(`query($after: String) { organizations(limit: 2, after: $after) { items { id } hasMore } }`, { after });
      all.push(...page.organizations.items.map((o: { id: string }) => o.id));
      if (!page.organizations.hasMore) break;
      after = all[all.length - 1]!;
    }
    const everything = await t.gqlOk(`{ organizations(limit: 100) { items { id } hasMore } }`);
    expect(all).toEqual(everything.organizations.items.map((o: { id: string }) => o.id));
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBeGreaterThanOrEqual(5);
  });

  it('users lists the people of the organizations the caller owns', async () => {
    await t.gqlOk(`mutation($o: ID!) { addOrganizationMember(organizationId: $o, userId: "zoe@example.com", role: READER) { role } }`, { o: org.id });
    const users = await t.gqlOk(`{ users(limit: 100) { items { id isServiceAccount } } }`);
    expect(users.users.items).toContainEqual({ id: 'zoe@example.com', isServiceAccount: false });
  });

  it('someone in hundreds of projects can still use the API (their memberships travel to the subgraphs)', async () => {
    const { createOrganization: big } = await t.gqlOk(`mutation { createOrganization(input: { title: "Big Org" }) { id } }`);
    const aliases = (from: number) =>
      Array.from({ length: 10 }, (_, i) => `p${i}: createProject(input: { organizationId: "${big.id}", title: "Project ${from + i}" }) { id }`).join(' ');
    for (let i = 0; i < 300; i += 10) await t.gqlOk(`mutation { ${aliases(i)} }`);
    const result = await t.gqlOk(`query($id: ID!) { organization(id: $id) { summary { projectCount } } self { id } }`, { id: big.id });
    expect(result.organization.summary.projectCount).toBe(300);
  });
});
