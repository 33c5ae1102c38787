/**
 * Issue 14: a namespace belongs to one project of the tenant. Before, an organization owner could assign
 * another organization's namespace to a project of theirs (or get one by accident: a project titled
 * "Default" got `default`) and read that namespace's pods through /v1/sessions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/index.js';
import { createKubernetesExecutor } from '../../agent/kubernetesExecutor.js';
import { startPlatform } from '../../bin/platform.js';
import { loadConfig } from '../../lib/config.js';
import { migrate, openDatabase } from '../../lib/db.js';
import { newId, randomString } from '../../lib/ids.js';
import { createLogger, silentLogger } from '../../lib/logging.js';
import { initial } from '../../subgraphs/users/migrations/001_initial.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../support/kubeApiServer.js';
import { LogCapture } from '../support/logCapture.js';
import { createTestDatabase, graphqlCall, startTestPlatform, type GraphQLResult, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';

const CREATE_ORG = `mutation($title: String!) { createOrganization(input: { title: $title }) { id } }`;
const CREATE_PROJECT = `mutation($input: CreateProjectInput!) { createProject(input: $input) { id assignments { clusterId namespace } } }`;
const UPDATE_PROJECT = `mutation($input: UpdateProjectInput!) { updateProject(input: $input) { id assignments { clusterId namespace } } }`;
const DELETE_PROJECT = `mutation($id: ID!) { deleteProject(id: $id) { deleted } }`;
const PROJECT = `query($id: ID!) { project(id: $id) { assignments { clusterId namespace } } }`;
const PROJECTS = `query($org: ID!) { projects(organizationId: $org) { items { id title } } }`;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function onlyError(result: GraphQLResult, code: string) {
  expect(result.errors, JSON.stringify(result)).toHaveLength(1);
  expect(result.errors![0]!.extensions?.code).toBe(code);
  return result.errors![0]!;
}

describe('a namespace belongs to one project', () => {
  let t: TestPlatform;
  let server: KubeApiServer;
  let agent: Agent;
  let clusterId: string;
  let otherClusterId: string;
  let victim: { organizationId: string; projectId: string; key: string };
  let intruder: { organizationId: string; projectId: string; key: string };

  beforeAll(async () => {
    server = await startKubeApiServer({ nodes: [{ name: 'node' }] });
    await fetch(`${server.url}/api/v1/namespaces`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'victim' } }),
    });
    const pod = await fetch(`${server.url}/api/v1/namespaces/victim/pods`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'private-trainer', namespace: 'victim' },
        spec: { containers: [{ name: 'main', image: 'busybox' }] },
      }),
    });
    expect(pod.status).toBe(201);
    t = await startTestPlatform();
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "shared" }) { registrationKey cluster { id } } }');
    clusterId = registerCluster.cluster.id;
    otherClusterId = (await t.gqlOk('mutation { registerCluster(input: { name: "other" }) { cluster { id } } }')).registerCluster.cluster.id;
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createKubernetesExecutor({ kubeConfig: kubeConfigFor(server), logger: silentLogger() }),
      backoff: { initialMs: 10, maxMs: 50 },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    victim = await projectWithKey(t, 'victim-org', { assignments: [{ clusterId, namespace: 'victim' }] });
    // Another organization, whose owner holds this key.
    intruder = await projectWithKey(t, 'intruder-org', { role: 'OWNER' });
  }, 60_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    await server?.close();
  });

  const pods = (key: string, namespace: string) =>
    fetch(`${t.url}/v1/sessions/${clusterId}/api/v1/namespaces/${namespace}/pods`, { headers: { authorization: `Bearer ${key}` } });

  it("another organization's owner cannot take a project's namespace, so cannot read its pods through /v1/sessions", async () => {
    const before = await t.gqlOk(PROJECT, { id: intruder.projectId });
    for (const clusterIdOfClaim of [null, clusterId]) {
      const result = await t.gql(
        UPDATE_PROJECT,
        { input: { id: intruder.projectId, assignments: [{ clusterId: clusterIdOfClaim, namespace: 'victim' }] } },
        { token: intruder.key },
      );
      const error = onlyError(result, 'CONFLICT');
      expect(error.message).toContain('"victim"');
      // Which project holds it is not said: it may be another organization's.
      expect(error.message).not.toContain(victim.projectId);
    }
    expect(await t.gqlOk(PROJECT, { id: intruder.projectId })).toEqual(before);

    const refused = await pods(intruder.key, 'victim');
    expect(refused.status).toBe(403);
    expect(await refused.text()).not.toContain('private-trainer');
    const own = await pods(victim.key, 'victim');
    expect(own.status).toBe(200);
    expect((await own.json()).items.map((p: { metadata: { name: string } }) => p.metadata.name)).toEqual(['private-trainer']);
  });

  it('creating a project with a taken namespace is CONFLICT and creates nothing', async () => {
    const result = await t.gql(
      CREATE_PROJECT,
      {
        input: {
          organizationId: intruder.organizationId,
          title: 'Takeover',
          assignments: [
            { clusterId, namespace: 'fresh-one' },
            { clusterId, namespace: 'victim' },
          ],
        },
      },
      { token: intruder.key },
    );
    expect(onlyError(result, 'CONFLICT').message).toContain('"victim"');
    const { projects } = await t.gqlOk(PROJECTS, { org: intruder.organizationId });
    expect(projects.items.map((p: { title: string }) => p.title)).toEqual(['intruder-org project']);
    // Nor was the other namespace of the refused project kept aside.
    const fresh = await t.gql(
      CREATE_PROJECT,
      { input: { organizationId: intruder.organizationId, title: 'Fresh', assignments: [{ namespace: 'fresh-one' }] } },
      { token: intruder.key },
    );
    expect(fresh.errors).toBeUndefined();
  });

  it('a claim is per namespace name, whatever the cluster: a claim on one cluster and one on every cluster overlap', async () => {
    const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'Overlap' });
    await t.gqlOk(CREATE_PROJECT, { input: { organizationId: org.id, title: 'On one', assignments: [{ clusterId, namespace: 'overlap' }] } });
    for (const other of [null, otherClusterId]) {
      const result = await t.gql(CREATE_PROJECT, {
        input: { organizationId: org.id, title: `Elsewhere ${other ?? 'all'}`, assignments: [{ clusterId: other, namespace: 'overlap' }] },
      });
      expect(onlyError(result, 'CONFLICT').message).toContain('"overlap"');
    }
    // One project may name its namespace on several clusters.
    const several = await t.gqlOk(CREATE_PROJECT, {
      input: {
        organizationId: org.id,
        title: 'Several',
        assignments: [
          { clusterId, namespace: 'several' },
          { clusterId: otherClusterId, namespace: 'several' },
        ],
      },
    });
    expect(several.createProject.assignments).toHaveLength(2);
  });

  it('a project titled "Default" gets a namespace of its own, not the default project\'s `default`', async () => {
    const namespaces: string[] = [];
    for (const title of ['First', 'Second']) {
      const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: `${title} defaults` });
      const { createProject } = await t.gqlOk(CREATE_PROJECT, { input: { organizationId: org.id, title: 'Default' } });
      expect(createProject.assignments).toEqual([{ clusterId: null, namespace: expect.stringMatching(/^default-[a-z0-9]{8}$/) }]);
      namespaces.push(createProject.assignments[0].namespace);
    }
    expect(namespaces[0]).not.toBe(namespaces[1]);
    const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'Wants default' });
    const explicit = await t.gql(CREATE_PROJECT, { input: { organizationId: org.id, title: 'Explicit', assignments: [{ namespace: 'default' }] } });
    expect(onlyError(explicit, 'CONFLICT').message).toContain('"default"');
  });

  it('a derived namespace is a DNS label of at most 63 characters, whatever the title', async () => {
    const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'Titles' });
    for (const title of ['x'.repeat(100), 'Ünïcödé !!!', '42 GPUs -- team']) {
      const { createProject } = await t.gqlOk(CREATE_PROJECT, { input: { organizationId: org.id, title } });
      const namespace = createProject.assignments[0].namespace as string;
      expect(namespace, title).toMatch(DNS_LABEL);
      expect(namespace.length).toBeLessThanOrEqual(63);
    }
  });

  it('a namespace is free again once its project is reassigned, deleted, or its organization deleted', async () => {
    const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'Releases' });
    const { createProject: first } = await t.gqlOk(CREATE_PROJECT, {
      input: { organizationId: org.id, title: 'First', assignments: [{ namespace: 'release-a' }] },
    });
    await t.gqlOk(UPDATE_PROJECT, { input: { id: first.id, assignments: [{ namespace: 'release-b' }] } });
    await t.gqlOk(CREATE_PROJECT, { input: { organizationId: org.id, title: 'Second', assignments: [{ namespace: 'release-a' }] } });
    expect(
      onlyError(await t.gql(CREATE_PROJECT, { input: { organizationId: org.id, title: 'Third', assignments: [{ namespace: 'release-b' }] } }), 'CONFLICT')
        .message,
    ).toContain('"release-b"');

    await t.gqlOk(DELETE_PROJECT, { id: first.id });
    await t.gqlOk(CREATE_PROJECT, { input: { organizationId: org.id, title: 'Third', assignments: [{ namespace: 'release-b' }] } });

    await t.gqlOk(`mutation($id: ID!) { deleteOrganization(id: $id) { deleted } }`, { id: org.id });
    const { createOrganization: next } = await t.gqlOk(CREATE_ORG, { title: 'Releases again' });
    const reused = await t.gqlOk(CREATE_PROJECT, {
      input: { organizationId: next.id, title: 'Reuse', assignments: [{ namespace: 'release-a' }, { namespace: 'release-b' }] },
    });
    expect(reused.createProject.assignments.map((a: { namespace: string }) => a.namespace)).toEqual(['release-a', 'release-b']);
  });

  it('a project keeps its namespace when its other assignments change', async () => {
    const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'Keeps' });
    const { createProject: project } = await t.gqlOk(CREATE_PROJECT, {
      input: { organizationId: org.id, title: 'Keeper', assignments: [{ namespace: 'kept' }] },
    });
    const updated = await t.gqlOk(UPDATE_PROJECT, { input: { id: project.id, assignments: [{ clusterId, namespace: 'kept' }, { namespace: 'kept-too' }] } });
    expect(updated.updateProject.assignments).toEqual([
      { clusterId, namespace: 'kept' },
      { clusterId: null, namespace: 'kept-too' },
    ]);
    const taken = await t.gql(CREATE_PROJECT, { input: { organizationId: org.id, title: 'Taker', assignments: [{ namespace: 'kept' }] } });
    expect(onlyError(taken, 'CONFLICT').message).toContain('"kept"');
  });

  it('of concurrent creates naming one namespace, exactly one wins', async () => {
    const orgs = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => t.gqlOk(CREATE_ORG, { title: `Race ${i}` })));
    const results = await Promise.all(
      orgs.map(({ createOrganization: org }, i) =>
        t.gql(CREATE_PROJECT, { input: { organizationId: org.id, title: `Racer ${i}`, assignments: [{ namespace: 'contested' }] } }),
      ),
    );
    expect(results.filter((r) => !r.errors).length).toBe(1);
    for (const lost of results.filter((r) => r.errors)) expect(onlyError(lost, 'CONFLICT').message).toContain('"contested"');
  });

  it("Kubernetes' system namespaces and names that are not DNS labels are BAD_USER_INPUT", async () => {
    const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'System' });
    for (const namespace of ['kube-system', 'kube-public', 'kube-node-lease', 'a'.repeat(64), 'Upper', 'dot.ted']) {
      const result = await t.gql(CREATE_PROJECT, { input: { organizationId: org.id, title: `Sys ${namespace.slice(0, 20)}`, assignments: [{ namespace }] } });
      expect(onlyError(result, 'BAD_USER_INPUT').extensions?.['field'], namespace).toBe('input.assignments[0].namespace');
    }
    const { projects } = await t.gqlOk(PROJECTS, { org: org.id });
    expect(projects.items).toEqual([]);
  });
});

describe('namespaces shared before claims existed', () => {
  it('the oldest project keeps a shared namespace; the newer loses that assignment, and the start logs it once', async () => {
    const database = await createTestDatabase();
    const dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-claims-'));
    try {
      // A database as the previous release left it: the users schema before claims, two organizations
      // whose projects share `shared`, and one project that took the default project's `default`.
      const db = await openDatabase({ databaseUrl: database.url, dataDir });
      await migrate(db.knex, 'users', [initial]);
      const users = db.knex.withSchema('users');
      const at = (minutes: number) => new Date(Date.UTC(2024, 0, 1, 0, minutes));
      const assignment = (namespace: string, clusterId: string | null = null) => ({ clusterId, namespace, kueueQueueName: null, nodeSelector: [] });
      const orgs = { default: newId('organization'), a: newId('organization'), b: newId('organization') };
      const projects = { default: newId('project'), older: newId('project'), newer: newId('project'), sneaky: newId('project') };
      await users.table('organizations').insert([
        { id: orgs.default, tenant_id: 'tenant-default', title: 'Default Organization', is_default: true, created_at: at(0) },
        { id: orgs.a, tenant_id: 'tenant-default', title: 'A', created_at: at(1) },
        { id: orgs.b, tenant_id: 'tenant-default', title: 'B', created_at: at(2) },
      ]);
      const project = (id: string, organizationId: string, title: string, minutes: number, assignments: object[], isDefault = false) => ({
        id,
        tenant_id: 'tenant-default',
        organization_id: organizationId,
        title,
        is_default: isDefault,
        created_at: at(minutes),
        assignments: JSON.stringify(assignments),
      });
      await db.knex
        .withSchema('users')
        .table('projects')
        .insert([
          project(projects.default, orgs.default, 'Default Project', 0, [assignment('default')], true),
          project(projects.older, orgs.a, 'Older', 3, [assignment('shared')]),
          project(projects.newer, orgs.b, 'Newer', 4, [assignment('shared', 'cluster-one'), assignment('shared', 'cluster-two'), assignment('newer-own')]),
          project(projects.sneaky, orgs.b, 'Default', 5, [assignment('default')]),
        ]);
      await db.knex
        .withSchema('users')
        .table('users')
        .insert({ id: 'admin@example.com', internal_id: randomString(16), tenant_id: 'tenant-default' });
      await db.knex
        .withSchema('users')
        .table('organization_members')
        .insert([orgs.default, orgs.a, orgs.b].map((id) => ({ organization_id: id, user_id: 'admin@example.com', role: 'OWNER' })));
      await db.close();

      const adminKey = `sk-${randomString(48)}`;
      const start = async (capture: LogCapture) => {
        const config = loadConfig(
          {},
          {
            port: 0,
            dataDir,
            databaseUrl: database.url,
            adminApiKey: adminKey,
            logLevel: 'warn',
            objectStore: { driver: 'filesystem', dir: path.join(dataDir, 'objects') },
          },
        );
        config.clusters = { ...config.clusters, defaultCluster: false };
        return startPlatform(config, { logger: createLogger('warn', 'mariner', capture) });
      };
      const firstLogs = new LogCapture();
      const platform = await start(firstLogs);
      const gql = (query: string, variables: Record<string, unknown>) => graphqlCall<any>(`${platform.url}/graphql`, query, variables, { token: adminKey });
      try {
        const namespacesOf = async (id: string) => (await gql(PROJECT, { id })).data.project.assignments;
        expect(await namespacesOf(projects.older)).toEqual([{ clusterId: null, namespace: 'shared' }]);
        expect(await namespacesOf(projects.newer)).toEqual([{ clusterId: null, namespace: 'newer-own' }]);
        expect(await namespacesOf(projects.sneaky)).toEqual([]);
        expect(await namespacesOf(projects.default)).toEqual([{ clusterId: null, namespace: 'default' }]);

        const warned = firstLogs.lines.filter((l) => String(l.msg).includes('two projects were assigned one namespace'));
        expect(warned.map((l) => [l['namespace'], l['projectId'], l['keptBy']]).sort()).toEqual(
          [
            ['default', projects.sneaky, projects.default],
            ['shared', projects.newer, projects.older],
          ].sort(),
        );
        const conflicts = await platform.db.knex.withSchema('users').table('namespace_claim_conflicts').where({ project_id: projects.newer });
        expect(conflicts).toHaveLength(1);
        expect(conflicts[0].removed_assignments).toEqual([assignment('shared', 'cluster-one'), assignment('shared', 'cluster-two')]);

        // Claims hold from now on.
        const taken = await gql(UPDATE_PROJECT, { input: { id: projects.newer, assignments: [{ namespace: 'shared' }] } });
        expect(taken.errors?.[0]?.extensions?.code).toBe('CONFLICT');
      } finally {
        await platform.close();
      }
      const secondLogs = new LogCapture();
      const again = await start(secondLogs);
      await again.close();
      expect(secondLogs.lines.filter((l) => String(l.msg).includes('two projects were assigned one namespace'))).toEqual([]);
    } finally {
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
