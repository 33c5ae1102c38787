import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { MODELS_CHANGED_CHANNEL as ANNOUNCED_BY_MODELS } from '../subgraphs/models/events.js';
import { MODELS_CHANGED_CHANNEL } from '../subgraphs/inference/channels.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, tappedRuntimes as standInRuntimes, type RuntimeTap } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';
import { until } from './support/until.js';

/**
 * The inference hot path reads models, ready runtimes and cluster access from memory (DESIGN §3
 * "Inference": no round trip per request). What a user sees must not change: a model deactivated or
 * deleted is refused on the very next request, a runtime that reports ready is routed to at once, and
 * a cluster whose grant is revoked stops getting the organization's prompts within the cluster-access
 * cache's 5 s (lib/clusterAccess.ts).
 *
 * The clusters run real agents over real tunnels; their runtimes are stand-ins that answer with their
 * cluster's name, report each model ready or not as the test says, and count reconciliations (each
 * wake of a waiting request starts one).
 */

/** The stand-in runtimes of a cluster (support/standInRuntimes.ts), with what they report as the test sets it. */
interface Tap extends RuntimeTap {
  /** Models reported without a ready replica. */
  notReady: Set<string>;
  /** Requests in flight each runtime reports (the router prefers the least busy). */
  busy: number;
}

function tappedRuntimes(answer: string, busy = 0): Tap {
  const tap: Tap = Object.assign(
    standInRuntimes(answer, (active) =>
      active.map((m) => ({
        modelId: m.id,
        desiredReplicas: 1,
        readyReplicas: tap.notReady.has(m.id) ? 0 : 1,
        inFlightRequests: tap.busy,
        statusMessage: 'stand-in',
      })),
    ),
    { notReady: new Set<string>(), busy },
  );
  return tap;
}

const REGISTER = `mutation Register($input: RegisterClusterInput!) { registerCluster(input: $input) { registrationKey cluster { id } } }`;
const GRANTS = `mutation($id: ID!, $input: ClusterGrantsInput!) { setClusterGrants(clusterId: $id, input: $input) { id } }`;

let t: TestPlatform;
let orgA: Awaited<ReturnType<typeof projectWithKey>>;
let sdk: OpenAI;
let shared: Tap;
let sharedAgent: Agent;
let sharedKey: string;
const agents: Agent[] = [];

const ask = async (model: string) => (await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })).choices[0]!.message.content;
const catalogModel = (id: string) =>
  loadedModelFromFile(t, { id, weights: Buffer.from('weights'), registrationKey: sharedKey, input: { isProjectScoped: false } });

beforeAll(async () => {
  // A request with no ready runtime waits up to 10 s (scale from zero) before a 503.
  t = await startTestPlatform({ config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 10 } } });
  orgA = await projectWithKey(t, 'Org A', { role: 'OWNER' });
  sdk = new OpenAI({ apiKey: orgA.key, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 30_000 });
  // The platform's cluster, shared with every organization; busier than any other, so that a cluster
  // granted to org A gets A's requests while it may.
  shared = tappedRuntimes('from the shared cluster', 3);
  const cluster = (await t.gqlOk(REGISTER, { input: { name: 'shared' } })).registerCluster;
  sharedKey = cluster.registrationKey;
  sharedAgent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: sharedKey,
    executor: executorWith(shared.host),
    runtimeIntervalMs: 3_600_000,
    logger: silentLogger(),
  });
  agents.push(sharedAgent);
  await sharedAgent.whenConnected();
}, 120_000);
afterAll(async () => {
  for (const agent of agents) await agent.close();
  await t?.close();
});

describe('inference caches keep every guarantee', () => {
  it('the inference component listens on the channel the models subgraph announces changes on', () => {
    expect(MODELS_CHANGED_CHANNEL).toBe(ANNOUNCED_BY_MODELS);
  });

  it('a model deactivated, or deleted, is refused on the very next request; activated again, served on the next', async () => {
    await catalogModel('cached-model');
    await sharedAgent.reconcileRuntimes();
    // Served twice: the second from what the first left in memory.
    expect(await ask('cached-model')).toBe('from the shared cluster');
    expect(await ask('cached-model')).toBe('from the shared cluster');
    await t.gqlOk('mutation { deactivateModel(id: "cached-model") { id } }');
    await expect(ask('cached-model')).rejects.toMatchObject({ status: 400, message: expect.stringContaining('not active') });
    await t.gqlOk('mutation { activateModel(id: "cached-model") { id } }');
    expect(await ask('cached-model')).toBe('from the shared cluster');
    await t.gqlOk('mutation { deactivateModel(id: "cached-model") { id } }');
    await t.gqlOk('mutation { deleteModel(id: "cached-model") { id } }');
    await expect(ask('cached-model')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('a model that is created after a request for it was refused is served on the next request (not found is not kept)', async () => {
    await expect(ask('created-later')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await catalogModel('created-later');
    await sharedAgent.reconcileRuntimes();
    expect(await ask('created-later')).toBe('from the shared cluster');
  });

  it('a runtime that reports ready is routed to by the next request, which does not wait for it', async () => {
    await catalogModel('reported-later');
    shared.notReady.add('reported-later');
    await sharedAgent.reconcileRuntimes();
    // The tenant's runtimes are in memory now, the new model's not ready.
    await ask('created-later');
    shared.notReady.delete('reported-later');
    await sharedAgent.reconcileRuntimes();
    const reconciles = shared.reconciles;
    expect(await ask('reported-later')).toBe('from the shared cluster');
    // It was ready at the first look: no agent was asked to wake it.
    expect(shared.reconciles).toBe(reconciles);
  });

  it('a request waiting for a model scaled to zero is answered as soon as its runtime reports ready', async () => {
    await catalogModel('scaled-to-zero');
    shared.notReady.add('scaled-to-zero');
    await sharedAgent.reconcileRuntimes();
    const woken = shared.reconciles;
    const answer = ask('scaled-to-zero');
    // The waiting request wakes the cluster's agent (a reconciliation), whose report still says not ready.
    await until(() => shared.reconciles > woken, 'the wake of the waiting request');
    shared.notReady.delete('scaled-to-zero');
    const reported = Date.now();
    await sharedAgent.reconcileRuntimes();
    expect(await answer).toBe('from the shared cluster');
    // The wait looks again every 250 ms, from a fresh read (the announcement usually makes it sooner): well
    // before the 5 s a cached answer may live, and the request's 10 s wait (a loaded machine adds seconds).
    expect(Date.now() - reported).toBeLessThan(4_000);
  });

  it("a cluster whose grant to the organization is revoked stops getting its requests within the cluster-access cache's 5 s", async () => {
    await catalogModel('granted-model');
    await sharedAgent.reconcileRuntimes();
    const granted = tappedRuntimes('from the granted cluster');
    const cluster = (await t.gqlOk(REGISTER, { input: { name: 'granted', sharedWithAllOrganizations: false, grantedOrganizationIds: [orgA.organizationId] } }))
      .registerCluster;
    const agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: cluster.registrationKey,
      executor: executorWith(granted.host),
      runtimeIntervalMs: 3_600_000,
      logger: silentLogger(),
    });
    agents.push(agent);
    await agent.whenConnected();
    await agent.reconcileRuntimes();
    // The cluster-access answer in memory may predate the grant: until one has it, the shared cluster serves.
    for (const deadline = Date.now() + 10_000; (await ask('granted-model')) !== 'from the granted cluster';) {
      if (Date.now() > deadline) throw new Error('the granted cluster never got a request');
    }

    await t.gqlOk(GRANTS, { id: cluster.cluster.id, input: { sharedWithAllOrganizations: false, organizationIds: [] } });
    const revoked = Date.now();
    let lastOnGranted = revoked;
    for (;;) {
      const from = await ask('granted-model');
      if (from === 'from the shared cluster') break;
      lastOnGranted = Date.now();
      if (lastOnGranted - revoked > 10_000) throw new Error('the revoked cluster still gets the organization’s requests after 10 s');
    }
    // Within the cache's lifetime (5 s), with room for a slow machine's round trips.
    expect(lastOnGranted - revoked).toBeLessThan(6_000);
    const afterRevocation = granted.received.length;
    for (let i = 0; i < 5; i++) expect(await ask('granted-model')).toBe('from the shared cluster');
    expect(granted.received.length).toBe(afterRevocation);
  }, 60_000);
});
