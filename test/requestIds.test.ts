import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { createLogger, silentLogger } from '../lib/logging.js';
import { LogCapture } from './support/logCapture.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { writeTinyGguf } from './support/tinyGguf.js';

/**
 * A request id follows an inference request from the REST layer through the gateway and the inference
 * subgraph into the agent that forwards it to the runtime: the id the client gets in `x-request-id`
 * (its own, or one made up) is the one the agent logs the request with.
 */
describe('request ids: client → gateway → inference subgraph → agent', () => {
  let t: TestPlatform;
  let agent: Agent;
  let dir: string;
  const logs = new LogCapture();
  const modelId = 'tiny-traced';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-request-ids-'));
    const ggufPath = path.join(dir, 'tiny.gguf');
    writeTinyGguf(ggufPath);
    t = await startTestPlatform();
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "traced" }) { registrationKey } }');
    const worker = { token: registerCluster.registrationKey as string };
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: worker.token,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      logger: createLogger('info', 'agent', logs),
    });
    await agent.whenConnected();
    await loadedModelFromFile(t, { id: modelId, weights: readFileSync(ggufPath), registrationKey: worker.token });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
  }, 180_000);

  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const complete = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: modelId, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 3, ...body }),
    });

  it("the agent logs a forwarded request with the client's own x-request-id", async () => {
    const response = await complete({}, { 'x-request-id': 'client-trace-0001' });
    expect(response.status).toBe(200);
    await response.json();
    expect(response.headers.get('x-request-id')).toBe('client-trace-0001');
    const line = await logs.next((l) => l.msg === 'inference request' && l['requestId'] === 'client-trace-0001', 'for client-trace-0001');
    expect(line).toMatchObject({ component: 'agent', modelId, path: '/v1/chat/completions', status: 200 });
    expect(line['cancelled']).toBeUndefined();
  });

  it('without one, the id the client got in the response header is the one the agent logs', async () => {
    const response = await complete({});
    expect(response.status).toBe(200);
    await response.json();
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    await logs.next((l) => l.msg === 'inference request' && l['requestId'] === requestId, `for ${requestId}`);
  });

  it("a job's dispatch carries the id of the request that created it to the agent's log", async () => {
    const response = await fetch(`${t.url}/v1/batch/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json', 'x-request-id': 'client-job-0003' },
      body: JSON.stringify({ image: 'busybox:1.36', command: 'true' }),
    });
    expect(response.status).toBe(200);
    const job = (await response.json()) as { id: string };
    // This agent runs no jobs: it refuses the dispatch, saying so under the creating request's id.
    const line = await logs.next((l) => l.msg === 'job request refused' && String(l['requestId']).startsWith('client-job-0003'), 'for client-job-0003');
    expect(line).toMatchObject({ component: 'agent', jobId: job.id, action: 'start', status: 422 });
  });

  it("a streamed completion: the agent's id is the client's", async () => {
    const response = await complete({ stream: true }, { 'x-request-id': 'client-stream-0002' });
    expect(response.headers.get('x-request-id')).toBe('client-stream-0002');
    expect(await response.text()).toMatch(/data: \[DONE\]\n\n$/);
    const line = await logs.next((l) => l.msg === 'inference request' && l['requestId'] === 'client-stream-0002', 'for client-stream-0002');
    expect(line).toMatchObject({ modelId, status: 200 });
  });
});
