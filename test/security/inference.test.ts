import { Readable } from 'node:stream';
import { createClient } from 'graphql-ws';
import OpenAI from 'openai';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/index.js';
import { silentLogger } from '../../lib/logging.js';
import { loadedModelFromFile } from '../support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { executorWith, tappedRuntimes, type RuntimeTap } from '../support/standInRuntimes.js';
import { projectWithKey } from '../support/tenants.js';
import { until } from '../support/until.js';

/**
 * Inference between organizations (README "Security model"), tried as org B's owner would against
 * org A: B registers a cluster of its own and its agent claims ready runtimes for every model it
 * can name, A's private ones included. A's prompts must never reach it, its claims about A's models
 * must not count, and neither organization's status views show the other's clusters or models.
 *
 * Both clusters run a real agent over a real tunnel; their runtimes are stand-ins that answer with
 * their cluster's name and keep every request they receive: what the rogue side saw is the proof.
 */

const REGISTER = `mutation Register($input: RegisterClusterInput!) { registerCluster(input: $input) { registrationKey cluster { id } } }`;
const REPORT = `mutation Report($runtimes: [RuntimeReportInput!]!) { reportRuntimes(runtimes: $runtimes) { clusterId modelId } }`;
const STATUS = `{ inferenceStatus { readyModelIds runtimes { clusterId modelId readyReplicas } } }`;
const ready = (modelId: string, inFlightRequests = 0) => ({ modelId, desiredReplicas: 1, readyReplicas: 1, inFlightRequests, statusMessage: 'ready' });

let t: TestPlatform;
let a: Awaited<ReturnType<typeof projectWithKey>>;
let b: Awaited<ReturnType<typeof projectWithKey>>;
/** The platform's cluster, shared with every organization: it runs every active model. */
let shared: RuntimeTap;
let sharedId: string;
/** Org B's own cluster; its agent claims every model of the tenant it can name, A's included. */
let rogue: RuntimeTap;
let rogueId: string;
let rogueKey: string;
const agents: Agent[] = [];
/** Each organization's own models (fine-tuned from the catalog's base model): one served, one that never becomes ready. */
const models = { aPrivate: '', aCold: '', bPrivate: '', bCold: '' };
const sdkFor = (key: string) => new OpenAI({ apiKey: key, baseURL: `${t.url}/v1`, maxRetries: 0 });
const A_SECRET = "org A's quarterly numbers";

beforeAll(async () => {
  // A short wait for runtimes: a request for a model with none ready answers 503 within a second.
  t = await startTestPlatform({ config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 1 } } });
  a = await projectWithKey(t, 'Org A', { role: 'OWNER' });
  b = await projectWithKey(t, 'Org B', { role: 'OWNER' });

  // The shared cluster reports its runtimes busier than the rogue's: before the fix, the router
  // preferred the rogue for every model both claimed. Models named "cold" never become ready here.
  shared = tappedRuntimes('from the shared cluster', (active) =>
    active.map((m) => (m.id.includes('cold') ? { ...ready(m.id, 3), readyReplicas: 0, statusMessage: 'starting' } : ready(m.id, 3))),
  );
  rogue = tappedRuntimes("from org B's cluster", () => ['shared-base', models.aPrivate, models.bPrivate].filter(Boolean).map((id) => ready(id)));

  const platformCluster = (await t.gqlOk(REGISTER, { input: { name: 'shared' } })).registerCluster;
  sharedId = platformCluster.cluster.id;
  const bCluster = (await t.gqlOk(REGISTER, { input: { name: 'b-own' } }, { token: b.key })).registerCluster;
  rogueId = bCluster.cluster.id;
  rogueKey = bCluster.registrationKey;
  for (const [tap, key] of [
    [shared, platformCluster.registrationKey],
    [rogue, rogueKey],
  ] as const) {
    const agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: key,
      executor: executorWith(tap.host),
      runtimeIntervalMs: 3_600_000,
      logger: silentLogger(),
    });
    agents.push(agent);
    await agent.whenConnected();
  }

  // The catalog's base model (loaded by the platform cluster's agent); each organization registers
  // its own fine-tuned models of it.
  await loadedModelFromFile(t, {
    id: 'shared-base',
    weights: Buffer.from('weights'),
    registrationKey: platformCluster.registrationKey,
    input: { isProjectScoped: false },
  });
  await t.platform.objectStore.put('uploads/adapter.gguf', Readable.from([Buffer.from('adapter')]));
  const fineTuned = async (key: string, suffix: string) => {
    const { registerFineTunedModel } = await t.gqlOk(
      'mutation($input: RegisterFineTunedModelInput!) { registerFineTunedModel(input: $input) { id } }',
      { input: { baseModelId: 'shared-base', suffix, source: t.platform.objectStore.uri('uploads/adapter.gguf') } },
      { token: key },
    );
    await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { activationStatus } }', { id: registerFineTunedModel.id }, { token: key });
    return registerFineTunedModel.id as string;
  };
  models.aPrivate = await fineTuned(a.key, 'a-private');
  models.aCold = await fineTuned(a.key, 'a-cold');
  models.bPrivate = await fineTuned(b.key, 'b-private');
  models.bCold = await fineTuned(b.key, 'b-cold');
  for (const agent of agents) {
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
  }
}, 120_000);
afterAll(async () => {
  for (const agent of agents) await agent.close();
  await t?.close();
});

describe("org B's cluster never serves org A", () => {
  it("A's prompts never reach B's cluster: SDK chat, streamed chat and completions, and GraphQL, for A's model and for a base model B's cluster also runs", async () => {
    const sdk = sdkFor(a.key);
    for (const model of [models.aPrivate, 'shared-base']) {
      const completion = await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: `${A_SECRET} (${model}, chat)` }] });
      expect(completion.choices[0]!.message.content).toBe('from the shared cluster');
      const stream = await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: `${A_SECRET} (${model}, stream)` }], stream: true });
      let streamed = '';
      for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
      expect(streamed).toBe('from the shared cluster');
      const text = await sdk.completions.create({ model, prompt: `${A_SECRET} (${model}, completion)` });
      expect(text.choices[0]!.text).toBe('from the shared cluster');
      const { createChatCompletion } = await t.gqlOk(
        'mutation($request: JSON!) { createChatCompletion(request: $request) }',
        { request: { model, messages: [{ role: 'user', content: `${A_SECRET} (${model}, graphql)` }] } },
        { token: a.key },
      );
      expect(createChatCompletion.choices[0].message.content).toBe('from the shared cluster');
    }
    const ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${a.key}` },
    });
    try {
      const events = ws.iterate<{ chatCompletionChunks: { choices: { delta: { content?: string } }[] } }>({
        query: 'subscription($request: JSON!) { chatCompletionChunks(request: $request) }',
        variables: { request: { model: 'shared-base', messages: [{ role: 'user', content: `${A_SECRET} (subscription)` }] } },
      });
      let streamed = '';
      for await (const event of events) streamed += event.data?.chatCompletionChunks.choices[0]?.delta.content ?? '';
      expect(streamed).toBe('from the shared cluster');
    } finally {
      await ws.dispose();
    }

    expect(shared.received.filter((r) => r.prompt.includes(A_SECRET))).toHaveLength(9);
    expect(rogue.received.filter((r) => r.prompt.includes(A_SECRET))).toEqual([]);
  });

  it("B's requests use B's own cluster (its runtimes are the least busy), for B's model and for the base model", async () => {
    const sdk = sdkFor(b.key);
    for (const model of [models.bPrivate, 'shared-base']) {
      const completion = await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: `org B asks (${model})` }] });
      expect(completion.choices[0]!.message.content).toBe("from org B's cluster");
    }
    expect(rogue.received.filter((r) => r.prompt.startsWith('org B asks')).map((r) => r.modelId)).toEqual([models.bPrivate, 'shared-base']);
  });

  it("a request waiting for a model wakes only the clusters of the caller's organization: B's cluster never learns which models A asks for", async () => {
    const sharedBefore = shared.reconciles;
    const rogueBefore = rogue.reconciles;
    // No runtime of A's cold model is ready: the request waits (1 s here), nudging the clusters it may use.
    await expect(sdkFor(a.key).chat.completions.create({ model: models.aCold, messages: [{ role: 'user', content: A_SECRET }] })).rejects.toBeInstanceOf(
      OpenAI.InternalServerError,
    );
    await until(() => shared.reconciles > sharedBefore, 'the shared cluster to be nudged');
    expect(rogue.reconciles).toBe(rogueBefore);
    // B's own wait nudges B's cluster too: the nudge reaches it when it may serve the caller.
    await expect(sdkFor(b.key).chat.completions.create({ model: models.bCold, messages: [{ role: 'user', content: 'hello' }] })).rejects.toBeInstanceOf(
      OpenAI.InternalServerError,
    );
    await until(() => rogue.reconciles > rogueBefore, "B's cluster to be nudged");
  });
});

describe('runtime reports count only for models the cluster may run', () => {
  it("B's cluster reporting A's private model (or one that does not exist): those runtimes are left out, the rest of the report stands", async () => {
    const { reportRuntimes } = await t.gqlOk(
      REPORT,
      { runtimes: [ready(models.aPrivate), ready(models.bPrivate), ready('shared-base'), ready('no-such-model')] },
      { token: rogueKey },
    );
    expect(reportRuntimes.map((r: { modelId: string }) => r.modelId).sort()).toEqual([models.bPrivate, 'shared-base'].sort());
    expect(reportRuntimes.every((r: { clusterId: string }) => r.clusterId === rogueId)).toBe(true);
    // Nothing names what was left out to the agent: the answer is the runtimes that count.
    expect(JSON.stringify(reportRuntimes)).not.toContain(models.aPrivate);
  });

  it("a platform cluster granted to B only may not report A's model either", async () => {
    const granted = (await t.gqlOk(REGISTER, { input: { name: 'b-granted', sharedWithAllOrganizations: false, grantedOrganizationIds: [b.organizationId] } }))
      .registerCluster;
    const { reportRuntimes } = await t.gqlOk(
      REPORT,
      { runtimes: [ready(models.aPrivate), ready(models.bPrivate), ready('shared-base')] },
      { token: granted.registrationKey },
    );
    expect(reportRuntimes.map((r: { modelId: string }) => r.modelId).sort()).toEqual([models.bPrivate, 'shared-base'].sort());
    await t.gqlOk('mutation($id: ID!) { unregisterCluster(id: $id) { id } }', { id: granted.cluster.id });
  });
});

describe("status views show each organization only its own clusters' and projects' runtimes", () => {
  const modelsAndClusters = (runtimes: { clusterId: string; modelId: string }[]) => ({
    clusters: [...new Set(runtimes.map((r) => r.clusterId))],
    models: [...new Set(runtimes.map((r) => r.modelId))],
  });

  it("inferenceStatus: A sees nothing of B's cluster or B's models, and B nothing of A's models", async () => {
    const ofA = (await t.gqlOk(STATUS, {}, { token: a.key })).inferenceStatus;
    expect(modelsAndClusters(ofA.runtimes).clusters).toEqual([sharedId]);
    expect(modelsAndClusters(ofA.runtimes).models.sort()).toEqual([models.aCold, models.aPrivate, 'shared-base'].sort());
    expect(ofA.readyModelIds.sort()).toEqual([models.aPrivate, 'shared-base'].sort());

    const ofB = (await t.gqlOk(STATUS, {}, { token: b.key })).inferenceStatus;
    expect(modelsAndClusters(ofB.runtimes).clusters.sort()).toEqual([rogueId, sharedId].sort());
    expect(modelsAndClusters(ofB.runtimes).models.sort()).toEqual([models.bCold, models.bPrivate, 'shared-base'].sort());
  });

  it('REST /v1/inference/status: the same views', async () => {
    const statusOf = async (key: string) => {
      const response = await fetch(`${t.url}/v1/inference/status`, { headers: { authorization: `Bearer ${key}` } });
      expect(response.status).toBe(200);
      return JSON.stringify(await response.json());
    };
    const ofA = await statusOf(a.key);
    expect(ofA).toContain(sharedId);
    for (const hidden of [rogueId, models.bPrivate, models.bCold]) expect(ofA).not.toContain(hidden);
    const ofB = await statusOf(b.key);
    expect(ofB).toContain(rogueId);
    for (const hidden of [models.aPrivate, models.aCold]) expect(ofB).not.toContain(hidden);
  });

  it("Model.runtimes and runtimeScaling: a base model's runtimes on B's cluster show to B only; B's model is NOT_FOUND for A", async () => {
    const runtimesOf = async (key: string) =>
      ((await t.gqlOk('{ model(id: "shared-base") { runtimes { clusterId } } }', {}, { token: key })).model.runtimes as { clusterId: string }[])
        .map((r) => r.clusterId)
        .sort();
    expect(await runtimesOf(a.key)).toEqual([sharedId]);
    expect(await runtimesOf(b.key)).toEqual([rogueId, sharedId].sort());

    const scaling = async (key: string, modelId: string) => {
      const ws = createClient({
        url: t.graphqlUrl.replace('http://', 'ws://'),
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        connectionParams: { authorization: `Bearer ${key}` },
      });
      const events = ws.iterate<{ runtimeScaling: { clusterId: string }[] }>({
        query: 'subscription($modelId: ID!) { runtimeScaling(modelId: $modelId) { clusterId } }',
        variables: { modelId },
      });
      try {
        return (await events.next()).value;
      } finally {
        await events.return?.();
        await ws.dispose();
      }
    };
    expect((await scaling(a.key, 'shared-base')).data.runtimeScaling).toEqual([{ clusterId: sharedId }]);
    expect((await scaling(b.key, 'shared-base')).data.runtimeScaling.map((r: { clusterId: string }) => r.clusterId).sort()).toEqual([rogueId, sharedId].sort());
    const forA = await scaling(a.key, models.bPrivate);
    expect(forA.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it("runtimesUpdated: each organization's first event is its own view", async () => {
    const first = async (key: string) => {
      const ws = createClient({
        url: t.graphqlUrl.replace('http://', 'ws://'),
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        connectionParams: { authorization: `Bearer ${key}` },
      });
      const events = ws.iterate<{ runtimesUpdated: { runtimes: { clusterId: string; modelId: string }[] } }>({
        query: 'subscription { runtimesUpdated { runtimes { clusterId modelId } } }',
      });
      try {
        return modelsAndClusters((await events.next()).value.data!.runtimesUpdated.runtimes);
      } finally {
        await events.return?.();
        await ws.dispose();
      }
    };
    expect(await first(a.key)).toEqual({ clusters: [sharedId], models: expect.arrayContaining([models.aPrivate, 'shared-base']) });
    const ofB = await first(b.key);
    expect(ofB.models).not.toContain(models.aPrivate);
    expect(ofB.clusters).toContain(rogueId);
  });
});
