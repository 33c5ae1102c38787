import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { jobObjectName } from '../agent/kubernetes/jobManifests.js';
import { PROJECT_ROLE_BINDING } from '../agent/kubernetes/projectRoleBindings.js';
import { silentLogger } from '../lib/logging.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from './support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * "Namespace assigned → Role created → jobs dispatched" (issue 23), end to end on the Kubernetes API double:
 * the chart's `worker.namespaces: dynamic` agent (MARINER_AGENT_PROJECT_CLUSTER_ROLE) binds the project
 * ClusterRole in a namespace once a project is assigned it, that project's batch job is then dispatched
 * and its Kubernetes Job lands in that namespace, and releasing the namespace removes the binding.
 */
const CLUSTER_ROLE = 'mariner-agent-project-mariner';
const ENV = {
  MARINER_AGENT_PROJECT_CLUSTER_ROLE: CLUSTER_ROLE,
  MARINER_AGENT_SERVICE_ACCOUNT: 'mariner-agent',
  MARINER_RESERVED_NAMESPACES: 'mariner,mariner-runtimes',
  MARINER_RUNTIMES: 'off',
};
const UPDATE_PROJECT = `mutation($input: UpdateProjectInput!) { updateProject(input: $input) { id } }`;
const RBAC = '/apis/rbac.authorization.k8s.io/v1/namespaces';

describe('a namespace assigned to a project: the agent binds its role there, then the project`s jobs run there', () => {
  let kube: KubeApiServer;
  let t: TestPlatform;
  let agent: Agent;
  let kubeconfigDir: string;
  let clusterId: string;
  let team: { organizationId: string; projectId: string; key: string };
  let other: { organizationId: string; projectId: string; key: string };
  const saved: Record<string, string | undefined> = {};

  const bound = () =>
    kube
      .objects('RoleBinding')
      .filter((b) => b.metadata.name === PROJECT_ROLE_BINDING)
      .map((b) => b.metadata.namespace as string)
      .sort();
  const createBatchJob = async (key: string) => {
    const response = await fetch(`${t.url}/v1/batch/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'busybox:1.36', command: 'echo trained' }),
    });
    expect(response.status).toBe(200);
    return (await response.json()) as { id: string; status: string };
  };

  beforeAll(async () => {
    kube = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 2 }] });
    t = await startTestPlatform({ config: { jobs: { dispatchIntervalMs: 200, localTrainerCommand: undefined } } });
    const kc = kubeConfigFor(kube);
    for (const name of ['team-a', 'team-b', 'mariner']) await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
    kubeconfigDir = mkdtempSync(path.join(tmpdir(), 'mariner-kubeconfig-'));
    writeFileSync(path.join(kubeconfigDir, 'config'), kc.exportConfig());

    // The project starts with no namespace on this cluster; another organization's project names team-b.
    team = await projectWithKey(t, 'ns-team', { role: 'OWNER', assignments: [{ clusterId: 'cluster-elsewhere', namespace: 'team-a-elsewhere' }] });
    other = await projectWithKey(t, 'ns-other', { role: 'OWNER', assignments: [{ namespace: 'team-b' }] });
    const { registerCluster } = await t.gqlOk(
      'mutation($org: ID!) { registerCluster(input: { name: "ns-gpus", organizationId: $org }) { registrationKey cluster { id } } }',
      { org: team.organizationId },
    );
    clusterId = registerCluster.cluster.id;

    for (const [name, value] of Object.entries(ENV)) [saved[name], process.env[name]] = [process.env[name], value];
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: 'kubernetes',
      kubeconfig: path.join(kubeconfigDir, 'config'),
      jobs: { kubernetes: { pollIntervalMs: 100 } },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await agent.reportStatus();
  }, 60_000);

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

  it('before any assignment to this cluster the agent holds no project rights anywhere', () => {
    expect(bound()).toEqual([]);
  });

  it('assigned team-a: the RoleBinding comes first, then the project`s batch job is dispatched into team-a', async () => {
    await t.gqlOk(UPDATE_PROJECT, { input: { id: team.projectId, assignments: [{ clusterId, namespace: 'team-a' }] } });
    await agent.reportStatus();
    expect(bound()).toEqual(['team-a']);
    const [binding] = kube.objects('RoleBinding', 'team-a');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: CLUSTER_ROLE });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'mariner-agent', namespace: 'default' }]);

    const created = await createBatchJob(team.key);
    const job = await waitFor<any>(
      async () => kube.objects('Job').find((j) => j.metadata.name === jobObjectName(created.id)),
      Boolean,
      'the batch job`s Kubernetes Job',
      60_000,
    );
    expect(job.metadata.namespace).toBe('team-a');
    expect(job.spec.template.spec.containers[0].image).toBe('busybox:1.36');
    // In the API server's order: the binding was made before anything of the job was created in team-a.
    const writes = kube.requests.filter((r) => r.method === 'POST' && r.path.startsWith('/api') && r.path.includes('/namespaces/team-a/'));
    expect(writes[0]?.path).toBe(`${RBAC}/team-a/rolebindings`);
    expect(writes.some((r) => r.path === '/apis/batch/v1/namespaces/team-a/jobs')).toBe(true);
    const { batchJob } = await t.gqlOk(`query($id: ID!) { batchJob(id: $id) { clusterId kubernetesNamespace } }`, { id: created.id }, { token: team.key });
    expect(batchJob).toEqual({ clusterId, kubernetesNamespace: 'team-a' });
  }, 90_000);

  it('another organization`s namespace is never bound by this cluster`s agent', () => {
    expect(bound()).not.toContain('team-b');
    expect(kube.requests.some((r) => r.method === 'POST' && r.path === `${RBAC}/team-b/rolebindings`)).toBe(false);
    expect(other.organizationId).not.toBe(team.organizationId);
  });

  it('released: the binding is removed and the agent holds no project rights left', async () => {
    await t.gqlOk(UPDATE_PROJECT, { input: { id: team.projectId, assignments: [{ clusterId: 'cluster-elsewhere', namespace: 'team-a-elsewhere' }] } });
    await agent.reportStatus();
    expect(bound()).toEqual([]);
    expect(kube.requests.some((r) => r.method === 'DELETE' && r.path === `${RBAC}/team-a/rolebindings/${PROJECT_ROLE_BINDING}`)).toBe(true);
  });
});
