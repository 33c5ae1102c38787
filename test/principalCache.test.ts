import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningComponent } from '../bin/serve.js';
import { subgraphUrlSetting } from '../bin/serveConfig.js';
import { randomString } from '../lib/ids.js';
import { LISTENER_APPLICATION_NAME } from '../lib/pubsub.js';
import { SUBGRAPH_NAMES } from '../schema/subgraphs.js';
import { hashSecret } from '../subgraphs/users/index.js';
import { graphqlCall, startTestPlatform, TEST_POSTGRES_URL, type TestPlatform } from './support/platform.js';
import { startServeComponent } from './support/serveComponent.js';

/**
 * The gateway's principal cache (gateway/authentication.ts): it saves the users subgraph call on most
 * requests, and a change to a principal (a deleted key, a removed member) still takes effect at once,
 * on every replica, because the users subgraph announces it on pub/sub (LISTEN/NOTIFY here).
 */

const KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id user { id } } } }`;
const SECRET = randomString(40);

let t: TestPlatform;
let defaultOrganization: string;
let defaultProject: string;

beforeAll(async () => {
  t = await startTestPlatform({ config: { internalTokenSecret: SECRET } });
  const { self } = await t.gqlOk(`{ self { organizationRoleBindings { organization { id isDefault projects(limit: 10) { items { id isDefault } } } } } }`);
  const organization = self.organizationRoleBindings.find((b: any) => b.organization.isDefault).organization;
  defaultOrganization = organization.id;
  defaultProject = organization.projects.items.find((p: any) => p.isDefault).id;
}, 60_000);
afterAll(async () => {
  await t?.close();
});

/** A service-account key: its synthetic user is an organization READER and the owner of the default project. */
async function serviceAccountKey(name: string): Promise<{ secret: string; id: string; userId: string }> {
  const { createApiKey } = await t.gqlOk(KEY, { input: { name, projectId: defaultProject, isServiceAccount: true, role: 'READER' } });
  return { secret: createApiKey.secret, id: createApiKey.apiKey.id, userId: createApiKey.apiKey.user.id };
}

/** `{ self { id } }` with `token` at `graphqlUrl`: the HTTP status and the error code, if any. */
async function selfWith(graphqlUrl: string, token: string): Promise<{ status: number; code: string | undefined }> {
  const answer = await graphqlCall(graphqlUrl, '{ self { id } }', {}, { token });
  return { status: answer.status, code: answer.errors?.[0]?.extensions?.code };
}

/**
 * Deletes a key's row behind the users subgraph's back: no announcement, so a gateway that still
 * accepts the key answered from its cache.
 */
async function deleteKeyRowSilently(secret: string): Promise<void> {
  expect(
    await t.platform.db.knex
      .withSchema('users')
      .table('api_keys')
      .where({ secret_hash: hashSecret(secret) })
      .delete(),
  ).toBe(1);
}

/**
 * Whether the gateway at `graphqlUrl` answers a key from its cache: a fresh key, used once, then its row
 * deleted silently, is still accepted. Tried again for up to 5 s: the key's own creation is announced,
 * and an announcement heard after the first use rightly drops what it cached.
 */
async function cachesKeys(graphqlUrl: string): Promise<boolean> {
  return within(5_000, async () => {
    const key = await serviceAccountKey('cached');
    if ((await selfWith(graphqlUrl, key.secret)).status !== 200) return false;
    await deleteKeyRowSilently(key.secret);
    return (await selfWith(graphqlUrl, key.secret)).status === 200;
  });
}

/** Polls `check` every 20 ms until it is true, for at most `timeoutMs`; false if it never was. */
async function within(timeoutMs: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('the gateway caches principals', () => {
  it('a key is answered from the cache once it was used (its row deleted without an announcement, it still works)', async () => {
    expect(await cachesKeys(t.graphqlUrl)).toBe(true);
  });

  it('a deleted key is refused on the next request, its principal cached until then', async () => {
    const key = await serviceAccountKey('revoked');
    for (let i = 0; i < 3; i++) expect((await selfWith(t.graphqlUrl, key.secret)).status).toBe(200);
    await t.gqlOk(`mutation($id: ID!) { deleteApiKey(id: $id) { deleted } }`, { id: key.id });
    expect(await selfWith(t.graphqlUrl, key.secret)).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
    // Not remembered as unknown either: the OpenAI API refuses it the same way.
    const models = await fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${key.secret}` } });
    expect(models.status).toBe(401);
  });

  it('an organization owner can use a project in the next request after creating it (their cached principal gains it at once)', async () => {
    const { createOrganization: organization } = await t.gqlOk(`mutation { createOrganization(input: { title: "Fresh Org" }) { id } }`);
    for (let i = 0; i < 5; i++) {
      const { createProject: project } = await t.gqlOk(
        `mutation($org: ID!, $title: String!) { createProject(input: { organizationId: $org, title: $title }) { id } }`,
        { org: organization.id, title: `Fresh ${i}` },
      );
      await t.gqlOk(KEY, { input: { name: `fresh-${i}`, projectId: project.id } });
    }
  });

  it('removing a member from a project or an organization changes what their cached principal may do', async () => {
    const key = await serviceAccountKey('member');
    const { createProject: project } = await t.gqlOk(`mutation($org: ID!) { createProject(input: { organizationId: $org, title: "Cache Project" }) { id } }`, {
      org: defaultOrganization,
    });
    const { createOrganization: organization } = await t.gqlOk(`mutation { createOrganization(input: { title: "Cache Org" }) { id } }`);
    await t.gqlOk(`mutation($p: ID!, $u: ID!) { addProjectMember(projectId: $p, userId: $u, role: MEMBER) { role } }`, { p: project.id, u: key.userId });
    await t.gqlOk(`mutation($o: ID!, $u: ID!) { addOrganizationMember(organizationId: $o, userId: $u, role: READER) { role } }`, {
      o: organization.id,
      u: key.userId,
    });
    const seen = async () => {
      const data = await t.gqlOk(
        `query($org: ID!) { projects(organizationId: $org, limit: 100) { items { id } } organizations(limit: 100) { items { id } } }`,
        { org: defaultOrganization },
        { token: key.secret },
      );
      return { projects: data.projects.items.map((p: { id: string }) => p.id), organizations: data.organizations.items.map((o: { id: string }) => o.id) };
    };
    for (let i = 0; i < 2; i++) {
      const both = await seen();
      expect(both.projects).toContain(project.id);
      expect(both.organizations).toContain(organization.id);
    }

    await t.gqlOk(`mutation($p: ID!, $u: ID!) { removeProjectMember(projectId: $p, userId: $u) { deleted } }`, { p: project.id, u: key.userId });
    const withoutProject = await seen();
    expect(withoutProject.projects).toEqual([defaultProject]);
    expect(withoutProject.organizations).toContain(organization.id);

    await t.gqlOk(`mutation($o: ID!, $u: ID!) { removeOrganizationMember(organizationId: $o, userId: $u) { deleted } }`, { o: organization.id, u: key.userId });
    expect((await seen()).organizations).toEqual([defaultOrganization]);
  });

  it('a lost LISTEN connection empties the cache, which fills again once the gateway listens again', async () => {
    // A key answered from the cache (its row is gone).
    let key!: { secret: string };
    expect(
      await within(5_000, async () => {
        key = await serviceAccountKey('reset');
        await selfWith(t.graphqlUrl, key.secret);
        await deleteKeyRowSilently(key.secret);
        return (await selfWith(t.graphqlUrl, key.secret)).status === 200;
      }),
    ).toBe(true);
    // As a restarted PostgreSQL would: the process's listening connection ends; events in the gap
    // would be lost, so nothing cached before it may be served after.
    const ended = await t.platform.db.knex.raw(
      'select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name = ? and pid <> pg_backend_pid()',
      [LISTENER_APPLICATION_NAME],
    );
    expect(ended.rows.length).toBe(1);
    expect(await within(2_000, async () => (await selfWith(t.graphqlUrl, key.secret)).status === 401)).toBe(true);

    // Re-opened after 1 s: keys are cached again.
    expect(await cachesKeys(t.graphqlUrl)).toBe(true);
  });
});

describe('two gateway replicas on one PostgreSQL database', () => {
  const running: RunningComponent[] = [];
  let replicaB: string;

  beforeAll(async () => {
    // Replica A is the platform's own gateway; B is `mariner serve gateway` on the same subgraphs and database.
    const subgraphEnv = Object.fromEntries(SUBGRAPH_NAMES.map((name) => [subgraphUrlSetting(name), t.platform.subgraphUrls[name]]));
    const gateway = await startServeComponent(
      { secret: SECRET, dataDir: t.dataDir, databaseUrl: await databaseUrlOf(t), adminKey: t.adminKey, running },
      'gateway',
      { ...subgraphEnv, MARINER_DRAIN_TIMEOUT_MS: '0' },
    );
    replicaB = `${gateway.url}/graphql`;
  }, 60_000);
  afterAll(async () => {
    for (const component of running.reverse()) await component.close();
  });

  it('replica B caches principals too', async () => {
    expect(await cachesKeys(replicaB)).toBe(true);
  });

  it('a key deleted through replica A is refused by replica B within 1 s', async () => {
    const key = await serviceAccountKey('replica-revoked');
    for (let i = 0; i < 3; i++) expect((await selfWith(replicaB, key.secret)).status).toBe(200);
    await t.gqlOk(`mutation($id: ID!) { deleteApiKey(id: $id) { deleted } }`, { id: key.id });
    const refused = await within(1_000, async () => (await selfWith(replicaB, key.secret)).status === 401);
    expect(refused).toBe(true);
  });
});

/** The test platform's database, on the tests' PostgreSQL server. */
async function databaseUrlOf(platform: TestPlatform): Promise<string> {
  const { rows } = await platform.platform.db.knex.raw('select current_database() as name');
  return `${TEST_POSTGRES_URL}/${rows[0].name}`;
}
