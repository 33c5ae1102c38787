import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { LogCapture } from './support/logCapture.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * Issue 24 item 4: a model that no cluster can run fails fast with the agents' reason. A real agent on
 * the local executor is given a model without GGUF weights (a Hugging Face layout, as a fine-tuned
 * model's PEFT output): the chat request is refused at once, in OpenAI's error shape, with the agent's
 * reason (not after the 120 s wait for a runtime with a generic 503); the model's runtime shows the
 * reason; and the agent logs it once, however often requests nudge it to reconcile.
 */
let t: TestPlatform;
let agent: Agent;
let cacheDir: string;
const logs = new LogCapture();
const modelId = 'tuned-hf-layout';
const REFUSAL_LOG = 'this cluster cannot run the model; its requests are refused with the reason';

beforeAll(async () => {
  // The wait for a runtime as `mariner up` has it: a request that waited for it would time the test out.
  t = await startTestPlatform({ embedded: true, config: { inference: { requestWaitSeconds: 120 } } });
  cacheDir = mkdtempSync(path.join(tmpdir(), 'mariner-failfast-'));
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "one-machine" }) { registrationKey } }');
  agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: 'local',
    objectStore: t.platform.objectStore,
    cacheDir,
    runtimeIntervalMs: 3_600_000,
    logger: createLogger('info', 'agent', logs),
  });
  await agent.whenConnected();
  await loadedModelFromFile(t, {
    id: modelId,
    weights: Buffer.from(JSON.stringify({ architectures: ['LlamaForCausalLM'] })),
    registrationKey: registerCluster.registrationKey,
    formats: ['HUGGING_FACE'],
    input: { isProjectScoped: false },
  });
}, 120_000);
afterAll(async () => {
  await agent?.close();
  await t?.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('a model no cluster can run', () => {
  it('is refused at once through the OpenAI SDK with the agent reason, in OpenAI error shape', async () => {
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const error = await sdk.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    const refused = error as InstanceType<typeof OpenAI.BadRequestError>;
    expect(refused.status).toBe(400);
    expect(refused.error).toMatchObject({ type: 'invalid_request_error', code: 'failed_precondition' });
    expect(refused.message).toContain('the local executor runs GGUF models only');
    expect(refused.message).toContain(modelId);

    // A stream is refused the same way, before it starts.
    const streamed = await sdk.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'hi' }], stream: true }).catch((e: unknown) => e);
    expect(streamed).toBeInstanceOf(OpenAI.BadRequestError);
    expect((streamed as Error).message).toContain('GGUF models only');
  }, 30_000);

  it('is refused through GraphQL with FAILED_PRECONDITION and the reason', async () => {
    const result = await t.gql('mutation($r: JSON!) { createChatCompletion(request: $r) }', {
      r: { model: modelId, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(result.errors?.[0]?.extensions?.code).toBe('FAILED_PRECONDITION');
    expect(result.errors?.[0]?.message).toContain('the local executor runs GGUF models only');
  }, 30_000);

  it("shows the reason in the model's runtime status", async () => {
    const { model } = await t.gqlOk<{ model: { runtimes: { failure: string | null; statusMessage: string; readyReplicas: number }[] } }>(
      'query($id: ID!) { model(id: $id) { runtimes { failure statusMessage readyReplicas } } }',
      { id: modelId },
    );
    expect(model.runtimes).toHaveLength(1);
    expect(model.runtimes[0]!.failure).toContain('the local executor runs GGUF models only');
    expect(model.runtimes[0]!.statusMessage).toContain('cannot run here');
    expect(model.runtimes[0]!.readyReplicas).toBe(0);
  });

  it('is logged by the agent once, whatever the reconciliations after', async () => {
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await sdk.completions.create({ model: modelId, prompt: 'hi' }).catch(() => undefined);
    await agent.reconcileRuntimes();
    expect(logs.lines.filter((line) => line.msg === REFUSAL_LOG)).toHaveLength(1);
    expect(logs.lines.filter((line) => line.level === 40 && line.msg !== REFUSAL_LOG).map((line) => line.msg)).toEqual([]);
  }, 30_000);
});
