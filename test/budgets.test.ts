import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBudgetedModel, type BudgetedModel } from './support/budgetedModel.js';
import type { TestPlatform } from './support/platform.js';
import type { RuntimeTap } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';

/**
 * Token budgets (spend limits) through the gateway, on PostgreSQL, with the official openai SDK: the
 * cluster's runtimes are stand-ins that answer every request with 5 tokens (3 prompt + 2 completion)
 * and keep every request they got, so a refusal is proven to have happened before a runtime.
 * Periods and replicas are covered by subgraphs/inference/budgets.test.ts (an injected clock, two
 * connection pools on one database).
 */

const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }`;
const SET_BUDGET = `mutation($input: SetBudgetInput!) { setBudget(input: $input) {
  id scope scopeId projectId period tokenLimit alertPercent spent remaining periodStart resetsAt alertedAt } }`;
const BUDGETS = `query($projectId: ID) { budgets(projectId: $projectId) { id scope scopeId spent remaining resetsAt alertedAt tokenLimit } }`;
const DELETE_BUDGET = `mutation($id: ID!) { deleteBudget(id: $id) { id deleted } }`;
const MODEL = 'budgeted-model';

let served: BudgetedModel;
let t: TestPlatform;
let runtimes: RuntimeTap;
let sdk: BudgetedModel['sdk'];
let ask: BudgetedModel['ask'];

async function newKey(name: string): Promise<{ id: string; secret: string }> {
  const { createApiKey } = await t.gqlOk(CREATE_KEY, { input: { name } });
  return { id: createApiKey.apiKey.id, secret: createApiKey.secret };
}
/** The start of the next UTC month: when a MONTH budget resets. */
function nextMonth(now = new Date()): string {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString();
}

beforeAll(async () => {
  // MODEL is visible to every organization, so another organization's keys can be shown unaffected.
  served = await startBudgetedModel({ model: MODEL, cluster: 'budgets' });
  ({ t, runtimes, sdk, ask } = served);
}, 120_000);
afterAll(async () => {
  await served?.close();
});

describe('token budgets', () => {
  it('a key over its budget is refused with 429 insufficient_quota before any runtime sees the request, and says which budget, its limit and when it resets', async () => {
    const key = await newKey('budgeted');
    const { setBudget } = await t.gqlOk(SET_BUDGET, { input: { scope: 'KEY', id: key.id, period: 'MONTH', tokenLimit: 8 } });
    expect(setBudget).toMatchObject({ scope: 'KEY', scopeId: key.id, period: 'MONTH', tokenLimit: 8, spent: 0, remaining: 8, resetsAt: nextMonth() });

    // 5 tokens each: the first leaves 3, the second spends the rest (it was admitted with 3 left).
    expect((await ask(key.secret)).usage?.total_tokens).toBe(5);
    expect((await ask(key.secret)).usage?.total_tokens).toBe(5);
    const seen = runtimes.received.length;
    const refused = await ask(key.secret, 'over budget').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    const error = refused as InstanceType<typeof OpenAI.RateLimitError>;
    expect(error.status).toBe(429);
    expect(error.code).toBe('insufficient_quota');
    expect(error.type).toBe('insufficient_quota');
    expect(error.message).toContain(`API key ${key.id}`);
    expect(error.message).toContain('8 tokens');
    expect(error.message).toContain(`resets at ${nextMonth()}`);
    // A streamed request is refused the same way, before its stream starts.
    const streamed = await sdk(key.secret)
      .chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'over budget' }], stream: true })
      .catch((e: unknown) => e);
    expect(streamed).toMatchObject({ status: 429, code: 'insufficient_quota' });
    // Refused before routing: no runtime got it.
    expect(runtimes.received.length).toBe(seen);
    expect(runtimes.received.some((r) => r.prompt === 'over budget')).toBe(false);

    // The raw answer is OpenAI's error shape.
    const raw = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'over budget' }] }),
    });
    expect(raw.status).toBe(429);
    expect(await raw.json()).toEqual({
      error: {
        message: expect.stringMatching(/^Budget exceeded: the monthly token budget of API key/),
        type: 'insufficient_quota',
        param: null,
        code: 'insufficient_quota',
      },
    });

    // Its budget reads as spent; another key of the same project is not limited by it.
    const { budgets } = await t.gqlOk(BUDGETS);
    expect(budgets.find((b: { id: string }) => b.id === setBudget.id)).toMatchObject({ spent: 10, remaining: 0, resetsAt: nextMonth() });
    const listed = await fetch(`${t.url}/v1/budgets`, { headers: { authorization: `Bearer ${key.secret}` } });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { data: unknown[] }).data).toContainEqual(
      expect.objectContaining({ id: setBudget.id, object: 'budget', scope: 'key', scope_id: key.id, period: 'month', token_limit: 8, spent: 10, remaining: 0 }),
    );
    const other = await newKey('not budgeted');
    expect((await ask(other.secret)).choices[0]?.message.content).toBe('within budget');

    // Raising the limit lets the key through again at once (the change is made through this replica).
    await t.gqlOk(SET_BUDGET, { input: { scope: 'KEY', id: key.id, period: 'MONTH', tokenLimit: 100 } });
    expect((await ask(key.secret)).choices[0]?.message.content).toBe('within budget');
  });

  it('a project budget limits every key of the project, and a deleted budget limits nothing', async () => {
    const { createOrganization: org } = await t.gqlOk(`mutation { createOrganization(input: { title: "Budget project org" }) { id } }`);
    const { createProject: project } = await t.gqlOk(`mutation($org: ID!) { createProject(input: { organizationId: $org, title: "limited" }) { id } }`, {
      org: org.id,
    });
    const keyIn = async (name: string) =>
      (await t.gqlOk(CREATE_KEY, { input: { name, projectId: project.id, isServiceAccount: true, role: 'OWNER' } })).createApiKey.secret as string;
    const [first, second] = [await keyIn('first'), await keyIn('second')];
    const { setBudget } = await t.gqlOk(SET_BUDGET, { input: { scope: 'PROJECT', id: project.id, period: 'DAY', tokenLimit: 5 } }, { token: first });
    await ask(first);
    await expect(ask(second)).rejects.toMatchObject({ status: 429, code: 'insufficient_quota', message: expect.stringContaining(`project ${project.id}`) });
    await t.gqlOk(DELETE_BUDGET, { id: setBudget.id }, { token: first });
    expect((await ask(second)).choices[0]?.message.content).toBe('within budget');
  });

  it('the alert threshold is recorded once per period: alertedAt is set by the request that crosses it and stays', async () => {
    const key = await newKey('alerted');
    const input = { scope: 'KEY', id: key.id, period: 'WEEK', tokenLimit: 100, alertPercent: 10 };
    const { setBudget } = await t.gqlOk(SET_BUDGET, { input });
    expect(setBudget.alertedAt).toBeNull();
    await ask(key.secret); // 5 of 100: under 10 %
    const under = (await t.gqlOk(BUDGETS)).budgets.find((b: { id: string }) => b.id === setBudget.id);
    expect(under).toMatchObject({ spent: 5, alertedAt: null });
    await ask(key.secret); // 10 of 100: the threshold
    const alerted = (await t.gqlOk(BUDGETS)).budgets.find((b: { id: string }) => b.id === setBudget.id);
    expect(alerted.spent).toBe(10);
    expect(alerted.alertedAt).not.toBeNull();
    await ask(key.secret);
    await ask(key.secret);
    const later = (await t.gqlOk(BUDGETS)).budgets.find((b: { id: string }) => b.id === setBudget.id);
    expect(later.spent).toBe(20);
    expect(later.alertedAt).toBe(alerted.alertedAt);
  });

  it('another organization can neither see, set, nor delete a budget, and a budget it sets on a foreign key id limits nothing', async () => {
    const key = await newKey('foreign target');
    const { setBudget } = await t.gqlOk(SET_BUDGET, { input: { scope: 'KEY', id: key.id, period: 'MONTH', tokenLimit: 1000 } });
    const orgB = await projectWithKey(t, 'Budget org B', { role: 'OWNER' });
    const asB = { token: orgB.key };

    expect((await t.gqlOk(BUDGETS, {}, asB)).budgets).toEqual([]);
    const listed = await fetch(`${t.url}/v1/budgets`, { headers: { authorization: `Bearer ${orgB.key}` } });
    expect(await listed.json()).toEqual({ object: 'list', data: [] });
    const peek = await t.gql(BUDGETS, { projectId: setBudget.projectId }, asB);
    expect(peek.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const removed = await t.gql(DELETE_BUDGET, { id: setBudget.id }, asB);
    expect(removed.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const onDefault = await t.gql(SET_BUDGET, { input: { scope: 'PROJECT', id: setBudget.projectId, period: 'DAY', tokenLimit: 1 } }, asB);
    expect(onDefault.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    // B may name A's key id, but the budget is B's project's: A's key is not limited by it.
    const { setBudget: foreign } = await t.gqlOk(SET_BUDGET, { input: { scope: 'KEY', id: key.id, period: 'DAY', tokenLimit: 1 } }, asB);
    expect(foreign.projectId).toBe(orgB.projectId);
    await ask(key.secret);
    expect((await ask(key.secret)).choices[0]?.message.content).toBe('within budget');

    // A's budget is unchanged and still there.
    const mine = (await t.gqlOk(BUDGETS)).budgets.find((b: { id: string }) => b.id === setBudget.id);
    expect(mine).toMatchObject({ tokenLimit: 1000, spent: 10 });
  });

  it('a project member who does not own the organization reads the budgets but cannot set them; bad input changes nothing', async () => {
    const reader = await projectWithKey(t, 'Budget readers', { role: 'READER' });
    const refused = await t.gql(SET_BUDGET, { input: { scope: 'PROJECT', id: reader.projectId, period: 'DAY', tokenLimit: 10 } }, { token: reader.key });
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await t.gqlOk(BUDGETS, {}, { token: reader.key })).budgets).toEqual([]);

    const key = await newKey('bad input');
    for (const input of [
      { scope: 'KEY', id: key.id, period: 'DAY', tokenLimit: 0 },
      { scope: 'KEY', id: key.id, period: 'DAY', tokenLimit: 1.5 },
      { scope: 'KEY', id: key.id, period: 'DAY', tokenLimit: 10, alertPercent: 101 },
      { scope: 'KEY', id: 'not-a-key', period: 'DAY', tokenLimit: 10 },
    ]) {
      const bad = await t.gql(SET_BUDGET, { input });
      expect(bad.errors?.[0]?.extensions?.code, JSON.stringify(input)).toBe('BAD_USER_INPUT');
    }
    expect((await t.gqlOk(BUDGETS)).budgets.some((b: { scopeId: string }) => b.scopeId === key.id)).toBe(false);
  });
});
