import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveModel } from '../agent/executor.js';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, scriptedRuntimes } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';

/**
 * Issue 22, item 3: a model's `loadBalancing` (LEAST_IN_FLIGHT | PREFIX_HASH) and `prefixHashChars`,
 * set by its owner with updateModelConfig, reach the agents that run it (workerActiveModels), where the
 * local executor picks a replica by the prompt's prefix (lib/prefixHashRing.ts). Bad values are refused
 * with BAD_USER_INPUT and nothing changes; another organization can neither see nor set them.
 */
let t: TestPlatform;
let agent: Agent;
let active: ActiveModel[] = [];
const MODEL = 'prefix-routed';

const UPDATE = `mutation($input: UpdateModelConfigInput!) {
  updateModelConfig(input: $input) { id config { runtime { loadBalancing prefixHashChars } } }
}`;
const READ = `query($id: ID!) { model(id: $id) { config { runtime { loadBalancing prefixHashChars } } } }`;
const settingOf = async () => (await t.gqlOk(READ, { id: MODEL })).model.config.runtime;

beforeAll(async () => {
  t = await startTestPlatform({ embedded: true, config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 3 } } });
  const scripted = scriptedRuntimes(() => ({ json: {} }));
  const host = {
    ...scripted.host,
    async reconcile(models: ActiveModel[]) {
      active = models;
      await scripted.host.reconcile(models);
    },
  };
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "prefix-routing" }) { registrationKey } }');
  agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: executorWith(host),
    runtimeIntervalMs: 3_600_000,
    logger: silentLogger(),
  });
  await agent.whenConnected();
  await loadedModelFromFile(t, { id: MODEL, weights: Buffer.from('w'), registrationKey: registerCluster.registrationKey });
}, 120_000);

afterAll(async () => {
  await agent?.close();
  await t?.close();
});

describe("a model's load balancing (GraphQL)", () => {
  it('is least-in-flight with a 1024-character prefix until its owner changes it, and the agent is told so', async () => {
    expect(await settingOf()).toEqual({ loadBalancing: 'LEAST_IN_FLIGHT', prefixHashChars: 1024 });
    await agent.reconcileRuntimes();
    expect(active.find((m) => m.id === MODEL)).toMatchObject({ loadBalancing: 'LEAST_IN_FLIGHT', prefixHashChars: 1024 });
  });

  it('bad values are refused with the reason and BAD_USER_INPUT, and nothing changes', async () => {
    const tooShort = await t.gql(UPDATE, { input: { id: MODEL, config: { runtime: { loadBalancing: 'PREFIX_HASH', prefixHashChars: 3 } } } });
    expect(tooShort.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
    expect(tooShort.errors?.[0]?.message).toMatch(/prefixHashChars must be between 16 and 100000/);
    const unknown = await t.gql(UPDATE, { input: { id: MODEL, config: { runtime: { loadBalancing: 'ROUND_ROBIN' } } } });
    expect(unknown.errors?.[0]?.extensions?.['code']).toBeDefined();
    expect(await settingOf()).toEqual({ loadBalancing: 'LEAST_IN_FLIGHT', prefixHashChars: 1024 });
  });

  it("another organization's owner can neither see nor set it (the model is not found)", async () => {
    const other = await projectWithKey(t, 'prefix-outsider', { role: 'OWNER' });
    const refused = await t.gql(UPDATE, { input: { id: MODEL, config: { runtime: { loadBalancing: 'PREFIX_HASH' } } } }, { token: other.key });
    expect(refused.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    expect((await t.gql(READ, { id: MODEL }, { token: other.key })).data?.model ?? null).toBeNull();
    expect((await settingOf()).loadBalancing).toBe('LEAST_IN_FLIGHT');
  });

  it('set to PREFIX_HASH by the owner, it reaches the agent with its prefix length', async () => {
    const { updateModelConfig } = await t.gqlOk(UPDATE, { input: { id: MODEL, config: { runtime: { loadBalancing: 'PREFIX_HASH', prefixHashChars: 256 } } } });
    expect(updateModelConfig.config.runtime).toEqual({ loadBalancing: 'PREFIX_HASH', prefixHashChars: 256 });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
    expect(active.find((m) => m.id === MODEL)).toMatchObject({ loadBalancing: 'PREFIX_HASH', prefixHashChars: 256 });
  });
});
