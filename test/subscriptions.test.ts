import { createClient, type Client, type ExecutionResult } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startAgent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { until } from './support/until.js';

const TUNNELS = `subscription Tunnels($id: ID!) {
  clusterTunnels(clusterId: $id) { connected tunnels { agentId transport } cluster { id name isDefault } }
}`;

type Event = ExecutionResult<Record<string, any>, Record<string, unknown>>;

/** A subscription's events, pulled one at a time. */
function follow(client: Client, query: string, variables: Record<string, unknown> = {}) {
  const iterator = client.iterate<Record<string, any>>({ query, variables });
  return {
    next: async (): Promise<Event> => {
      const { value, done } = await iterator.next();
      if (done) throw new Error('the subscription completed');
      return value as Event;
    },
    close: () => iterator.return?.(),
  };
}

describe('federated subscriptions over graphql-ws', () => {
  let t: TestPlatform;
  const clients: Client[] = [];
  const connect = (key: string | undefined, params: Record<string, unknown> = {}) => {
    const client = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...params },
    });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(async () => {
    await Promise.all(clients.map(async (c) => c.dispose()));
    await t?.close();
  });

  it("follows a cluster's tunnels live, with the cluster's own fields resolved from another subgraph", async () => {
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "live" }) { registrationKey cluster { id } } }');
    const id = registerCluster.cluster.id;
    const events = follow(connect(t.adminKey), TUNNELS, { id });
    const first = await events.next();
    expect(first.errors).toBeUndefined();
    // `cluster { name isDefault }` lives in the clusters subgraph: the rest of the plan resolved it.
    expect(first.data?.clusterTunnels).toEqual({ connected: false, tunnels: [], cluster: { id, name: 'live', isDefault: false } });

    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: registerCluster.registrationKey, executor: 'local', logger: silentLogger() });
    const connected = await events.next();
    expect(connected.data?.clusterTunnels).toMatchObject({ connected: true, tunnels: [{ agentId: agent.agentId, transport: 'UPGRADE' }] });
    await agent.close();
    const gone = await events.next();
    expect(gone.data?.clusterTunnels).toMatchObject({ connected: false, tunnels: [] });
    await events.close();
    await until(() => t.platform.gatewaySharedSubscriptions() === 0, 'the upstream subscription to close');
  });

  it('subscribers with the same operation, variables and scope share one upstream subscription; it closes after the last leaves', async () => {
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "shared" }) { registrationKey cluster { id } } }');
    const id = registerCluster.cluster.id;
    const client = connect(t.adminKey);
    const followers = Array.from({ length: 50 }, () => follow(client, TUNNELS, { id }));
    const firsts = await Promise.all(followers.map((f) => f.next()));
    expect(firsts.every((e) => e.data?.clusterTunnels.connected === false)).toBe(true);
    expect(t.platform.gatewaySharedSubscriptions()).toBe(1);

    // Another project scope (an owner of another organization) gets its own upstream.
    const other = await projectWithKey(t, 'other-scope', { role: 'OWNER' });
    const theirs = follow(connect(other.key), TUNNELS, { id });
    expect((await theirs.next()).data?.clusterTunnels.cluster.name).toBe('shared');
    expect(t.platform.gatewaySharedSubscriptions()).toBe(2);

    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: registerCluster.registrationKey, executor: 'local', logger: silentLogger() });
    const seconds = await Promise.all(followers.map((f) => f.next()));
    expect(seconds.every((e) => e.data?.clusterTunnels.connected === true)).toBe(true);
    await agent.close();
    await Promise.all([...followers, theirs].map(async (f) => f.close()));
    await until(() => t.platform.gatewaySharedSubscriptions() === 0, 'the upstream subscriptions to close');
  });

  it('RBAC, authentication and validation apply on the WebSocket as on HTTP', async () => {
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "guarded" }) { cluster { id } } }');
    const id = registerCluster.cluster.id;
    const reader = await projectWithKey(t, 'reader-scope', { role: 'READER' });
    const refused = await follow(connect(reader.key), TUNNELS, { id })
      .next()
      .catch((errors: unknown) => ({ errors }) as Event);
    expect(JSON.stringify(refused.errors)).toContain('FORBIDDEN');

    const anonymous = await follow(connect(undefined), TUNNELS, { id })
      .next()
      .catch((errors: unknown) => ({ errors }) as Event);
    expect(JSON.stringify(anonymous.errors)).toContain('UNAUTHENTICATED');

    const invalid = await follow(connect(t.adminKey), 'subscription { clusterTunnels(clusterId: "x") { nope } }')
      .next()
      .catch((errors: unknown) => ({ errors }) as Event);
    expect(JSON.stringify(invalid.errors)).toContain('BAD_USER_INPUT');

    // A wrong key is refused at connection time with 4401.
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
      const client = createClient({
        url: t.graphqlUrl.replace('http://', 'ws://'),
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        connectionParams: { authorization: `Bearer sk-${'x'.repeat(48)}` },
        on: { closed: (event) => resolve(event as { code: number; reason: string }) },
      });
      clients.push(client);
      client.subscribe({ query: TUNNELS, variables: { id } }, { next: () => undefined, error: () => undefined, complete: () => undefined });
    });
    expect(closed.code).toBe(4401);
    expect(closed.reason).toMatch(/Invalid API key/);
  });

  it('a subscription sent over HTTP is a 400 that says to use graphql-ws, not an internal error', async () => {
    const result = await t.gql(`subscription { jobsUpdated { id } }`);
    expect(result.status).toBe(400);
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.message).toContain('graphql-ws');
    // What the caller may not subscribe to is still refused as such.
    const { key } = await projectWithKey(t, 'http-subscriber', { role: 'READER' });
    const refused = await t.gql(`subscription { clusterTunnels(clusterId: "cluster-x") { cluster { id } } }`, {}, { token: key });
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('queries and mutations work over the same WebSocket', async () => {
    const result = await follow(connect(t.adminKey), '{ self { id } }').next();
    expect(result).toEqual({ data: { self: { id: 'admin@example.com' } } });
  });
});
