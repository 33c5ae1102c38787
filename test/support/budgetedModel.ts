import OpenAI from 'openai';
import { startAgent, type Agent } from '../../agent/index.js';
import { silentLogger } from '../../lib/logging.js';
import { loadedModelFromFile } from './loadedModel.js';
import { startTestPlatform, type TestConfig, type TestPlatform } from './platform.js';
import { executorWith, tappedRuntimes, type RuntimeTap } from './standInRuntimes.js';

/** What the stand-in runtimes answer to every request, with 3 prompt and 2 completion tokens. */
export const BUDGETED_ANSWER = 'within budget';

/** A platform whose one cluster serves one model from stand-in runtimes (test/budgets*.test.ts). */
export interface BudgetedModel {
  t: TestPlatform;
  /** Every request the runtimes got: a refusal is proven to have happened before a runtime. */
  runtimes: RuntimeTap;
  /** The official openai SDK with `apiKey`, no retries. */
  sdk(apiKey: string): OpenAI;
  /** One chat completion of the model (`content` defaults to `hi`). */
  ask(apiKey: string, content?: string): Promise<OpenAI.Chat.ChatCompletion>;
  close(): Promise<void>;
}

/**
 * The budgets tests' platform, on PostgreSQL: usage records written every 50 ms (budgets read them), a
 * cluster named `cluster` whose stand-in runtimes report `model` ready and answer BUDGETED_ANSWER, and
 * `model` loaded on it visible to every organization, so another organization's keys can be shown
 * unaffected. `inference` adds settings (a price table).
 */
export async function startBudgetedModel(options: { model: string; cluster: string; inference?: TestConfig['inference'] }): Promise<BudgetedModel> {
  const t = await startTestPlatform({
    config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 10, usageFlushIntervalMs: 50, ...options.inference } },
  });
  let agent: Agent | undefined;
  const close = async () => {
    await agent?.close();
    await t.close();
  };
  try {
    const runtimes = tappedRuntimes(BUDGETED_ANSWER, (active) =>
      active.map((m) => ({ modelId: m.id, desiredReplicas: 1, readyReplicas: 1, inFlightRequests: 0, statusMessage: 'stand-in' })),
    );
    const { registerCluster } = await t.gqlOk('mutation($name: String!) { registerCluster(input: { name: $name }) { registrationKey } }', {
      name: options.cluster,
    });
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: executorWith(runtimes.host),
      runtimeIntervalMs: 3_600_000,
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await loadedModelFromFile(t, {
      id: options.model,
      weights: Buffer.from('weights'),
      registrationKey: registerCluster.registrationKey,
      input: { isProjectScoped: false },
    });
    await agent.reconcileRuntimes();
    const sdk = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 30_000 });
    const ask = (apiKey: string, content = 'hi') => sdk(apiKey).chat.completions.create({ model: options.model, messages: [{ role: 'user', content }] });
    return { t, runtimes, sdk, ask, close };
  } catch (error) {
    await close();
    throw error;
  }
}
