import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { startAgent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { startAgentOps } from '../bin/agentOps.js';
import { COMPONENTS } from '../bin/components.js';
import { startComponent, type RunningComponent } from '../bin/serve.js';
import { loadServeConfig, subgraphUrlSetting, type ComponentName } from '../bin/serveConfig.js';
import { loadConfig } from '../lib/config.js';
import { INTERNAL_TOKEN_HEADER, InternalTokens } from '../lib/identity.js';
import { randomString } from '../lib/ids.js';
import { silentLogger } from '../lib/logging.js';
import { createObjectStore } from '../lib/objectStore/index.js';
import { SUBGRAPH_NAMES } from '../schema/subgraphs.js';
import { createTestDatabase, graphqlCall, TEST_POSTGRES_URL } from './support/platform.js';
import { freePort, startIngress } from './support/ingress.js';
import { startServeComponent } from './support/serveComponent.js';
import { tinyGguf } from './support/tinyGguf.js';
import { waitFor } from './support/until.js';

const SECRET = randomString(40);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('mariner serve: each component in its own server, as the chart deploys them', () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  const running: RunningComponent[] = [];
  let gateway: RunningComponent;
  let sessions: RunningComponent;
  let inference: RunningComponent;
  let jobs: RunningComponent;
  const adminKey = `sk-${randomString(40)}`;

  /** A component of this deployment (test/support/serveComponent.ts). */
  const start = (component: ComponentName, env: Record<string, string>) =>
    startServeComponent({ secret: SECRET, dataDir, databaseUrl: database.url, adminKey, running }, component, env);

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-serve-'));
    const urls: Record<string, string> = {};
    const url = (name: string) => ({ [subgraphUrlSetting(name as never)]: urls[name]! });
    for (const name of ['users', 'rbac', 'files', 'clusters'] as const) {
      urls[name] = (await start(name, {})).subgraphUrls[name]!;
    }
    urls['models'] = (await start('models', url('files'))).subgraphUrls.models!;
    const gatewayPort = await freePort();
    // The agents' tunnels end in sessions; inference and jobs, each its own component, reach them at its
    // peer endpoint (always on in the chart), and sessions delivers the agents' reports to them.
    inference = await start('inference', { ...url('models'), ...url('clusters') });
    jobs = await start('jobs', { ...url('files'), ...url('models'), ...url('users'), ...url('clusters') });
    for (const component of [inference, jobs]) Object.assign(urls, component.subgraphUrls);
    sessions = await start('sessions', {
      ...url('clusters'),
      ...url('jobs'),
      ...url('inference'),
      MARINER_GATEWAY_URL: `http://127.0.0.1:${gatewayPort}`,
      MARINER_SESSIONS_PEER_PORT: '0',
    });
    Object.assign(urls, sessions.subgraphUrls);
    Object.assign(urls, (await start('vectorstores', { ...url('files'), ...url('inference') })).subgraphUrls);
    Object.assign(urls, (await start('responses', {})).subgraphUrls);
    Object.assign(urls, (await start('batches', { ...url('files'), ...url('users'), ...url('inference'), ...url('responses') })).subgraphUrls);
    Object.assign(urls, (await start('audit', {})).subgraphUrls);
    // Every subgraph of the supergraph must be served by some component, or the gateway has no address for it.
    const subgraphEnv = Object.fromEntries(SUBGRAPH_NAMES.map((name) => [subgraphUrlSetting(name), urls[name]!]));
    expect(Object.keys(urls).sort()).toEqual([...SUBGRAPH_NAMES].sort());
    // No drain: the stop test below ends a streamed answer that is still open.
    gateway = await start('gateway', { ...subgraphEnv, MARINER_PORT: String(gatewayPort), MARINER_DRAIN_TIMEOUT_MS: '0' });
  }, 60_000);

  afterAll(async () => {
    for (const component of running.reverse()) await component.close();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers GraphQL and the OpenAI API through the gateway, with the bootstrap admin key', async () => {
    const self = await graphqlCall<{ self: { id: string } }>(`${gateway.url}/graphql`, '{ self { id } }', undefined, { token: adminKey });
    expect(self.errors).toBeUndefined();
    expect(self.data?.self.id).toBe('admin@example.com');
    const models = await fetch(`${gateway.url}/v1/models`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(models.status).toBe(200);
    expect(await models.json()).toMatchObject({ object: 'list' });
  });

  it("records each API call in the inference component's store, written over HTTP from the gateway's process", async () => {
    const requestId = `serve-usage-${randomString(12)}`;
    const { errors } = await graphqlCall(`${gateway.url}/graphql`, 'query Recorded { self { id } }', undefined, {
      token: adminKey,
      headers: { 'x-request-id': requestId },
    });
    expect(errors).toBeUndefined();
    const db = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 1 } });
    try {
      const rows = await waitFor(
        () => db.withSchema('inference').table('api_calls').where('request_id', requestId).select('operation_name', 'status_code'),
        (found) => found.length > 0,
        `the usage record of ${requestId}`,
        20_000,
      );
      expect(rows).toEqual([{ operation_name: 'Recorded', status_code: 200 }]);
    } finally {
      await db.destroy();
    }
    // The gateway's batches reach the inference component as its recordApiCalls mutation.
    const metrics = await (await fetch(`${inference.opsUrl}/metrics`)).text();
    expect(sample(metrics, 'mariner_graphql_requests_total', { subgraph: 'inference', operation: 'RecordApiCalls', result: 'ok' })).toBeGreaterThanOrEqual(1);
  });

  it('every component is live and ready on its operations port', async () => {
    for (const component of running) {
      expect((await fetch(`${component.opsUrl}/healthz`)).status).toBe(200);
      const ready = await fetch(`${component.opsUrl}/readyz`);
      expect(await ready.json()).toEqual({ status: 'ready' });
      expect(ready.status).toBe(200);
    }
  });

  it('/metrics counts GraphQL operations by operation and result, in the gateway and in each subgraph', async () => {
    const metricsOf = async (component: RunningComponent) => (await fetch(`${component.opsUrl}/metrics`)).text();
    const before = sample(await metricsOf(gateway), 'mariner_graphql_requests_total', { subgraph: 'gateway', operation: 'WhoAmI', result: 'ok' }) ?? 0;
    for (let i = 0; i < 3; i++) {
      const { errors } = await graphqlCall(`${gateway.url}/graphql`, 'query WhoAmI { self { id } }', undefined, { token: adminKey });
      expect(errors).toBeUndefined();
    }
    const refused = await graphqlCall(`${gateway.url}/graphql`, 'query Typo { selff { id } }', undefined, { token: adminKey });
    expect(refused.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    const text = await metricsOf(gateway);
    expect(
      sample(text, 'mariner_graphql_requests_total', { component: 'gateway', subgraph: 'gateway', type: 'query', operation: 'WhoAmI', result: 'ok' }),
    ).toBe(before + 3);
    expect(sample(text, 'mariner_graphql_requests_total', { subgraph: 'gateway', operation: 'Typo', result: 'BAD_USER_INPUT' })).toBe(1);
    expect(sample(text, 'mariner_graphql_request_duration_seconds_count', { subgraph: 'gateway', operation: 'WhoAmI', result: 'ok' })).toBe(before + 3);
    expect(text).toMatch(/^mariner_gateway_upstream_subscriptions\{component="gateway"\} \d+$/m);
    expect(text).toMatch(/^mariner_process_cpu_seconds_total\{component="gateway"\} /m);
    // The gateway's query plan asked the users subgraph, which counts it under its own name (Apollo
    // names a plan's fetches <operation>__<subgraph>__<index>).
    const users = running.find((c) => c.subgraphUrls.users)!;
    expect(
      sample(await metricsOf(users), 'mariner_graphql_requests_total', {
        component: 'users',
        subgraph: 'users',
        type: 'query',
        operation: 'WhoAmI__users__0',
        result: 'ok',
      }),
    ).toBeGreaterThanOrEqual(3);
  });

  it('an agent behind the one-host ingress registers, tunnels to sessions, and the tunnel shows in /metrics', async () => {
    const ingress = await startIngress([
      ['/graphql', gateway.url],
      ['/v1', gateway.url],
      ['/v1/sessions', sessions.url],
      ['/v1/sessions-worker-service', sessions.url],
    ]);
    const { data } = await graphqlCall<{ registerCluster: { registrationKey: string } }>(
      `${ingress.url}/graphql`,
      'mutation { registerCluster(input: { name: "gpu-east" }) { registrationKey } }',
      undefined,
      { token: adminKey },
    );
    const agent = await startAgent({
      controlPlaneUrl: ingress.url,
      registrationKey: data!.registerCluster.registrationKey,
      executor: 'local',
      logger: silentLogger(),
    });
    const agentOps = (await startAgentOps(agent, { MARINER_HOST: '127.0.0.1', MARINER_AGENT_OPS_PORT: '0' }, silentLogger()))!;
    try {
      await agent.whenConnected();
      const agentReady = await fetch(`${agentOps.url}/readyz`);
      expect({ status: agentReady.status, body: await agentReady.json() }).toEqual({ status: 200, body: { status: 'connected' } });
      expect(await (await fetch(`${agentOps.url}/metrics`)).text()).toMatch(/^mariner_agent_tunnel_connected\{component="agent"\} 1$/m);
      const clusters = await fetch(`${ingress.url}/v1/clusters`, { headers: { authorization: `Bearer ${adminKey}` } });
      const listed = (await clusters.json()) as { data: { name: string; connected?: boolean }[] };
      expect(listed.data.find((c) => c.name === 'gpu-east')).toMatchObject({ connected: true });
      const metrics = await (await fetch(`${sessions.opsUrl}/metrics`)).text();
      expect(metrics).toMatch(/^mariner_tunnel_connections\{component="sessions"\} 1$/m);
      // A job for that cluster, dispatched by the jobs component through the tunnel held by sessions: its
      // agent does not run batch commands, so the job fails at dispatch, and the jobs component's gauge counts it.
      const created = await fetch(`${ingress.url}/v1/batch/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ image: 'busybox:1.36', command: 'true' }),
      });
      expect(created.status).toBe(200);
      const deadline = Date.now() + 20_000;
      let gauges = '';
      while (!/^mariner_jobs\{kind="batch",status="failed",component="jobs"\} 1$/m.test(gauges) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        gauges = await (await fetch(`${jobs.opsUrl}/metrics`)).text();
      }
      expect(gauges).toMatch(/^mariner_jobs\{kind="batch",status="failed",component="jobs"\} 1$/m);
    } finally {
      await agentOps.close();
      await agent.close();
      await ingress.close();
    }
  });

  it(
    'completions reach the runtime of an agent whose tunnel ends in sessions through the inference component, never for an organization the cluster does not serve; a stopping gateway ends a streamed completion still open at the drain limit with an error event, closes its graphql-ws connections with 1001 and a reason, and finishes stopping',
    { timeout: 120_000 },
    async () => {
      // A tiny model served by an agent's local runtime, behind the one-host ingress.
      const ingress = await startIngress([
        ['/graphql', gateway.url],
        ['/v1', gateway.url],
        ['/v1/sessions-worker-service', sessions.url],
      ]);
      const objectStore = await createObjectStore(loadConfig({ MARINER_DATA_DIR: dataDir }).objectStore);
      // A platform cluster that serves the default organization only.
      const organizations = await graphqlCall<{ organizations: { items: { id: string; isDefault: boolean }[] } }>(
        `${ingress.url}/graphql`,
        '{ organizations { items { id isDefault } } }',
        undefined,
        { token: adminKey },
      );
      const defaultOrganization = organizations.data!.organizations.items.find((o) => o.isDefault)!.id;
      const { data } = await graphqlCall<{ registerCluster: { registrationKey: string } }>(
        `${ingress.url}/graphql`,
        'mutation($org: ID!) { registerCluster(input: { name: "gpu-west", sharedWithAllOrganizations: false, grantedOrganizationIds: [$org] }) { registrationKey } }',
        { org: defaultOrganization },
        { token: adminKey },
      );
      const worker = data!.registerCluster.registrationKey;
      const agent = await startAgent({
        controlPlaneUrl: ingress.url,
        registrationKey: worker,
        executor: await createLocalExecutor(silentLogger(), { objectStore, cacheDir: path.join(dataDir, 'runtime-cache') }),
        logger: silentLogger(),
      });
      const gql = async (query: string, variables: Record<string, unknown>, token: string) => {
        const result = await graphqlCall<Record<string, any>>(`${ingress.url}/graphql`, query, variables, { token });
        expect(result.errors).toBeUndefined();
        return result.data!;
      };
      let sse = '';
      try {
        await agent.whenConnected();
        const sdk = new OpenAI({ apiKey: adminKey, baseURL: `${ingress.url}/v1`, maxRetries: 0 });
        const file = await sdk.files.create({ file: await toFile(tinyGguf({ contextLength: 4096 }), 'tiny.gguf'), purpose: 'user_data' });
        await gql(
          'mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }',
          { input: { id: 'tiny-serve', sourceRepository: 'FILE', source: file.id } },
          adminKey,
        );
        const { acquireModelLoad } = await gql('mutation { acquireModelLoad { modelId source } }', {}, worker);
        await gql(
          'mutation($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { loadingStatus } }',
          { input: { id: 'tiny-serve', status: 'SUCCEEDED', objectPath: acquireModelLoad.source, formats: ['GGUF'] } },
          worker,
        );
        await gql('mutation($id: ID!) { activateModel(id: $id) { activationStatus } }', { id: 'tiny-serve' }, adminKey);
        await agent.reconcileRuntimes();
        await agent.reconcileRuntimes();
        // The inference component exposes the runtime as its agent reported it.
        const clusterId = agent.clusterId;
        expect(await (await fetch(`${inference.opsUrl}/metrics`)).text()).toMatch(
          new RegExp(`^mariner_runtime_replicas\\{cluster="${clusterId}",model="tiny-serve",state="ready",component="inference"\\} 1$`, 'm'),
        );

        // The gateway reaches the inference component over the data plane's HTTP hop, and inference the
        // agent's runtime through the sessions component's peer endpoint, where the tunnel ends:
        // a whole answer, a stream to its end without the usage chunk it hid, and a bad key refused in
        // OpenAI's shape.
        const completion = await sdk.chat.completions.create({ model: 'tiny-serve', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 });
        expect(completion.object).toBe('chat.completion');
        expect(completion.usage!.total_tokens).toBeGreaterThan(0);
        const chunks = [];
        for await (const chunk of await sdk.chat.completions.create({
          model: 'tiny-serve',
          messages: [{ role: 'user', content: 'Hi' }],
          max_tokens: 3,
          stream: true,
          stream_options: { include_usage: false },
        }))
          chunks.push(chunk);
        expect(chunks.length).toBeGreaterThan(0);
        expect(chunks.filter((c) => c.usage)).toEqual([]);
        const refused = await new OpenAI({ apiKey: 'sk-not-a-key', baseURL: `${ingress.url}/v1`, maxRetries: 0 }).chat.completions
          .create({ model: 'tiny-serve', messages: [{ role: 'user', content: 'Hi' }] })
          .catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
        // The Responses API takes the same way (a chat completion over the data plane's HTTP hop); its stored
        // responses live in the responses component, so a chained, streamed one reads the first's from there.
        const answered = await sdk.responses.create({ model: 'tiny-serve', input: 'Hi', max_output_tokens: 3 });
        let last: OpenAI.Responses.ResponseStreamEvent | undefined;
        for await (const event of await sdk.responses.create({
          model: 'tiny-serve',
          input: 'Again',
          previous_response_id: answered.id,
          max_output_tokens: 3,
          stream: true,
        }))
          last = event;
        expect(last?.type).toMatch(/^response\.(completed|incomplete)$/);
        expect((await sdk.responses.inputItems.list(answered.id)).data).toMatchObject([{ type: 'message', role: 'user' }]);
        // A batch's requests leave the batches component's process for the inference component's over the
        // data plane's HTTP hop, as the batch's creator; its output file is written through the files component.
        const line = {
          custom_id: 'serve-1',
          method: 'POST',
          url: '/v1/chat/completions',
          body: { model: 'tiny-serve', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 },
        };
        const batchInput = await sdk.files.create({ file: await toFile(Buffer.from(`${JSON.stringify(line)}\n`), 'batch.jsonl'), purpose: 'batch' });
        let batch = await sdk.batches.create({ input_file_id: batchInput.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
        for (const deadline = Date.now() + 30_000; !['completed', 'failed'].includes(batch.status) && Date.now() < deadline;) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          batch = await sdk.batches.retrieve(batch.id);
        }
        expect(batch).toMatchObject({ status: 'completed', request_counts: { total: 1, completed: 1, failed: 0 } });
        const [output] = (await (await sdk.files.content(batch.output_file_id!)).text()).split('\n');
        expect(JSON.parse(output!)).toMatchObject({ custom_id: 'serve-1', response: { status_code: 200, body: { object: 'chat.completion' } } });
        // Another organization's key: the cluster does not serve that organization, so the model it runs is
        // refused to it as not found, and nothing is sent to the cluster.
        const { createOrganization } = await gql('mutation { createOrganization(input: { title: "other" }) { id } }', {}, adminKey);
        const { createProject } = await gql(
          'mutation($org: ID!) { createProject(input: { organizationId: $org, title: "other project" }) { id } }',
          { org: createOrganization.id },
          adminKey,
        );
        const { createApiKey } = await gql(
          'mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }',
          { input: { name: 'other-key', projectId: createProject.id, isServiceAccount: true, role: 'READER' } },
          adminKey,
        );
        const other = new OpenAI({ apiKey: createApiKey.secret, baseURL: `${ingress.url}/v1`, maxRetries: 0 });
        const notServed = await other.chat.completions
          .create({ model: 'tiny-serve', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 })
          .catch((e: unknown) => e);
        expect(notServed).toBeInstanceOf(OpenAI.NotFoundError);

        // A streamed completion long enough to be in flight when the gateway stops.
        const response = await fetch(`${gateway.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'tiny-serve', messages: [{ role: 'user', content: 'A long story' }], max_tokens: 3000, stream: true }),
        });
        expect(response.status).toBe(200);
        const reader = response.body!.getReader();
        const decoder = new TextDecoder();
        const first = await reader.read();
        sse = decoder.decode(first.value, { stream: true });
        const read = (async () => {
          for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) sse += decoder.decode(chunk.value, { stream: true });
        })();

        const socket = new WebSocket(`${gateway.url.replace('http://', 'ws://')}/graphql`, 'graphql-transport-ws');
        const messages: Record<string, unknown>[] = [];
        socket.on('message', (data) => messages.push(JSON.parse(data.toString()) as Record<string, unknown>));
        const closed = new Promise<{ code: number; reason: string }>((resolve) =>
          socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
        );
        await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
        socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${adminKey}` } }));
        // graphql-ws: nothing may be subscribed before the connection is acknowledged.
        while (!messages.some((m) => m['type'] === 'connection_ack')) await new Promise((resolve) => setTimeout(resolve, 20));
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { runtimesUpdated { readyModelIds } }' } }));
        while (!messages.some((m) => m['type'] === 'next')) await new Promise((resolve) => setTimeout(resolve, 20));
        // The last test of this group: the gateway stops here (afterAll's close is then a no-op).
        await gateway.close();
        expect(await closed).toEqual({ code: 1001, reason: 'server shutting down' });
        // The stream was cut by nothing: it ends with OpenAI's error object, without [DONE].
        await read;
        expect(sse.endsWith('\n\n')).toBe(true);
        const events = sse.split('\n\n').filter((event) => event !== '');
        expect(events.length).toBeGreaterThan(1);
        expect(JSON.parse(events.at(-1)!.replace(/^data: /, ''))).toEqual({
          error: { message: 'The server is shutting down; retry the request', type: 'server_error', param: null, code: null },
        });
      } finally {
        await agent.close();
        await objectStore.close();
        await ingress.close();
      }
    },
  );
});

/** The value of one series in Prometheus text format, by name and (a subset of) its labels. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-z_:]+)\{(.*)\} (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = Object.fromEntries([...match[2]!.matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => present[key] === value)) return Number(match[3]);
  }
  return undefined;
}

describe('mariner serve: readiness follows the database', () => {
  it('is live but not ready until the database exists and migrations ran, and not ready when it goes away', async () => {
    const name = `mariner_test_${randomString(10).toLowerCase()}`;
    const admin = knexFactory({ client: 'pg', connection: `${TEST_POSTGRES_URL}/postgres`, pool: { min: 0, max: 1 } });
    const dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-serve-'));
    const { config, serve } = loadServeConfig('clusters', {
      MARINER_HOST: '127.0.0.1',
      MARINER_PORT: '0',
      MARINER_OPS_PORT: '0',
      MARINER_INTERNAL_TOKEN_SECRET: SECRET,
      MARINER_SHUTDOWN_DELAY_MS: '0',
      MARINER_DATA_DIR: dataDir,
      DATABASE_URL: `${TEST_POSTGRES_URL}/${name}`,
    });
    const component = await startComponent(config, serve, silentLogger());
    try {
      expect((await fetch(`${component.opsUrl}/healthz`)).status).toBe(200);
      const waiting = await fetch(`${component.opsUrl}/readyz`);
      expect(waiting.status).toBe(503);
      expect(await waiting.json()).toEqual({ status: 'waiting for the database' });

      await admin.raw('create database ??', [name]);
      await component.started;
      expect((await fetch(`${component.opsUrl}/readyz`)).status).toBe(200);

      await admin.raw('drop database ?? with (force)', [name]);
      const gone = await fetch(`${component.opsUrl}/readyz`);
      expect(gone.status).toBe(503);
      expect(await gone.json()).toEqual({ status: 'database unreachable' });
    } finally {
      await component.close();
      await admin.raw('drop database if exists ?? with (force)', [name]);
      await admin.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('mariner serve: a graceful stop', () => {
  it('says stopping at once, answers the request in flight, then refuses connections', async () => {
    const { config, serve } = loadServeConfig('rbac', {
      MARINER_HOST: '127.0.0.1',
      MARINER_PORT: '0',
      MARINER_OPS_PORT: '0',
      MARINER_INTERNAL_TOKEN_SECRET: SECRET,
      MARINER_SHUTDOWN_DELAY_MS: '0',
      MARINER_DRAIN_TIMEOUT_MS: '10000',
    });
    const component = await startComponent(config, serve, silentLogger());
    await component.started;
    const graphqlUrl = new URL(component.subgraphUrls.rbac!);
    const token = await new InternalTokens(SECRET, 60).mint('rbac', 'req-graceful', null, true);
    // A request whose body is still arriving when the stop begins.
    const req = request({
      host: graphqlUrl.hostname,
      port: graphqlUrl.port,
      path: graphqlUrl.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json', [INTERNAL_TOKEN_HEADER]: token },
    });
    const answer = new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
      req.on('error', reject);
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
      });
    });
    req.write('{"query":');
    const inFlight = async () => sample(await (await fetch(`${component.opsUrl}/metrics`)).text(), 'mariner_http_requests_in_flight', {});
    while ((await inFlight()) !== 1) await new Promise((resolve) => setImmediate(resolve));

    const closing = component.close();
    const ready = await fetch(`${component.opsUrl}/readyz`);
    expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 503, body: { status: 'stopping' } });
    req.end('"{ __typename }"}');
    const { status, connection, body } = await answer;
    expect(status).toBe(200);
    expect(connection).toBe('close');
    expect(JSON.parse(body)).toEqual({ data: { __typename: 'Query' } });
    await closing;
    await expect(fetch(graphqlUrl)).rejects.toThrow();
  });
});

describe('mariner serve: configuration', () => {
  const base = { MARINER_INTERNAL_TOKEN_SECRET: SECRET, DATABASE_URL: 'postgres://db.example/mariner' };

  it('the command stops with exit code 2 and a message naming the bad setting or component', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        // The environment of a pod that forgot the Secret: no inherited MARINER_* settings.
        const env = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' };
        execFile(process.execPath, ['--import', 'tsx', 'bin/mariner.ts', ...args], { cwd: ROOT, env }, (error, _stdout, stderr) =>
          resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stderr }),
        );
      });
    const [noSecret, unknown] = await Promise.all([run(['serve', 'gateway']), run(['serve', 'billing'])]);
    expect(noSecret).toEqual({ code: 2, stderr: expect.stringContaining('mariner: MARINER_INTERNAL_TOKEN_SECRET is required for mariner serve gateway') });
    expect(unknown).toEqual({
      code: 2,
      stderr: expect.stringContaining(`serve needs one component: ${COMPONENTS.map((c) => c.name).join(', ')} (got "billing")`),
    });
  }, 30_000);

  it('names every subgraph URL the gateway lacks', () => {
    expect(() =>
      loadServeConfig('gateway', {
        MARINER_INTERNAL_TOKEN_SECRET: SECRET,
        DATABASE_URL: TEST_POSTGRES_URL,
        [subgraphUrlSetting('users')]: 'http://users:8080/graphql',
      }),
    ).toThrow(/mariner serve gateway needs MARINER_SUBGRAPH_RBAC_URL, MARINER_SUBGRAPH_FILES_URL, .*MARINER_SUBGRAPH_INFERENCE_URL/);
  });

  it('refuses to start a component with tables without DATABASE_URL, or any without the shared token secret', () => {
    expect(() => loadServeConfig('users', { MARINER_INTERNAL_TOKEN_SECRET: SECRET })).toThrow(/DATABASE_URL is required for mariner serve users/);
    expect(() => loadServeConfig('rbac', {})).toThrow(/MARINER_INTERNAL_TOKEN_SECRET is required for mariner serve rbac/);
    expect(() => loadServeConfig('rbac', { MARINER_INTERNAL_TOKEN_SECRET: SECRET })).not.toThrow();
  });

  it('reads settings from the mounted file, lets the environment win, and refuses a misspelt one', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mariner-config-'));
    try {
      const file = path.join(dir, 'config.json');
      writeFileSync(
        file,
        JSON.stringify({ MARINER_PORT: 7000, MARINER_OPS_PORT: 7001, MARINER_LOG_LEVEL: 'debug', MARINER_SUBGRAPH_FILES_URL: 'http://files:8080/graphql' }),
      );
      const { config, serve } = loadServeConfig('models', { ...base, MARINER_CONFIG_FILE: file, MARINER_LOG_LEVEL: 'warn' });
      expect(config.port).toBe(7000);
      expect(serve.opsPort).toBe(7001);
      expect(config.logLevel).toBe('warn');
      expect(config.host).toBe('0.0.0.0');
      expect(serve.subgraphUrls.files).toBe('http://files:8080/graphql');

      writeFileSync(file, JSON.stringify({ MARINER_PROT: 7000 }));
      expect(() => loadServeConfig('rbac', { ...base, MARINER_CONFIG_FILE: file })).toThrow(
        `MARINER_CONFIG_FILE (${file}): unknown or unused setting MARINER_PROT`,
      );
      writeFileSync(file, JSON.stringify({ MARINER_MAX_DEPTH: 'deep' }));
      expect(() => loadServeConfig('rbac', { ...base, MARINER_CONFIG_FILE: file })).toThrow(
        'MARINER_MAX_DEPTH must be an integer between 1 and 100, got "deep"',
      );
      writeFileSync(file, '{ not json');
      expect(() => loadServeConfig('rbac', { ...base, MARINER_CONFIG_FILE: file })).toThrow(/MARINER_CONFIG_FILE: cannot read JSON from/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
