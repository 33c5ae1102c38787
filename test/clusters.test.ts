import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { agentRoutes } from '../lib/agentContract.js';
import { TUNNEL_PROTOCOL, TUNNEL_UPGRADE_PATH } from '../lib/tunnel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { until } from './support/until.js';

const REGISTER = `mutation Register($name: String!) {
  registerCluster(input: { name: $name }) { registrationKey cluster { id name isDefault } }
}`;
const CLUSTER = `query Cluster($id: ID!) {
  cluster(id: $id) {
    id name connected
    tunnels { agentId transport connectedAt lastHeartbeatAt }
    componentStatuses { name isHealthy message }
    status { gpuCapacity gpuAllocated stale nodes { name ready cpuCores memoryBytes } }
    config { timeSlicingGpus }
  }
}`;

/** Answers for a raw tunnel dial: the status line of the control plane's response. */
function dialTunnel(url: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(TUNNEL_UPGRADE_PATH, url), {
      headers: { connection: 'Upgrade', upgrade: TUNNEL_PROTOCOL, authorization: `Bearer ${key}` },
    });
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.once('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
    req.end();
  });
}

/** Which agent answers a request to the cluster over its tunnels (the agent's own health route). */
async function healthz(t: TestPlatform, clusterId: string): Promise<string> {
  const stream = t.platform.sessions.registry.request(clusterId, { ':method': 'GET', ':path': agentRoutes.healthz() }, { endStream: true });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return (JSON.parse(Buffer.concat(chunks).toString()) as { agentId: string }).agentId;
}

describe('clusters and agents', () => {
  let t: TestPlatform;
  const agents: Agent[] = [];
  const agentFor = async (key: string, extra: Partial<Parameters<typeof startAgent>[0]> = {}) => {
    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: key, executor: 'local', logger: silentLogger(), ...extra });
    agents.push(agent);
    return agent;
  };

  beforeAll(async () => {
    t = await startTestPlatform({ config: { sessions: { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 2000, revalidateIntervalMs: 300, authCacheMs: 0 } } });
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await t?.close();
  });

  it('registers a cluster whose key is shown once and works for an agent, which shows up connected with its health and status', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { name: 'gpu-east' });
    expect(registerCluster.registrationKey).toMatch(/^clusterkey-[A-Za-z0-9]{48}$/);
    expect(registerCluster.cluster).toMatchObject({ name: 'gpu-east', isDefault: false });
    const id = registerCluster.cluster.id as string;

    const before = await t.gqlOk(CLUSTER, { id });
    expect(before.cluster).toMatchObject({ connected: false, tunnels: [], componentStatuses: [], status: null, config: null });

    const agent = await agentFor(registerCluster.registrationKey);
    await agent.whenConnected();
    await agent.reportStatus();
    const { cluster } = await t.gqlOk(CLUSTER, { id });
    expect(cluster.connected).toBe(true);
    expect(cluster.tunnels).toEqual([expect.objectContaining({ agentId: agent.agentId, transport: 'UPGRADE' })]);
    expect(cluster.componentStatuses).toEqual([
      expect.objectContaining({ name: 'agent', isHealthy: true }),
      expect.objectContaining({ name: 'executor', isHealthy: true, message: 'local executor' }),
    ]);
    expect(cluster.status.stale).toBe(false);
    expect(cluster.status.nodes).toHaveLength(1);
    expect(cluster.status.nodes[0].cpuCores).toBeGreaterThan(0);

    // Nothing in the API returns the key again, and the list shows the cluster.
    const { clusters } = await t.gqlOk('{ clusters { items { id name } hasMore } }');
    expect(clusters.items).toContainEqual({ id, name: 'gpu-east' });
  });

  it('a second agent of the same cluster adds a tunnel; both are listed', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { name: 'two-agents' });
    const a = await agentFor(registerCluster.registrationKey);
    const b = await agentFor(registerCluster.registrationKey, { transport: 'websocket' });
    await Promise.all([a.whenConnected(), b.whenConnected()]);
    const { cluster } = await t.gqlOk(CLUSTER, { id: registerCluster.cluster.id });
    expect(cluster.tunnels.map((tn: { transport: string }) => tn.transport).sort()).toEqual(['UPGRADE', 'WEBSOCKET']);

    // Requests spread over both agents; when one leaves, the other serves them all.
    const answeredBy = async (n: number) => Promise.all(Array.from({ length: n }, () => healthz(t, registerCluster.cluster.id))).then((ids) => new Set(ids));
    expect(await answeredBy(20)).toEqual(new Set([a.agentId, b.agentId]));
    await a.close();
    await until(() => t.platform.sessions.registry.tunnels(registerCluster.cluster.id).length === 1, 'the first agent to leave');
    expect(t.platform.sessions.registry.tunnels(registerCluster.cluster.id).map((tn) => tn.agentId)).toEqual([b.agentId]);
    expect(await answeredBy(10)).toEqual(new Set([b.agentId]));
  });

  it('refuses a wrong registration key at the tunnel endpoint and at agent start', async () => {
    expect(await dialTunnel(t.url, 'clusterkey-' + 'x'.repeat(48))).toBe(401);
    expect(await dialTunnel(t.url, 'not-a-key')).toBe(401);
    await expect(agentFor('clusterkey-' + 'y'.repeat(48))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('unregistering a cluster revokes its key: the live tunnel is closed and redials are refused', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { name: 'short-lived' });
    const agent = await agentFor(registerCluster.registrationKey, { backoff: { initialMs: 20, maxMs: 50 } });
    await agent.whenConnected();
    const { unregisterCluster } = await t.gqlOk('mutation U($id: ID!) { unregisterCluster(id: $id) { id deleted } }', { id: registerCluster.cluster.id });
    expect(unregisterCluster.deleted).toBe(true);
    expect(await agent.refused).toMatch(/refused the registration key/);
    expect(agent.connected()).toBe(false);
    expect(await dialTunnel(t.url, registerCluster.registrationKey)).toBe(401);
    expect(t.platform.sessions.registry.tunnels(registerCluster.cluster.id)).toEqual([]);
  });

  it('a registration key reaches only the worker API, and users cannot report as a worker', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { name: 'worker-only' });
    const asWorker = { token: registerCluster.registrationKey };
    const users = await t.gql('{ models { items { id } } }', {}, asWorker);
    expect(users.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const clusters = await t.gql('{ clusters { items { id } } }', {}, asWorker);
    expect(clusters.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const self = await t.gqlOk('{ workerCluster { clusterId clusterName } }', {}, asWorker);
    expect(self.workerCluster).toEqual({ clusterId: registerCluster.cluster.id, clusterName: 'worker-only' });
    const report = await t.gql('mutation { reportComponentStatus(input: { name: "agent", isHealthy: true }) { name } }');
    expect(report.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('GPU configuration: create, conflict on a second create, update, delete; bad values are refused', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { name: 'config-me' });
    const id = registerCluster.cluster.id;
    const create = 'mutation C($id: ID!, $n: Int) { createClusterConfig(clusterId: $id, input: { timeSlicingGpus: $n }) { timeSlicingGpus } }';
    const update = 'mutation U($id: ID!, $n: Int) { updateClusterConfig(clusterId: $id, input: { timeSlicingGpus: $n }) { timeSlicingGpus } }';
    const missingUpdate = await t.gql(update, { id, n: 2 });
    expect(missingUpdate.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect((await t.gqlOk(create, { id, n: 4 })).createClusterConfig).toEqual({ timeSlicingGpus: 4 });
    expect((await t.gql(create, { id, n: 2 })).errors?.[0]?.extensions?.code).toBe('CONFLICT');
    expect((await t.gql(update, { id, n: 0 })).errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.timeSlicingGpus' });
    expect((await t.gqlOk(update, { id, n: 8 })).updateClusterConfig).toEqual({ timeSlicingGpus: 8 });
    const asWorker = await t.gqlOk('{ workerCluster { config { timeSlicingGpus } } }', {}, { token: registerCluster.registrationKey });
    expect(asWorker.workerCluster.config).toEqual({ timeSlicingGpus: 8 });
    await t.gqlOk('mutation D($id: ID!) { deleteClusterConfig(clusterId: $id) { deleted } }', { id });
    expect((await t.gqlOk(CLUSTER, { id })).cluster.config).toBeNull();
  });

  it('bad input: a duplicate or malformed name, an unknown cluster id', async () => {
    await t.gqlOk(REGISTER, { name: 'dup' });
    expect((await t.gql(REGISTER, { name: 'dup' })).errors?.[0]?.extensions?.code).toBe('CONFLICT');
    expect((await t.gql(REGISTER, { name: 'Not A DNS Label' })).errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.name' });
    const missing = await t.gql('mutation { unregisterCluster(id: "cluster-doesnotexist") { id } }');
    expect(missing.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const malformed = await t.gql('mutation { unregisterCluster(id: "nope") { id } }');
    expect(malformed.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('a project owner without the api.clusters scope neither lists, reads nor registers clusters', async () => {
    const { key } = await projectWithKey(t, 'no-clusters', { role: 'READER' });
    const asMember = { token: key };
    expect((await t.gql('{ clusters { items { id } } }', {}, asMember)).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await t.gql(REGISTER, { name: 'sneaky' }, asMember)).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it("a platform admin's cluster is shared with every organization: an owner of another organization sees it", async () => {
    // Registered by the admin key (a platform admin) with no organization, a cluster is a platform
    // cluster shared with every organization of the tenant (test/security/clusters.test.ts has the rest).
    const { key } = await projectWithKey(t, 'other-org-owner', { role: 'OWNER' });
    const { clusters } = await t.gqlOk('{ clusters(limit: 100) { items { name } } }', {}, { token: key });
    expect(clusters.items.map((c: { name: string }) => c.name)).toContain('gpu-east');
  });
});
