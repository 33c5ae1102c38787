import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/index.js';
import { createKubernetesExecutor } from '../../agent/kubernetesExecutor.js';
import { silentLogger } from '../../lib/logging.js';
import { kubeConfigFor, kubeRequest, startKubeApiServer, type KubeApiServer } from '../support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';

/**
 * /v1/sessions forwards an allow-list (subgraphs/sessions/kubeAllowList.ts): a project member, even one
 * who may write, cannot read a Secret of their own namespace or exec into its pods with the agent's
 * account; and the namespaces the chart reserves (its own, the runtimes') cannot be assigned to a project.
 */

const CREATE_ORG = 'mutation($title: String!) { createOrganization(input: { title: $title }) { id } }';
const CREATE_PROJECT = 'mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }';

describe('/v1/sessions lends a project member no Secret and no exec', () => {
  let t: TestPlatform;
  let server: KubeApiServer;
  let agent: Agent;
  let clusterId: string;
  let writer: { key: string };
  const sessions = () => `${t.url}/v1/sessions/${clusterId}`;
  const as = (key: string) => ({ authorization: `Bearer ${key}` });
  const reachedCluster = (fragment: string) => server.requests.filter((r) => r.path.includes(fragment)).length;

  beforeAll(async () => {
    server = await startKubeApiServer({ nodes: [{ name: 'node-a' }] });
    await kubeRequest(server, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-s' } });
    await kubeRequest(server, 'POST', '/api/v1/namespaces/team-s/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'trainer', namespace: 'team-s' },
      spec: { containers: [{ name: 'main', image: 'busybox' }] },
    });
    await kubeRequest(server, 'POST', '/api/v1/namespaces/team-s/secrets', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'job-urls', namespace: 'team-s' },
      stringData: { url: 'https://bucket.example.com/presigned' },
    });
    t = await startTestPlatform({ config: { reservedNamespaces: ['mariner', 'mariner-runtimes'] } });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "k8s" }) { registrationKey cluster { id } } }');
    clusterId = registerCluster.cluster.id;
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createKubernetesExecutor({ kubeConfig: kubeConfigFor(server), logger: silentLogger() }),
      backoff: { initialMs: 10, maxMs: 50 },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    writer = await projectWithKey(t, 'team-s', { role: 'OWNER', assignments: [{ clusterId, namespace: 'team-s' }] });
  }, 60_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    await server?.close();
  });

  it('reads pods and logs of its namespace as before', async () => {
    const pods = await fetch(`${sessions()}/api/v1/namespaces/team-s/pods`, { headers: as(writer.key) });
    expect(pods.status).toBe(200);
    expect((await pods.json()).items.map((p: { metadata: { name: string } }) => p.metadata.name)).toEqual(['trainer']);
  });

  it('a Secret of its own namespace: 403 for get, list, watch and create, however the path is spelt; the cluster is never asked', async () => {
    const before = reachedCluster('ecrets');
    const attempts: [string, string][] = [
      ['GET', '/api/v1/namespaces/team-s/secrets/job-urls'],
      ['GET', '/api/v1/namespaces/team-s/secrets'],
      ['GET', '/api/v1/namespaces/team-s/secrets?watch=true'],
      ['GET', '/api/v1/watch/namespaces/team-s/secrets'],
      ['GET', '/api/v1/namespaces/team-s/%73ecrets/job-urls'],
      ['POST', '/api/v1/namespaces/team-s/secrets'],
    ];
    for (const [method, path] of attempts) {
      const response = await fetch(`${sessions()}${path}`, {
        method,
        headers: { ...as(writer.key), 'content-type': 'application/json' },
        ...(method === 'POST' ? { body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } }) } : {}),
      });
      expect(response.status, `${method} ${path}`).toBe(403);
      const status = await response.json();
      expect(status).toMatchObject({ kind: 'Status', code: 403 });
      expect(JSON.stringify(status)).not.toContain('presigned');
    }
    expect(reachedCluster('ecrets')).toBe(before);
  });

  it('exec and attach into its own pod are refused (WebSocket and plain), and the cluster is never asked', async () => {
    const before = reachedCluster('/exec') + reachedCluster('/attach');
    const url = `${sessions().replace('http://', 'ws://')}/api/v1/namespaces/team-s/pods/trainer/exec?command=cat&command=/var/run/secrets/token&stdout=true`;
    const ws = new WebSocket(url, ['v5.channel.k8s.io'], { headers: as(writer.key) });
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      ws.once('open', () => reject(new Error('the exec WebSocket opened')));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
    });
    expect(status).toBe(403);
    expect(body).toContain('MARINER_SESSIONS_EXEC');
    const attach = await fetch(`${sessions()}/api/v1/namespaces/team-s/pods/trainer/attach?stdout=true`, { method: 'POST', headers: as(writer.key) });
    expect(attach.status).toBe(403);
    expect(reachedCluster('/exec') + reachedCluster('/attach')).toBe(before);
  });

  it('writes beyond deleting a pod are refused: no ConfigMap, Service proxy or service account token through the agent', async () => {
    const attempts: [string, string][] = [
      ['POST', '/api/v1/namespaces/team-s/configmaps'],
      ['PATCH', '/apis/batch/v1/namespaces/team-s/jobs/trainer'],
      ['GET', '/api/v1/namespaces/team-s/services/notebook/proxy/'],
      ['POST', '/api/v1/namespaces/team-s/serviceaccounts/default/token'],
      ['GET', '/api/v1/pods'],
    ];
    for (const [method, path] of attempts) {
      const response = await fetch(`${sessions()}${path}`, {
        method,
        headers: { ...as(writer.key), 'content-type': 'application/json' },
        ...(method !== 'GET' ? { body: '{}' } : {}),
      });
      expect(response.status, `${method} ${path}`).toBe(403);
    }
  });

  it('the reserved namespaces cannot be assigned to a project: BAD_USER_INPUT naming the field, and no project made', async () => {
    const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'Reserved' });
    for (const namespace of ['mariner', 'mariner-runtimes']) {
      const result = await t.gql(CREATE_PROJECT, { input: { organizationId: org.id, title: `takes ${namespace}`, assignments: [{ clusterId, namespace }] } });
      expect(result.errors?.[0]?.extensions?.['code'], namespace).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.message).toContain(`"${namespace}" is reserved for the platform`);
    }
    const { projects } = await t.gqlOk('query($org: ID!) { projects(organizationId: $org) { items { id } } }', { org: org.id });
    expect(projects.items).toEqual([]);
  });
});
