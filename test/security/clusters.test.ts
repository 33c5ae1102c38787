import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';

/**
 * Who owns a cluster and who may use it (README "Security model"), tried as org B's owner would
 * against org A: a platform admin registers platform clusters and grants them; an organization
 * owner registers clusters for its own organization only, which no other organization sees.
 */
const REGISTER = `mutation Register($input: RegisterClusterInput!) {
  registerCluster(input: $input) { registrationKey cluster { id name organizationId sharedWithAllOrganizations grantedOrganizationIds } }
}`;
const LIST = `{ clusters(limit: 100) { items { id name organizationId grantedOrganizationIds } } }`;
const GRANTS = `mutation Grants($id: ID!, $input: ClusterGrantsInput!) {
  setClusterGrants(clusterId: $id, input: $input) { id sharedWithAllOrganizations grantedOrganizationIds }
}`;
const WORKER = `{ workerCluster { clusterId organizationId sharedWithAllOrganizations organizationIds } }`;

let t: TestPlatform;
let a: Awaited<ReturnType<typeof projectWithKey>>;
let b: Awaited<ReturnType<typeof projectWithKey>>;
const codeOf = (result: { errors?: { extensions?: { code?: string } }[] }) => result.errors?.[0]?.extensions?.code;
const namesFor = async (token?: string) => (await t.gqlOk(LIST, {}, token ? { token } : {})).clusters.items.map((c: { name: string }) => c.name);

beforeAll(async () => {
  t = await startTestPlatform();
  a = await projectWithKey(t, 'Org A', { role: 'OWNER' });
  b = await projectWithKey(t, 'Org B', { role: 'OWNER' });
});
afterAll(async () => {
  await t?.close();
});

describe('cluster ownership between organizations', () => {
  it("an organization owner's cluster belongs to its organization and is invisible to another's", async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { input: { name: 'b-gpus' } }, { token: b.key });
    expect(registerCluster.cluster).toMatchObject({ organizationId: b.organizationId, sharedWithAllOrganizations: false, grantedOrganizationIds: [] });
    const id = registerCluster.cluster.id;

    expect(await namesFor(b.key)).toContain('b-gpus');
    expect(await namesFor(a.key)).not.toContain('b-gpus');
    expect((await t.gqlOk(`query($id: ID!) { cluster(id: $id) { id } }`, { id }, { token: a.key })).cluster).toBeNull();
    // Managing it from org A is NOT_FOUND, as for a cluster that does not exist; nothing changes.
    expect(codeOf(await t.gql(`mutation($id: ID!) { unregisterCluster(id: $id) { id } }`, { id }, { token: a.key }))).toBe('NOT_FOUND');
    expect(
      codeOf(
        await t.gql(`mutation($id: ID!) { createClusterConfig(clusterId: $id, input: { timeSlicingGpus: 2 }) { timeSlicingGpus } }`, { id }, { token: a.key }),
      ),
    ).toBe('NOT_FOUND');
    expect((await t.gqlOk(`query($id: ID!) { cluster(id: $id) { config { timeSlicingGpus } } }`, { id }, { token: b.key })).cluster.config).toBeNull();

    // Its agent learns whom it works for: org B only.
    expect((await t.gqlOk(WORKER, {}, { token: registerCluster.registrationKey })).workerCluster).toEqual({
      clusterId: id,
      organizationId: b.organizationId,
      sharedWithAllOrganizations: false,
      organizationIds: [],
    });
  });

  it('an organization owner cannot register for another organization, nor a platform cluster', async () => {
    const forA = await t.gql(REGISTER, { input: { name: 'for-a', organizationId: a.organizationId } }, { token: b.key });
    expect(codeOf(forA)).toBe('FORBIDDEN');
    const shared = await t.gql(REGISTER, { input: { name: 'shared', sharedWithAllOrganizations: true } }, { token: b.key });
    expect(codeOf(shared)).toBe('BAD_USER_INPUT');
    expect(await namesFor()).not.toContain('for-a');
    expect(await namesFor()).not.toContain('shared');
  });

  it('names are unique per owner: another organization may use the same name, and a conflict reveals nothing of others', async () => {
    await t.gqlOk(REGISTER, { input: { name: 'gpu-pool' } }, { token: a.key });
    const sameName = await t.gqlOk(REGISTER, { input: { name: 'gpu-pool' } }, { token: b.key });
    expect(sameName.registerCluster.cluster.organizationId).toBe(b.organizationId);
    expect(codeOf(await t.gql(REGISTER, { input: { name: 'gpu-pool' } }, { token: b.key }))).toBe('CONFLICT');
  });

  it('a platform cluster is shared with every organization by default; only platform admins manage it', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { input: { name: 'platform-h100' } });
    expect(registerCluster.cluster).toMatchObject({ organizationId: null, sharedWithAllOrganizations: true });
    const id = registerCluster.cluster.id;
    expect(await namesFor(a.key)).toContain('platform-h100');
    expect(await namesFor(b.key)).toContain('platform-h100');

    expect(codeOf(await t.gql(`mutation($id: ID!) { unregisterCluster(id: $id) { id } }`, { id }, { token: b.key }))).toBe('FORBIDDEN');
    expect(
      codeOf(
        await t.gql(`mutation($id: ID!) { createClusterConfig(clusterId: $id, input: { timeSlicingGpus: 4 }) { timeSlicingGpus } }`, { id }, { token: b.key }),
      ),
    ).toBe('FORBIDDEN');
    expect(codeOf(await t.gql(GRANTS, { id, input: { sharedWithAllOrganizations: false, organizationIds: [b.organizationId] } }, { token: b.key }))).toBe(
      'FORBIDDEN',
    );
    expect((await t.gqlOk(`query($id: ID!) { cluster(id: $id) { config { timeSlicingGpus } } }`, { id })).cluster.config).toBeNull();
  });

  it('a platform admin grants a platform cluster to one organization: the others stop seeing it, and grants of others stay hidden', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, {
      input: { name: 'a100-for-a', sharedWithAllOrganizations: false, grantedOrganizationIds: [a.organizationId] },
    });
    const id = registerCluster.cluster.id;
    expect(await namesFor(a.key)).toContain('a100-for-a');
    expect(await namesFor(b.key)).not.toContain('a100-for-a');

    const granted = await t.gqlOk(GRANTS, { id, input: { sharedWithAllOrganizations: false, organizationIds: [a.organizationId, b.organizationId] } });
    expect(granted.setClusterGrants.grantedOrganizationIds).toEqual([a.organizationId, b.organizationId]);
    // B sees the cluster, but of the grants only its own.
    const seenByB = (await t.gqlOk(LIST, {}, { token: b.key })).clusters.items.find((c: { id: string }) => c.id === id);
    expect(seenByB.grantedOrganizationIds).toEqual([b.organizationId]);
    const worker = await t.gqlOk(WORKER, {}, { token: registerCluster.registrationKey });
    expect(worker.workerCluster.organizationIds).toEqual([a.organizationId, b.organizationId]);

    await t.gqlOk(GRANTS, { id, input: { sharedWithAllOrganizations: false, organizationIds: [a.organizationId] } });
    expect(await namesFor(b.key)).not.toContain('a100-for-a');
  });

  it('grants apply to platform clusters only, and bad organization ids are refused naming the field', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { input: { name: 'b-own' } }, { token: b.key });
    const onOrgCluster = await t.gql(GRANTS, { id: registerCluster.cluster.id, input: { sharedWithAllOrganizations: true, organizationIds: [] } });
    expect(codeOf(onOrgCluster)).toBe('FAILED_PRECONDITION');
    const bad = await t.gql(REGISTER, { input: { name: 'bad-grants', grantedOrganizationIds: ['not-an-org'] } });
    expect(bad.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.grantedOrganizationIds[0]' });
    expect(await namesFor()).not.toContain('bad-grants');
  });

  it('a platform admin may register a cluster owned by an organization', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { input: { name: 'given-to-a', organizationId: a.organizationId } });
    expect(registerCluster.cluster.organizationId).toBe(a.organizationId);
    expect(await namesFor(a.key)).toContain('given-to-a');
    expect(await namesFor(b.key)).not.toContain('given-to-a');
  });
});
