import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { PROJECT_ROLE_BINDING } from '../agent/kubernetes/projectRoleBindings.js';
import { silentLogger } from '../lib/logging.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from './support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

/**
 * `worker.namespaces: dynamic` (issue 23): the agent's rights follow the projects' assignments. Assigning a
 * namespace to a project binds the project ClusterRole there at the agent's next status report; releasing it
 * unbinds it. Reserved namespaces and other organizations' projects never get one.
 */
const CLUSTER_ROLE = 'mariner-agent-project-mariner';
const ENV = {
  MARINER_AGENT_PROJECT_CLUSTER_ROLE: CLUSTER_ROLE,
  MARINER_AGENT_SERVICE_ACCOUNT: 'mariner-agent',
  MARINER_RESERVED_NAMESPACES: 'mariner,mariner-runtimes',
  MARINER_RUNTIMES: 'off',
};
const UPDATE_PROJECT = `mutation($input: UpdateProjectInput!) { updateProject(input: $input) { id } }`;

describe('the agent binds its project role where projects are assigned (Kubernetes API double)', () => {
  let kube: KubeApiServer;
  let t: TestPlatform;
  let agent: Agent;
  let kubeconfigDir: string;
  let clusterId: string;
  let teamA: { organizationId: string; projectId: string; key: string };
  const saved: Record<string, string | undefined> = {};

  const bound = () =>
    kube
      .objects('RoleBinding')
      .filter((b) => b.metadata.name === PROJECT_ROLE_BINDING)
      .map((b) => b.metadata.namespace as string)
      .sort();

  beforeAll(async () => {
    kube = await startKubeApiServer();
    t = await startTestPlatform();
    const kc = kubeConfigFor(kube);
    const core = kc.makeApiClient(CoreV1Api);
    for (const name of ['team-a', 'team-a-batch', 'team-b', 'mariner']) await core.createNamespace({ body: { metadata: { name } } });
    kubeconfigDir = mkdtempSync(path.join(tmpdir(), 'mariner-kubeconfig-'));
    writeFileSync(path.join(kubeconfigDir, 'config'), kc.exportConfig());

    // Team A's project, on a cluster of team A's organization; team B is another organization.
    const a = await projectWithKey(t, 'team-a', { role: 'OWNER', assignments: [{ namespace: 'team-a' }] });
    teamA = a;
    const { registerCluster } = await t.gqlOk(
      'mutation($org: ID!) { registerCluster(input: { name: "team-a-gpus", organizationId: $org }) { registrationKey cluster { id } } }',
      {
        org: a.organizationId,
      },
    );
    clusterId = registerCluster.cluster.id;
    await projectWithKey(t, 'team-b', { assignments: [{ namespace: 'team-b' }] });

    for (const [name, value] of Object.entries(ENV)) [saved[name], process.env[name]] = [process.env[name], value];
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: 'kubernetes',
      kubeconfig: path.join(kubeconfigDir, 'config'),
      logger: silentLogger(),
    });
  });

  afterAll(async () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await agent?.close();
    await t?.close();
    await kube?.close();
    if (kubeconfigDir) rmSync(kubeconfigDir, { recursive: true, force: true });
  });

  it('an assigned namespace gets the RoleBinding of the project ClusterRole to the agent; another organization`s does not', async () => {
    await agent.reportStatus();
    expect(bound()).toEqual(['team-a']);
    const [binding] = kube.objects('RoleBinding', 'team-a');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: CLUSTER_ROLE });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'mariner-agent', namespace: 'default' }]);
  });

  it('a namespace assigned later is bound, one released is unbound, and a reserved one is never bound', async () => {
    await t.gqlOk(UPDATE_PROJECT, {
      input: {
        id: teamA.projectId,
        assignments: [
          { clusterId, namespace: 'team-a-batch' },
          // The platform under test reserves nothing; the agent still refuses its own reserved namespaces.
          { clusterId, namespace: 'mariner' },
          // Another cluster's assignment is not this agent's.
          { clusterId: 'cluster-elsewhere', namespace: 'team-a-elsewhere' },
        ],
      },
    });
    await agent.reportStatus();
    expect(bound()).toEqual(['team-a-batch']);
  });

  it('only an agent may list a cluster`s namespaces: an organization owner`s key or the admin is refused', async () => {
    for (const token of [teamA.key, undefined]) {
      const result = await t.gql('{ workerNamespaces }', undefined, token ? { token } : {});
      expect(result.data?.workerNamespaces).toBeUndefined();
      expect(['FORBIDDEN', 'UNAUTHENTICATED']).toContain(result.errors?.[0]?.extensions?.['code']);
    }
  });

  it('releasing every namespace of the cluster removes the agent`s bindings, never one it did not make', async () => {
    const rbacPath = '/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings';
    const response = await fetch(`${kube.url}${rbacPath}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${kube.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: PROJECT_ROLE_BINDING },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
        subjects: [{ kind: 'User', name: 'alice', apiGroup: 'rbac.authorization.k8s.io' }],
      }),
    });
    expect(response.status).toBe(201);
    // Team A releases every namespace of this cluster: the agent's own binding goes, the hand-made one stays.
    await t.gqlOk(UPDATE_PROJECT, { input: { id: teamA.projectId, assignments: [{ clusterId: 'cluster-elsewhere', namespace: 'team-a-elsewhere' }] } });
    await agent.reportStatus();
    expect(kube.objects('RoleBinding').map((b) => `${b.metadata.namespace}/${b.metadata.name}/${b.roleRef.name}`)).toEqual([
      `team-a/${PROJECT_ROLE_BINDING}/view`,
    ]);
  });
});
