import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveModel } from '../agent/executor.js';
import { startAgent, type Agent } from '../agent/index.js';
import { loadConfig } from '../lib/config.js';
import { silentLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, scriptedRuntimes } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';

/**
 * Issue 18, scheduled scaling set on the model (not only in the agent's MARINER_AUTOSCALER_SCHEDULES):
 * the model's owner sets its schedules with updateModelConfig; bad ones are refused with the reason and
 * BAD_USER_INPUT, nothing changed; a real agent whose autoscaler has no schedules of its own follows the
 * model's, shown in Runtime.autoscaling, and the OpenAI SDK gets 503 with Retry-After while the model is
 * shut down; removing them serves it again. Another organization cannot see or set them.
 */
let t: TestPlatform;
let agent: Agent;
const MODEL = 'owned-schedules';

const UPDATE = `mutation($input: UpdateModelConfigInput!) {
  updateModelConfig(input: $input) { id config { runtime { scalingSchedules { cron timeZone minReplicas maxReplicas onDemand } } } }
}`;
const READ = `query($id: ID!) { model(id: $id) { config { runtime { replicas scalingSchedules { cron timeZone minReplicas maxReplicas onDemand } } } } }`;
const STATUS = `{ inferenceStatus { runtimes { modelId readyReplicas autoscaling { minReplicas maxReplicas scheduledOffUntil schedule { cron timeZone maxReplicas onDemand } } } } }`;

/** A daily UTC cron firing at `offsetMinutes` from now (whole minutes). */
function dailyAt(offsetMinutes: number): string {
  const at = new Date(Date.now() + offsetMinutes * 60_000);
  return `${at.getUTCMinutes()} ${at.getUTCHours()} * * *`;
}

const schedulesOf = async () =>
  (await t.gqlOk<{ model: { config: { runtime: { scalingSchedules: unknown[] } } } }>(READ, { id: MODEL })).model.config.runtime.scalingSchedules;

async function runtimeOf(modelId: string) {
  // Twice: a pass already under way (its list of models may predate the change) ends, then a fresh one.
  await agent.reconcileRuntimes();
  await agent.reconcileRuntimes();
  const { inferenceStatus } = await t.gqlOk(STATUS);
  return inferenceStatus.runtimes.find((r: { modelId: string }) => r.modelId === modelId);
}

beforeAll(async () => {
  t = await startTestPlatform({ embedded: true, config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 3 } } });
  const scripted = scriptedRuntimes(() => ({
    json: {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 0,
      model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: 'open' }, finish_reason: 'stop' }],
    },
  }));
  // The runtime reports as ready the replicas the autoscaler gives it.
  let active: ActiveModel[] = [];
  const host = {
    ...scripted.host,
    async reconcile(models: ActiveModel[]) {
      active = models;
      await scripted.host.reconcile(models);
    },
    status: async () =>
      active.map((m) => ({ modelId: m.id, desiredReplicas: m.replicas, readyReplicas: m.replicas, inFlightRequests: 0, statusMessage: 'ready' })),
  };
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "owned-schedules" }) { registrationKey } }');
  agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: executorWith(host),
    runtimeIntervalMs: 3_600_000,
    logger: silentLogger(),
    // No schedules of the agent's own: the model's apply.
    autoscaler: { ...loadConfig({}).autoscaler, enabled: true, syncPeriodMs: 200 },
  });
  await agent.whenConnected();
  // A model of the admin's own project: the admin key is its owner.
  await loadedModelFromFile(t, { id: MODEL, weights: Buffer.from('w'), registrationKey: registerCluster.registrationKey });
  await agent.reconcileRuntimes();
}, 120_000);
afterAll(async () => {
  await agent?.close();
  await t?.close();
});

describe("a model's own scaling schedules (GraphQL)", () => {
  it('a model has none until its owner sets some', async () => {
    expect(await schedulesOf()).toEqual([]);
    expect((await runtimeOf(MODEL)).autoscaling.schedule).toBeNull();
  });

  it('bad schedules are refused with the reason and BAD_USER_INPUT, and nothing changes', async () => {
    const good = { cron: '0 9 * * 1-5', minReplicas: 0, maxReplicas: 1 };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ cron: '61 * * * *', minReplicas: 0, maxReplicas: 0 }, /61/],
      [{ cron: '0 9 * *', minReplicas: 0, maxReplicas: 1 }, /must have 5 fields/],
      [{ cron: '0 9 * * *', timeZone: 'Mars/Olympus', minReplicas: 0, maxReplicas: 1 }, /Mars\/Olympus/],
      [{ cron: '0 9 * * *', minReplicas: 3, maxReplicas: 1 }, /minReplicas must not exceed maxReplicas/],
      [{ cron: '0 9 * * *', minReplicas: 0, maxReplicas: 5000 }, /maxReplicas must be an integer between 0 and 1000/],
    ];
    for (const [schedule, reason] of cases) {
      // A good schedule beside the bad one, and another setting: the whole update is refused.
      const result = await t.gql(UPDATE, { input: { id: MODEL, config: { runtime: { replicas: 3, scalingSchedules: [good, schedule] } } } });
      expect(result.errors?.[0]?.extensions?.['code'], JSON.stringify(schedule)).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.message).toMatch(/^input\.config\.runtime\.scalingSchedules\[1\]/);
      expect(result.errors?.[0]?.message).toMatch(reason);
    }
    expect(await schedulesOf()).toEqual([]);
    expect((await t.gqlOk(READ, { id: MODEL })).model.config.runtime.replicas).toBe(1);
  });

  it("another organization's owner can neither see nor set them (the model is not found)", async () => {
    const other = await projectWithKey(t, 'schedules-outsider', { role: 'OWNER' });
    const refused = await t.gql(
      UPDATE,
      { input: { id: MODEL, config: { runtime: { scalingSchedules: [{ cron: '* * * * *', minReplicas: 0, maxReplicas: 0 }] } } } },
      { token: other.key },
    );
    expect(refused.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    expect((await t.gql(READ, { id: MODEL }, { token: other.key })).data?.model ?? null).toBeNull();
    expect(await schedulesOf()).toEqual([]);
  });

  it('set by the owner, they scale the runtime: shut down now (503 with Retry-After), shown in Runtime.autoscaling; removed, it answers again', async () => {
    const closed = dailyAt(-60);
    const open = dailyAt(120);
    const opensAt = Math.floor((Date.now() + 120 * 60_000) / 60_000) * 60_000;
    const schedules = [
      { cron: open, timeZone: 'UTC', minReplicas: 1, maxReplicas: 2, onDemand: false },
      { cron: closed, timeZone: 'UTC', minReplicas: 0, maxReplicas: 0, onDemand: false },
    ];
    const { updateModelConfig } = await t.gqlOk(UPDATE, { input: { id: MODEL, config: { runtime: { scalingSchedules: schedules } } } });
    expect(updateModelConfig.config.runtime.scalingSchedules).toEqual(schedules);
    // Time zone and onDemand default to UTC and false.
    expect(await schedulesOf()).toEqual(schedules);

    expect(await runtimeOf(MODEL)).toMatchObject({
      readyReplicas: 0,
      autoscaling: { minReplicas: 0, maxReplicas: 0, scheduledOffUntil: new Date(opensAt).toISOString(), schedule: { cron: closed, maxReplicas: 0 } },
    });
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 30_000 });
    const error = (await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error.status).toBe(503);
    expect(Number(error.headers?.get('retry-after'))).toBeGreaterThan(118 * 60);

    // An empty list removes them: the configured bounds again, and the model answers.
    expect(
      (await t.gqlOk(UPDATE, { input: { id: MODEL, config: { runtime: { scalingSchedules: [] } } } })).updateModelConfig.config.runtime.scalingSchedules,
    ).toEqual([]);
    expect((await runtimeOf(MODEL)).autoscaling).toMatchObject({ schedule: null, scheduledOffUntil: null });
    const answer = await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    expect(answer.choices[0]!.message.content).toBe('open');
  });
});
