import { mkdtempSync, rmSync } from 'node:fs';
import http2, { type IncomingHttpHeaders } from 'node:http2';
import { tmpdir } from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import type { RunningComponent } from '../bin/serve.js';
import { subgraphUrlSetting, type ComponentName } from '../bin/serveConfig.js';
import { loadConfig } from '../lib/config.js';
import { randomString } from '../lib/ids.js';
import { silentLogger } from '../lib/logging.js';
import { createObjectStore, type ObjectStore } from '../lib/objectStore/index.js';
import { SUBGRAPH_NAMES } from '../schema/subgraphs.js';
import { agentRoutes } from '../lib/agentContract.js';
import { PEER_CLUSTER_HEADER, PEER_TOKEN_HEADER, peerTokens } from '../subgraphs/sessions/index.js';
import { freePort, startIngress } from './support/ingress.js';
import { startServeComponent } from './support/serveComponent.js';
import { createTestDatabase, graphqlCall } from './support/platform.js';
import { tinyGguf } from './support/tinyGguf.js';

const SECRET = randomString(40);
const MODEL = 'tiny-replicas';

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One request to a sessions replica's peer endpoint; the status and body (or the reset code). */
async function peerRequest(port: number, headers: Record<string, string>): Promise<{ status?: number; body?: string; rstCode?: number }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  try {
    return await new Promise((resolve) => {
      const stream = session.request({ ':method': 'GET', ...headers }, { endStream: true });
      let status: number | undefined;
      let body = '';
      stream.on('response', (h: IncomingHttpHeaders) => (status = Number(h[':status'])));
      stream.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      stream.on('error', () => undefined);
      stream.on('close', () => resolve(status === undefined ? { rstCode: stream.rstCode } : { status, body }));
    });
  } finally {
    session.destroy();
  }
}

describe('mariner serve: two sessions replicas, an agent connected to one of them', () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  const running: RunningComponent[] = [];
  let gateway: RunningComponent;
  /** The replica the agent dials. */
  let replicaA: RunningComponent;
  let peerPortA: number;
  let replicaB: RunningComponent;
  let ingress: Awaited<ReturnType<typeof startIngress>>;
  let agent: Agent;
  let objectStore: ObjectStore;
  let clusterId: string;
  const adminKey = `sk-${randomString(40)}`;
  const tokens = peerTokens(SECRET);

  /** A component of this deployment (test/support/serveComponent.ts). */
  const start = (component: ComponentName, env: Record<string, string>) =>
    startServeComponent({ secret: SECRET, dataDir, databaseUrl: database.url, adminKey, running }, component, { MARINER_DRAIN_TIMEOUT_MS: '0', ...env });

  /** Whether the gateway (which asks replica B) lists the cluster as connected. */
  async function listedConnected(): Promise<boolean> {
    const answer = await fetch(`${gateway.url}/v1/clusters`, { headers: { authorization: `Bearer ${adminKey}` } });
    const listed = (await answer.json()) as { data: { id: string; connected?: boolean }[] };
    return listed.data.find((c) => c.id === clusterId)?.connected === true;
  }

  /** The agent's runtime counters, asked through replica A's peer endpoint. */
  async function runtimeMetrics(): Promise<{ inFlight: number; cancelled: number }> {
    const request = { ':method': 'GET', ':path': agentRoutes.runtime(MODEL, '/metrics') };
    const answer = await peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: tokens.mint(clusterId, request) });
    expect(answer.status).toBe(200);
    return JSON.parse(answer.body!) as { inFlight: number; cancelled: number };
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-replicas-'));
    const urls: Record<string, string> = {};
    const url = (name: string) => ({ [subgraphUrlSetting(name as never)]: urls[name]! });
    for (const name of ['users', 'rbac', 'files', 'clusters'] as const) urls[name] = (await start(name, {})).subgraphUrls[name]!;
    urls['models'] = (await start('models', url('files'))).subgraphUrls.models!;
    const gatewayPort = await freePort();
    peerPortA = await freePort();
    const heartbeat = { MARINER_SESSIONS_PEER_HEARTBEAT_MS: '300' };
    // Inference and jobs, each its own component, find the replica holding a cluster in the tunnel directory.
    Object.assign(urls, (await start('inference', { ...url('models'), ...url('clusters'), ...heartbeat })).subgraphUrls);
    Object.assign(
      urls,
      (
        await start('jobs', {
          ...url('files'),
          ...url('models'),
          ...url('users'),
          ...url('clusters'),
          ...heartbeat,
          MARINER_JOB_DISPATCH_INTERVAL_MS: '600000',
        })
      ).subgraphUrls,
    );
    // The replicas deliver the agents' reports to inference and jobs.
    const sessionsEnv = { ...url('clusters'), ...url('jobs'), ...url('inference'), MARINER_GATEWAY_URL: `http://127.0.0.1:${gatewayPort}`, ...heartbeat };
    replicaA = await start('sessions', { ...sessionsEnv, MARINER_SESSIONS_PEER_PORT: String(peerPortA) });
    // The gateway sends the sessions subgraph's GraphQL to replica B only.
    replicaB = await start('sessions', { ...sessionsEnv, MARINER_SESSIONS_PEER_PORT: '0' });
    Object.assign(urls, replicaB.subgraphUrls);
    Object.assign(urls, (await start('vectorstores', { ...url('files'), ...url('inference') })).subgraphUrls);
    // Every subgraph must be served (the gateway has an address for each), as in test/serve.test.ts.
    Object.assign(urls, (await start('responses', {})).subgraphUrls);
    Object.assign(urls, (await start('batches', { ...url('files'), ...url('users'), ...url('inference'), ...url('responses') })).subgraphUrls);
    Object.assign(urls, (await start('audit', {})).subgraphUrls);
    const subgraphEnv = Object.fromEntries(SUBGRAPH_NAMES.map((name) => [subgraphUrlSetting(name), urls[name]!]));
    gateway = await start('gateway', { ...subgraphEnv, MARINER_PORT: String(gatewayPort) });

    // The agent's tunnels end on replica A.
    ingress = await startIngress([
      ['/graphql', gateway.url],
      ['/v1', gateway.url],
      ['/v1/sessions-worker-service', replicaA.url],
    ]);
    const gql = async (query: string, variables: Record<string, unknown>, token: string) => {
      const result = await graphqlCall<Record<string, any>>(`${ingress.url}/graphql`, query, variables, { token });
      expect(result.errors).toBeUndefined();
      return result.data!;
    };
    const { registerCluster } = await gql('mutation { registerCluster(input: { name: "replicated" }) { registrationKey cluster { id } } }', {}, adminKey);
    clusterId = registerCluster.cluster.id;
    const worker = registerCluster.registrationKey as string;
    objectStore = await createObjectStore(loadConfig({ MARINER_DATA_DIR: dataDir }).objectStore);
    agent = await startAgent({
      controlPlaneUrl: ingress.url,
      registrationKey: worker,
      executor: await createLocalExecutor(silentLogger(), { objectStore, cacheDir: path.join(dataDir, 'runtime-cache') }),
      logger: silentLogger(),
    });
    await agent.whenConnected();
    const sdk = new OpenAI({ apiKey: adminKey, baseURL: `${ingress.url}/v1`, maxRetries: 0 });
    const file = await sdk.files.create({ file: await toFile(tinyGguf({ contextLength: 4096 }), 'tiny.gguf'), purpose: 'user_data' });
    await gql(
      'mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }',
      { input: { id: MODEL, sourceRepository: 'FILE', source: file.id } },
      adminKey,
    );
    const { acquireModelLoad } = await gql('mutation { acquireModelLoad { modelId source } }', {}, worker);
    await gql(
      'mutation($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { loadingStatus } }',
      { input: { id: MODEL, status: 'SUCCEEDED', objectPath: acquireModelLoad.source, formats: ['GGUF'] } },
      worker,
    );
    await gql('mutation($id: ID!) { activateModel(id: $id) { activationStatus } }', { id: MODEL }, adminKey);
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
  }, 60_000);

  afterAll(async () => {
    await agent?.close();
    await ingress?.close();
    for (const component of running.reverse()) await component.close();
    await objectStore?.close();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("replica B lists the cluster held by A; the inference component answers completions through A, streamed or not; B's /v1/sessions routes go through A", async () => {
    await until(listedConnected, 'replica B to list the cluster');
    const client = new OpenAI({ apiKey: adminKey, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4 });
    expect(completion.choices).toHaveLength(1);
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, stream: true });
    const chunks: unknown[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(1);
    // The Kubernetes API route of B's public port reaches the agent through A too (whose local executor has none).
    const kube = await fetch(`${replicaB.url}/v1/sessions/${clusterId}/version`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect({ status: kube.status, body: await kube.json() }).toMatchObject({
      status: 404,
      body: { message: 'cluster replicated runs the local executor: it has no Kubernetes API' },
    });
  });

  it('cancelling a streamed completion stops the generation at the agent, across the peer endpoint', async () => {
    const before = await runtimeMetrics();
    const controller = new AbortController();
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'A long story' }], max_tokens: 3000, stream: true }),
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    await reader.read();
    expect((await runtimeMetrics()).inFlight).toBe(1);
    controller.abort();
    await reader.cancel().catch(() => undefined);
    await until(async () => {
      const now = await runtimeMetrics();
      return now.inFlight === 0 && now.cancelled === before.cancelled + 1;
    }, 'the generation to stop at the agent');
  });

  it('a job queued at the jobs component is dispatched at once, through A', async () => {
    // The agent's local executor does not run batch commands: it refuses the job, which then fails.
    const created = await fetch(`${gateway.url}/v1/batch/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'busybox:1.36', command: 'true' }),
    });
    expect(created.status).toBe(200);
    const { id } = (await created.json()) as { id: string };
    let job: { status?: string } = {};
    await until(async () => {
      job = (await (await fetch(`${gateway.url}/v1/batch/jobs/${id}`, { headers: { authorization: `Bearer ${adminKey}` } })).json()) as { status?: string };
      return job.status === 'failed';
    }, 'the job to reach the agent');
  });

  it('an agent stream that breaks reaches the caller through the peer endpoint as a reset, not as an end', async () => {
    const session = http2.connect(`http://127.0.0.1:${peerPortA}`);
    session.on('error', () => undefined);
    try {
      const request = { ':method': 'POST', ':path': agentRoutes.runtime(MODEL, '/v1/chat/completions') };
      const stream = session.request({
        ...request,
        'content-type': 'application/json',
        [PEER_CLUSTER_HEADER]: clusterId,
        [PEER_TOKEN_HEADER]: tokens.mint(clusterId, request),
      });
      stream.end(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'A long story' }], max_tokens: 3000, stream: true }));
      let ended = false;
      stream.on('end', () => (ended = true));
      stream.on('error', () => undefined);
      const closed = new Promise<number | undefined>((resolve) => stream.on('close', () => resolve(stream.rstCode)));
      const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
      expect(status).toBe(200);
      await new Promise((resolve) => stream.once('data', resolve));
      stream.resume();
      agent.dropConnections();
      expect(await closed).not.toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(ended).toBe(false);
    } finally {
      session.destroy();
    }
    // The agent dials A again; B sees it there.
    await until(
      async () =>
        agent.connected() &&
        (await runtimeMetrics().then(
          () => true,
          () => false,
        )),
      'the agent to reconnect',
    );
    await until(listedConnected, 'replica B to list the cluster again');
  });

  it("the peer endpoint refuses a missing, forged, expired, reused or other cluster's token, and one minted for another method or path; it resets a request for a cluster it does not hold", async () => {
    const request = { ':method': 'GET', ':path': agentRoutes.runtime(MODEL, '/metrics') };
    const [version, expires, nonce] = tokens.mint(clusterId, request).split('.');
    const refused = await Promise.all([
      peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: clusterId }),
      peerRequest(peerPortA, {
        ...request,
        [PEER_CLUSTER_HEADER]: clusterId,
        [PEER_TOKEN_HEADER]: `${version}.${expires}.${nonce}.${Buffer.alloc(32).toString('base64url')}`,
      }),
      peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: peerTokens(randomString(40)).mint(clusterId, request) }),
      peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: tokens.mint('cl-other', request) }),
      peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: tokens.mint(clusterId, request, Date.now() - 120_000) }),
      // A token captured from one request does not carry another: not another path, not another method.
      peerRequest(peerPortA, {
        ...request,
        ':path': agentRoutes.runtime(MODEL, '/v1/models'),
        [PEER_CLUSTER_HEADER]: clusterId,
        [PEER_TOKEN_HEADER]: tokens.mint(clusterId, request),
      }),
      peerRequest(peerPortA, { ...request, ':method': 'DELETE', [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: tokens.mint(clusterId, request) }),
    ]);
    for (const answer of refused) expect(answer.status).toBe(401);
    // A token serves once: the same request sent again with it is refused.
    const token = tokens.mint(clusterId, request);
    expect((await peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: token })).status).toBe(200);
    expect((await peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: token })).status).toBe(401);
    const notHeld = await peerRequest(peerPortA, { ...request, [PEER_CLUSTER_HEADER]: 'cl-nowhere', [PEER_TOKEN_HEADER]: tokens.mint('cl-nowhere', request) });
    expect(notHeld).toEqual({ rstCode: http2.constants.NGHTTP2_REFUSED_STREAM });
  });

  it("when A stops cleanly B stops listing the cluster at once; a dead replica's row expires after a few heartbeats", async () => {
    await replicaA.close();
    await until(async () => !(await listedConnected()), 'replica B to drop the cluster', 3_000);
    // A replica that died without cleaning up: its row stays, and counts only while fresh.
    const knex = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 1 } });
    try {
      const { tenant_id: tenantId } = (await knex.withSchema('clusters').table('clusters').where({ id: clusterId }).first('tenant_id')) as {
        tenant_id: string;
      };
      await knex
        .withSchema('sessions')
        .table('cluster_tunnels')
        .insert({ cluster_id: clusterId, replica_id: 'dead', tenant_id: tenantId, cluster_name: 'replicated', peer_address: '127.0.0.1:1', tunnels: 1 });
      await until(listedConnected, 'replica B to read the row');
      await until(async () => !(await listedConnected()), "the dead replica's row to expire", 5_000);
    } finally {
      await knex.destroy();
    }
  });
});

describe('sessions peer settings', () => {
  it('the peer port is off unless set; the advertised address is MARINER_SESSIONS_PEER_ADDRESS, else POD_IP with the port', () => {
    expect(loadConfig({}).sessions).toMatchObject({ peerPort: undefined, peerAddress: undefined, peerHeartbeatMs: 5000 });
    expect(loadConfig({ MARINER_SESSIONS_PEER_PORT: '8090', POD_IP: '10.1.2.3' }).sessions).toMatchObject({ peerPort: 8090, peerAddress: '10.1.2.3:8090' });
    expect(loadConfig({ MARINER_SESSIONS_PEER_PORT: '8090', POD_IP: 'fd00::5' }).sessions.peerAddress).toBe('[fd00::5]:8090');
    expect(
      loadConfig({ MARINER_SESSIONS_PEER_PORT: '8090', POD_IP: '10.1.2.3', MARINER_SESSIONS_PEER_ADDRESS: 'sessions-0.mariner:8090' }).sessions.peerAddress,
    ).toBe('sessions-0.mariner:8090');
    expect(() => loadConfig({ MARINER_SESSIONS_PEER_ADDRESS: 'http://x' })).toThrow('MARINER_SESSIONS_PEER_ADDRESS must be host:port, got "http://x"');
    expect(() => loadConfig({ MARINER_SESSIONS_PEER_PORT: '70000' })).toThrow('MARINER_SESSIONS_PEER_PORT must be an integer between 0 and 65535, got "70000"');
  });
});
