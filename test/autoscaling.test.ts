import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import OpenAI from 'openai';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { silentLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { writeTinyGguf } from './support/tinyGguf.js';
import { until } from './support/until.js';

const SCALING = `subscription($modelId: ID!) {
  runtimeScaling(modelId: $modelId) {
    clusterId desiredReplicas readyReplicas statusMessage
    autoscaling { minReplicas maxReplicas targetInFlight averageInFlight idleSeconds scaleToZeroAt lastScaledAt lastScaleReason }
  }
}`;

interface ScalingEvent {
  desiredReplicas: number;
  readyReplicas: number;
  statusMessage: string;
  autoscaling: { minReplicas: number; maxReplicas: number; averageInFlight: number; scaleToZeroAt: string | null; lastScaleReason: string | null } | null;
}

/** Whether a process is alive. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('autoscaling on the local executor: replicas follow load, go to zero when idle, come back on demand', () => {
  let t: TestPlatform;
  let agent: Agent;
  let dir: string;
  let client: OpenAI;
  const modelId = 'elastic';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-autoscaling-'));
    t = await startTestPlatform({ config: { inference: { runtimeFreshSeconds: 90, requestWaitSeconds: 90 } } });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "elastic" }) { registrationKey } }');
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      // Short windows so that the test sees each decision in seconds: one request in flight per
      // replica, up to two; zero after 3 idle seconds.
      autoscaler: {
        enabled: true,
        syncPeriodMs: 200,
        defaults: {
          targetInFlight: 1,
          minReplicas: 0,
          maxReplicas: 2,
          maxScaleUpRate: 3,
          maxScaleDownRate: 0.5,
          metricsWindowSeconds: 2,
          scaleToZeroGraceSeconds: 3,
        },
        models: {},
      },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    const ggufPath = path.join(dir, 'tiny.gguf');
    writeTinyGguf(ggufPath);
    // Not activated: its first request does that (on-demand allocation).
    await loadedModelFromFile(t, {
      id: modelId,
      weights: readFileSync(ggufPath),
      registrationKey: registerCluster.registrationKey,
      input: { config: { clusterAllocationPolicy: { enableOnDemandAllocation: true } } },
      activate: false,
    });
    client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 100_000 });
  }, 120_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('scales up under load, to zero after the grace period, and from zero for the next request, as runtimeScaling shows', async () => {
    // The first request activates the model (on-demand allocation) and starts one replica.
    const first = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 3 });
    expect(first.object).toBe('chat.completion');

    const ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
    const events: ScalingEvent[] = [];
    let failure: unknown;
    const unsubscribe = ws.subscribe<{ runtimeScaling: ScalingEvent[] }>(
      { query: SCALING, variables: { modelId } },
      {
        next: (event) => event.data?.runtimeScaling[0] && events.push(event.data.runtimeScaling[0]),
        error: (error) => (failure = error),
        complete: () => undefined,
      },
    );
    const seen = (what: string, check: (event: ScalingEvent) => boolean, timeoutMs = 60_000) =>
      until(() => failure !== undefined || events.some(check), what, timeoutMs).then(() => {
        if (failure) throw new Error(`the subscription failed: ${JSON.stringify(failure)}`);
        return events.find(check)!;
      });
    try {
      const initial = await seen('the current state', () => true, 10_000);
      expect(initial.autoscaling).toMatchObject({ minReplicas: 0, maxReplicas: 2 });

      // Load: four requests in flight at a time against a target of one per replica.
      let loading = true;
      const served: number[] = [];
      const loops = Array.from({ length: 4 }, async () => {
        while (loading) {
          const completion = await client.completions.create({ model: modelId, prompt: 'Count slowly:', max_tokens: 48 });
          served.push(completion.usage?.completion_tokens ?? 0);
        }
      });
      try {
        const up = await seen('two ready replicas', (e) => e.desiredReplicas === 2 && e.readyReplicas === 2);
        expect(up.statusMessage).toMatch(/^running \(pid \d+, \d+\)$/);
        expect(up.autoscaling!.lastScaleReason).toMatch(/^scaled up: /);
      } finally {
        loading = false;
        await Promise.all(loops);
      }
      expect(served.length).toBeGreaterThan(4);
      const pids = events
        .filter((e) => e.readyReplicas === 2)
        .at(-1)!
        .statusMessage.match(/\d+/g)!
        .map(Number);

      // Idle: a step down to one replica, which shows when it will go, then none.
      const holding = await seen('one replica held through the grace period', (e) => e.desiredReplicas === 1 && e.autoscaling?.scaleToZeroAt !== null);
      expect(Date.parse(holding.autoscaling!.scaleToZeroAt!)).toBeGreaterThan(Date.now() - 10_000);
      const zero = await seen('zero replicas', (e) => e.desiredReplicas === 0);
      expect(zero).toMatchObject({
        readyReplicas: 0,
        statusMessage: 'scaled to zero',
        autoscaling: { lastScaleReason: expect.stringMatching(/^scaled to zero: no request for \d+ s$/) },
      });
      await until(() => pids.every((pid) => !alive(pid)), 'the runtime processes to exit', 30_000);

      // The next request waits for a replica started from zero, and is answered.
      const again = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Back?' }], max_tokens: 3 });
      expect(again.object).toBe('chat.completion');
      const woken = await seen(
        'a replica started from zero',
        (e) => e.readyReplicas === 1 && e.autoscaling?.lastScaleReason === 'scaled up from zero: a request is waiting',
      );
      expect(woken.desiredReplicas).toBe(1);
    } finally {
      unsubscribe();
      await ws.dispose();
    }
  }, 180_000);

  it('runtimeScaling of a model the caller cannot see is NOT_FOUND', async () => {
    const ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
    const events = ws.iterate({ query: SCALING, variables: { modelId: 'no-such-model' } });
    try {
      const { value } = await events.next();
      expect(value).toEqual({
        errors: [expect.objectContaining({ message: 'model no-such-model not found', extensions: expect.objectContaining({ code: 'NOT_FOUND' }) })],
      });
    } finally {
      await ws.dispose();
    }
  });
});
