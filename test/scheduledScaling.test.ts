import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveModel } from '../agent/executor.js';
import { startAgent, type Agent } from '../agent/index.js';
import { loadConfig } from '../lib/config.js';
import { silentLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, scriptedRuntimes } from './support/standInRuntimes.js';

/**
 * Scheduled scaling end to end: a real agent whose autoscaler holds one model shut down by its schedule
 * (and another in an on-demand shutdown) over a runtime that reports the replicas it is given; the
 * OpenAI SDK through REST gets a 503 with Retry-After until the window opens for the first, an answer
 * for the second.
 */
let t: TestPlatform;
let agent: Agent;
const off = 'nightly-off';
const onDemand = 'nightly-on-demand';

/** A daily UTC cron firing at `offsetMinutes` from now (whole minutes). */
function dailyAt(offsetMinutes: number): string {
  const at = new Date(Date.now() + offsetMinutes * 60_000);
  return `${at.getUTCMinutes()} ${at.getUTCHours()} * * *`;
}
let opensAt: number;

beforeAll(async () => {
  t = await startTestPlatform({ embedded: true, config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 3, usageFlushIntervalMs: 20 } } });
  const scripted = scriptedRuntimes(() => ({
    json: {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 0,
      model: onDemand,
      choices: [{ index: 0, message: { role: 'assistant', content: 'awake' }, finish_reason: 'stop' }],
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
  // Shut down an hour ago, open in two hours (UTC).
  const closed = dailyAt(-60);
  const open = dailyAt(120);
  opensAt = Math.floor((Date.now() + 120 * 60_000) / 60_000) * 60_000;
  const window = (onDemandToo: boolean) => [
    { cron: open, timeZone: 'UTC', minReplicas: 1, maxReplicas: 2, onDemand: false },
    { cron: closed, timeZone: 'UTC', minReplicas: 0, maxReplicas: 0, onDemand: onDemandToo },
  ];
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "scheduled" }) { registrationKey } }');
  agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: executorWith(host),
    runtimeIntervalMs: 3_600_000,
    logger: silentLogger(),
    autoscaler: { ...loadConfig({}).autoscaler, enabled: true, syncPeriodMs: 200, schedules: { [off]: window(false), [onDemand]: window(true) } },
  });
  await agent.whenConnected();
  for (const id of [off, onDemand]) {
    await loadedModelFromFile(t, { id, weights: Buffer.from('w'), registrationKey: registerCluster.registrationKey, input: { isProjectScoped: false } });
  }
  await agent.reconcileRuntimes();
  await agent.reconcileRuntimes();
}, 120_000);
afterAll(async () => {
  await agent?.close();
  await t?.close();
});

describe('scheduled scaling through REST', () => {
  it('a model shut down by its schedule answers 503 with Retry-After until the window opens; Runtime.autoscaling says why', async () => {
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const started = Date.now();
    const error = await sdk.chat.completions.create({ model: off, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    const apiError = error as InstanceType<typeof OpenAI.APIError>;
    expect(apiError.status).toBe(503);
    expect(apiError.message).toContain(`shut down by its scaling schedule until ${new Date(opensAt).toISOString()}`);
    const retryAfter = Number(apiError.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(118 * 60);
    expect(retryAfter).toBeLessThanOrEqual(120 * 60);
    // Refused at once, not after waiting for a runtime.
    expect(Date.now() - started).toBeLessThan(2_500);

    const { inferenceStatus } = await t.gqlOk(
      `{ inferenceStatus { runtimes { modelId readyReplicas autoscaling { minReplicas maxReplicas scheduledOffUntil nextScheduleChangeAt schedule { cron timeZone maxReplicas onDemand } } } } }`,
    );
    const runtime = (m: string) => inferenceStatus.runtimes.find((r: { modelId: string }) => r.modelId === m);
    expect(runtime(off)).toMatchObject({
      readyReplicas: 0,
      autoscaling: {
        minReplicas: 0,
        maxReplicas: 0,
        scheduledOffUntil: new Date(opensAt).toISOString(),
        schedule: { timeZone: 'UTC', maxReplicas: 0, onDemand: false },
      },
    });
    expect(runtime(onDemand).autoscaling).toMatchObject({ maxReplicas: 1, scheduledOffUntil: null, schedule: { onDemand: true } });
  });

  it('a model in an on-demand shutdown is woken by a request and answers it', async () => {
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 30_000 });
    const answer = await sdk.chat.completions.create({ model: onDemand, messages: [{ role: 'user', content: 'hi' }] });
    expect(answer.choices[0]!.message.content).toBe('awake');
  });
});
