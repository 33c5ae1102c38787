import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.js';
import { startTestOidcProvider, type TestOidcProvider } from './support/oidcProvider.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

let idp: TestOidcProvider;
let otherIdp: TestOidcProvider;
let t: TestPlatform;
let defaultProjectId: string;

beforeAll(async () => {
  idp = await startTestOidcProvider({ audience: 'mariner' });
  otherIdp = await startTestOidcProvider({ audience: 'mariner' });
  t = await startTestPlatform({ config: { oidc: { issuer: idp.issuer, audience: 'mariner', emailClaim: 'email' } } });
  const self = await t.gqlOk(`{ self { organizationRoleBindings { organization { id } } projectRoleBindings { project { id } } } }`);
  const orgId = self.self.organizationRoleBindings[0].organization.id;
  defaultProjectId = self.self.projectRoleBindings[0].project.id;
  const addOrg = `mutation($u: ID!, $r: OrganizationRole!) { addOrganizationMember(organizationId: "${orgId}", userId: $u, role: $r) { role } }`;
  await t.gqlOk(addOrg, { u: 'carol@example.com', r: 'READER' });
  await t.gqlOk(`mutation { addProjectMember(projectId: "${defaultProjectId}", userId: "carol@example.com", role: MEMBER) { role } }`);
  await t.gqlOk(addOrg, { u: 'dave@example.com', r: 'READER' });
});
afterAll(async () => {
  await t?.close();
  await idp?.close();
  await otherIdp?.close();
});

const AUTHORIZE = `{ authorize(resource: "api.model", capability: READ) { authorized reason role projectId } }`;

describe('OIDC tokens at the gateway', () => {
  it('a token from the configured issuer is accepted and mapped to the user by email', async () => {
    const token = await idp.tokenFor('Carol@Example.com');
    const result = await t.gqlOk(`{ self { id } }`, {}, { token });
    expect(result.self.id).toBe('carol@example.com');
    const decision = await t.gqlOk(AUTHORIZE, {}, { token });
    expect(decision.authorize).toEqual({ authorized: true, reason: null, role: 'projectMember', projectId: defaultProjectId });
  });

  it('an organization reader without a project role is denied project resources', async () => {
    const token = await idp.tokenFor('dave@example.com');
    const self = await t.gqlOk(`{ self { id } }`, {}, { token });
    expect(self.self.id).toBe('dave@example.com');
    const keys = await t.gql(`{ apiKeys { items { id } } }`, {}, { token });
    expect(keys.status).toBe(403);
    expect(keys.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(keys.errors?.[0]?.message).toMatch(/project role/);
    const decision = await t.gqlOk(AUTHORIZE, {}, { token });
    expect(decision.authorize.authorized).toBe(false);
  });

  it.each([
    ['expired', () => idp.expiredTokenFor('carol@example.com'), /expired/],
    ['for another audience', () => idp.tokenFor('carol@example.com', { audience: 'other' }), /audience/],
    ['signed with a key the issuer does not publish', () => idp.foreignTokenFor('carol@example.com'), /signature/],
    ['from another issuer', () => otherIdp.tokenFor('carol@example.com'), /Invalid token/],
  ])('a token %s is rejected with 401', async (_name, makeToken, message) => {
    const result = await t.gql(`{ self { id } }`, {}, { token: await makeToken() });
    expect(result.status).toBe(401);
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(result.errors?.[0]?.message).toMatch(message);
  });

  it('a token the same issuer minted for another client is refused, even for a user of this platform', async () => {
    // Another app registered at the same IdP (another organization's, say) gets tokens for its own client id.
    const forOtherApp = await idp.tokenFor('carol@example.com', { audience: 'other-app' });
    const result = await t.gql(`{ self { id } }`, {}, { token: forOtherApp });
    expect(result.status).toBe(401);
    expect(result.errors?.[0]?.message).toMatch(/audience/);
    expect(result.data?.self ?? null).toBeNull();
  });

  it('an issuer without an audience is refused at start, naming the setting', () => {
    expect(() => loadConfig({ MARINER_OIDC_ISSUER: idp.issuer })).toThrow(/MARINER_OIDC_ISSUER is set, so MARINER_OIDC_AUDIENCE must be too/);
    expect(loadConfig({ MARINER_OIDC_ISSUER: idp.issuer, MARINER_OIDC_AUDIENCE: 'mariner' }).oidc).toMatchObject({ issuer: idp.issuer, audience: 'mariner' });
  });

  it('a valid token for someone who is not a Mariner user is rejected', async () => {
    const result = await t.gql(`{ self { id } }`, {}, { token: await idp.tokenFor('stranger@example.com') });
    expect(result.status).toBe(401);
    expect(result.errors?.[0]?.message).toMatch(/No Mariner user/);
  });

  it('the OpenAI-Project header picks a project; one the user is not in is refused', async () => {
    const token = await idp.tokenFor('carol@example.com');
    const own = await t.gqlOk(AUTHORIZE, {}, { token, headers: { 'OpenAI-Project': defaultProjectId } });
    expect(own.authorize.projectId).toBe(defaultProjectId);
    const { createProject } = await t.gqlOk(
      `mutation { createProject(input: { organizationId: "${(await t.gqlOk(`{ organizations { items { id } } }`)).organizations.items[0].id}", title: "Private" }) { id } }`,
    );
    const other = await t.gql(`{ apiKeys { items { id } } }`, {}, { token, headers: { 'OpenAI-Project': createProject.id } });
    expect(other.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(other.errors?.[0]?.message).toContain(`not a member of project ${createProject.id}`);
  });
});
