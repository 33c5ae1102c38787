import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { LogCapture } from './support/logCapture.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, scriptedRuntimes, type ScriptedRuntimes } from './support/standInRuntimes.js';

/**
 * An agent's tunnel is one HTTP/2 session that carries every request to its cluster, and the agent's
 * HTTP/2 server guards against "rapid reset" floods: nghttp2 closes the session (GOAWAY, INTERNAL_ERROR)
 * once the peer has reset more streams than a burst of 1,000 plus 33 a second. The control plane used to
 * reset every stream it had read (one RST_STREAM per request), so about a thousand requests in a short
 * while closed a busy cluster's tunnel, and the requests during the reconnect failed with 503. Answers
 * read whole now end by themselves, and the agent raises the guard for the streams its control plane
 * does cancel (a caller leaving mid-answer).
 */

const model = 'resets-model';
let t: TestPlatform;
let runtime: ScriptedRuntimes;
let agent: Agent;
const agentLog = new LogCapture();
/** Streams the runtime keeps open after their first chunk (the caller leaves before the end). */
let holdStreams = false;

beforeAll(async () => {
  t = await startTestPlatform({ config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 1 } } });
  runtime = scriptedRuntimes((_path, body) => {
    const base = { id: 'chatcmpl-1', created: 1_700_000_000, model: body['model'] };
    const usage = { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 };
    if (!body['stream'])
      return {
        json: { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage },
      };
    const chunk = { ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'ok' }, finish_reason: null }] };
    if (holdStreams) return { events: [chunk], hold: new Promise<void>(() => undefined) };
    return { events: [chunk, { ...base, object: 'chat.completion.chunk', choices: [], usage }] };
  });
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "resets" }) { registrationKey } }');
  agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: executorWith(runtime.host),
    runtimeIntervalMs: 3_600_000,
    logger: createLogger('info', 'agent', agentLog),
  });
  await agent.whenConnected();
  await loadedModelFromFile(t, { id: model, weights: Buffer.from('w'), registrationKey: registerCluster.registrationKey, input: { isProjectScoped: false } });
  await agent.reconcileRuntimes();
}, 120_000);
afterAll(async () => {
  await agent?.close();
  await t?.close();
});

const tunnelsConnected = () => agentLog.lines.filter((line) => line.msg === 'tunnel connected').length;

/** `total` calls of `one`, `concurrency` at a time. */
async function run(total: number, concurrency: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await one(next++);
    }),
  );
}

describe('the agent tunnel under many requests', () => {
  it('2,000 chat completions, streamed and not, all answer over the one tunnel: no reset per request closes it', async () => {
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    expect(tunnelsConnected()).toBe(1);
    const failures: string[] = [];
    await run(2_000, 8, async (i) => {
      try {
        if (i % 2 === 0) {
          const answer = await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: `hi ${i}` }] });
          expect(answer.choices[0]?.message.content).toBe('ok');
        } else {
          let text = '';
          for await (const chunk of await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: `hi ${i}` }], stream: true }))
            text += chunk.choices[0]?.delta.content ?? '';
          expect(text).toBe('ok');
        }
      } catch (error) {
        failures.push(`${i}: ${(error as Error).message}`);
      }
    });
    expect(failures.slice(0, 3)).toEqual([]);
    expect(tunnelsConnected()).toBe(1);
  }, 180_000);

  // Node 20 ignores the server's streamResetBurst/streamResetRate (22 and 24 honour them).
  it.skipIf(Number(process.versions.node.split('.')[0]) < 22)(
    '1,500 callers leaving streams mid-answer (each a reset the agent receives) do not close the tunnel either',
    async () => {
      holdStreams = true;
      try {
        await run(1_500, 8, async (i) => {
          const leave = new AbortController();
          const response = await fetch(`${t.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model, messages: [{ role: 'user', content: `leave ${i}` }], stream: true }),
            signal: leave.signal,
          });
          expect(response.status).toBe(200);
          const reader = response.body!.getReader();
          await reader.read();
          leave.abort();
          await reader.cancel().catch(() => undefined);
        });
      } finally {
        holdStreams = false;
      }
      const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
      const answer = await sdk.chat.completions.create({ model, messages: [{ role: 'user', content: 'still there?' }] });
      expect(answer.choices[0]?.message.content).toBe('ok');
      expect(tunnelsConnected()).toBe(1);
    },
    180_000,
  );
});
