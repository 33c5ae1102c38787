import { createClient, type Client } from 'graphql-ws';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveModel, RuntimeReport } from '../agent/executor.js';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, tappedRuntimes } from './support/standInRuntimes.js';
import { until } from './support/until.js';

/**
 * Issue 24 item 8, `runtimeScaling` through a real graphql-ws client against the gateway: each agent
 * report that changes what the subscriber selected is one event (a report changing only other fields,
 * such as the requests in flight, sent the same event again), and when the cluster's agent disconnects the
 * runtime no longer shows as ready (its pid gone with it), without waiting for the report to go stale.
 */
const SCALING = `subscription($modelId: ID!) { runtimeScaling(modelId: $modelId) { clusterId desiredReplicas readyReplicas statusMessage } }`;

interface ScalingEvent {
  clusterId: string;
  desiredReplicas: number;
  readyReplicas: number;
  statusMessage: string;
}

const modelId = 'scaling-state';

for (const embedded of [false, true]) {
  describe(`runtimeScaling events (${embedded ? 'embedded PGlite' : 'PostgreSQL'})`, () => {
    let t: TestPlatform;
    let agent: Agent;
    let ws: Client;
    let registrationKey: string;
    let status = 'starting';
    let ready = 0;
    let inFlight = 0;
    const report = (active: ActiveModel[]): RuntimeReport[] =>
      active.map((m) => ({ modelId: m.id, desiredReplicas: 1, readyReplicas: ready, inFlightRequests: inFlight, statusMessage: status }));

    beforeAll(async () => {
      // Reports stay fresh for an hour: only the disconnection can take the runtime out of the view.
      t = await startTestPlatform({ embedded, config: { inference: { runtimeFreshSeconds: 3600 } } });
      ({
        registerCluster: { registrationKey },
      } = await t.gqlOk('mutation { registerCluster(input: { name: "state" }) { registrationKey } }'));
      agent = await startAgent({
        controlPlaneUrl: t.url,
        registrationKey,
        executor: executorWith(tappedRuntimes('hi', report).host),
        runtimeIntervalMs: 3_600_000,
        logger: silentLogger(),
      });
      await agent.whenConnected();
      await loadedModelFromFile(t, { id: modelId, weights: Buffer.from('w'), registrationKey, input: { isProjectScoped: false } });
      await agent.reconcileRuntimes();
      ws = createClient({
        url: t.graphqlUrl.replace('http://', 'ws://'),
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        connectionParams: { authorization: `Bearer ${t.adminKey}` },
      });
    }, 120_000);
    afterAll(async () => {
      await ws?.dispose();
      await agent?.close();
      await t?.close();
    });

    function follow() {
      const events: ScalingEvent[][] = [];
      let failure: unknown;
      const stop = ws.subscribe<{ runtimeScaling: ScalingEvent[] }>(
        { query: SCALING, variables: { modelId } },
        { next: (event) => event.data && events.push(event.data.runtimeScaling), error: (error) => (failure = error), complete: () => undefined },
      );
      const seen = async (what: string, check: (runtimes: ScalingEvent[]) => boolean) => {
        await until(() => failure !== undefined || events.some(check), what, 20_000);
        if (failure) throw new Error(`the subscription failed: ${JSON.stringify(failure)}`);
      };
      return { events, seen, stop };
    }

    it('sends one event per change an agent reports, not two', async () => {
      const { events, seen, stop } = follow();
      try {
        await seen('the current state', () => true);
        status = 'running (pid 4242)';
        ready = 1;
        await agent.reconcileRuntimes();
        await seen('the runtime ready', (runtimes) => runtimes[0]?.readyReplicas === 1);
        status = 'running (pid 4242); busy';
        await agent.reconcileRuntimes();
        await seen('the second change', (runtimes) => runtimes[0]?.statusMessage.endsWith('busy') === true);
        // A report that changes nothing, or only what the subscriber did not select, is no event; the
        // marker proves the feed went past them.
        await agent.reconcileRuntimes();
        inFlight = 3;
        await agent.reconcileRuntimes();
        status = 'running (pid 4242); marker';
        await agent.reconcileRuntimes();
        await seen('the marker', (runtimes) => runtimes[0]?.statusMessage.endsWith('marker') === true);
        const messages = events.map((runtimes) => runtimes[0]?.statusMessage);
        expect(messages).toEqual(['starting', 'running (pid 4242)', 'running (pid 4242); busy', 'running (pid 4242); marker']);
      } finally {
        stop();
      }
    }, 60_000);

    it('shows no ready runtime once the cluster agent disconnects', async () => {
      const { events, seen, stop } = follow();
      try {
        await seen('the runtime ready', (runtimes) => runtimes[0]?.readyReplicas === 1);
        await agent.close();
        await seen('the runtime not ready', (runtimes) => runtimes.every((runtime) => runtime.readyReplicas === 0));
        const last = events.at(-1)!;
        expect(last.every((runtime) => runtime.readyReplicas === 0 && !runtime.statusMessage.includes('pid'))).toBe(true);
        // A query afterwards says the same.
        const { model } = await t.gqlOk<{ model: { runtimes: ScalingEvent[] } }>(
          'query($id: ID!) { model(id: $id) { runtimes { readyReplicas statusMessage } } }',
          {
            id: modelId,
          },
        );
        expect(model.runtimes.every((runtime) => runtime.readyReplicas === 0)).toBe(true);
      } finally {
        stop();
      }
    }, 60_000);
  });
}
