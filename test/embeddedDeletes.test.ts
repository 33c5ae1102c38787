import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * Removing things on `mariner up`'s embedded database (PGlite). knex-pglite answered a delete with its
 * raw result instead of the number of rows, so every "was anything deleted?" check read no: a member,
 * a project, an organization or a cluster could not be removed under `npm start` (NOT_FOUND), while the
 * same calls worked on PostgreSQL, where the other tests run (lib/db.ts countingClient).
 */
let t: TestPlatform;

beforeAll(async () => {
  t = await startTestPlatform({ embedded: true });
}, 120_000);
afterAll(async () => {
  await t?.close();
});

describe('removing on the embedded database', () => {
  it('members, projects, organizations and clusters are removed, and removing again is NOT_FOUND', async () => {
    const org = (await t.gqlOk('mutation { createOrganization(input: { title: "Embedded Org" }) { id } }')).createOrganization.id as string;
    const project = (await t.gqlOk('mutation($org: ID!) { createProject(input: { organizationId: $org, title: "Embedded Project" }) { id } }', { org }))
      .createProject.id as string;
    const user = 'member@example.com';
    await t.gqlOk('mutation($org: ID!, $user: ID!) { addOrganizationMember(organizationId: $org, userId: $user, role: READER) { role } }', { org, user });
    await t.gqlOk('mutation($project: ID!, $user: ID!) { addProjectMember(projectId: $project, userId: $user, role: MEMBER) { role } }', { project, user });

    const removeFromProject = 'mutation($project: ID!, $user: ID!) { removeProjectMember(projectId: $project, userId: $user) { deleted } }';
    expect((await t.gqlOk(removeFromProject, { project, user })).removeProjectMember.deleted).toBe(true);
    expect((await t.gql(removeFromProject, { project, user })).errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');

    const removeFromOrg = 'mutation($org: ID!, $user: ID!) { removeOrganizationMember(organizationId: $org, userId: $user) { deleted } }';
    expect((await t.gqlOk(removeFromOrg, { org, user })).removeOrganizationMember.deleted).toBe(true);

    const cluster = (await t.gqlOk('mutation { registerCluster(input: { name: "embedded-cluster" }) { cluster { id } } }')).registerCluster.cluster
      .id as string;
    expect((await t.gqlOk('mutation($id: ID!) { unregisterCluster(id: $id) { deleted } }', { id: cluster })).unregisterCluster.deleted).toBe(true);
    expect((await t.gqlOk('query($id: ID!) { cluster(id: $id) { id } }', { id: cluster })).cluster).toBeNull();

    expect((await t.gqlOk('mutation($id: ID!) { deleteProject(id: $id) { deleted } }', { id: project })).deleteProject.deleted).toBe(true);
    expect((await t.gqlOk('mutation($id: ID!) { deleteOrganization(id: $id) { deleted } }', { id: org })).deleteOrganization.deleted).toBe(true);
    expect((await t.gql('mutation($id: ID!) { deleteOrganization(id: $id) { deleted } }', { id: org })).errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
  });
});
