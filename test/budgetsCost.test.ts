import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBudgetedModel, type BudgetedModel } from './support/budgetedModel.js';
import type { TestPlatform } from './support/platform.js';
import type { RuntimeTap } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';

/**
 * Organization budgets, cost budgets and the price table through the gateway, on PostgreSQL, with the
 * official openai SDK. The stand-in runtimes answer every request with 3 prompt and 2 completion tokens
 * and keep what they got, so a refusal is proven to have happened before a runtime. The platform's
 * default price table (MARINER_MODEL_PRICES) prices the model dearly; an organization sets its own.
 */

const MODEL = 'cost-model';
/** The default table's price of MODEL: $1,000 per 1M input tokens (3 prompt tokens: 3,000 micro-units). */
const DEFAULT_PRICE = { inputMicrosPerMillion: 1_000_000_000, outputMicrosPerMillion: 0 };

const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }`;
const SET_BUDGET = `mutation($input: SetBudgetInput!) { setBudget(input: $input) {
  id scope scopeId projectId period unit tokenLimit costLimitMicros spent remaining resetsAt } }`;
const BUDGETS = `{ budgets { id scope scopeId projectId unit tokenLimit costLimitMicros spent remaining } }`;
const DELETE_BUDGET = `mutation($id: ID!) { deleteBudget(id: $id) { id deleted } }`;
const PRICES = `{ modelPrices { modelId inputMicrosPerMillion outputMicrosPerMillion source updatedAt } }`;
const SET_PRICE = `mutation($input: SetModelPriceInput!) { setModelPrice(input: $input) { modelId inputMicrosPerMillion outputMicrosPerMillion source } }`;

let served: BudgetedModel;
let t: TestPlatform;
let runtimes: RuntimeTap;
let ask: BudgetedModel['ask'];

const rest = async (apiKey: string, path: string, init: { method?: string; body?: unknown } = {}) => {
  const response = await fetch(`${t.url}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: response.status, body: (await response.json()) as any };
};

/** A new organization with two projects and an owner's service-account key in each. */
async function organizationWithTwoProjects(title: string) {
  const first = await projectWithKey(t, title, { role: 'OWNER' });
  const { createProject } = await t.gqlOk(`mutation($org: ID!, $title: String!) { createProject(input: { organizationId: $org, title: $title }) { id } }`, {
    org: first.organizationId,
    title: `${title} second`,
  });
  const { createApiKey } = await t.gqlOk(CREATE_KEY, {
    input: { name: `${title}-second`, projectId: createProject.id, isServiceAccount: true, role: 'OWNER' },
  });
  return {
    organizationId: first.organizationId,
    first: { projectId: first.projectId, key: first.key },
    second: { projectId: createProject.id, key: createApiKey.secret as string },
  };
}

beforeAll(async () => {
  served = await startBudgetedModel({ model: MODEL, cluster: 'cost-budgets', inference: { modelPrices: { [MODEL]: DEFAULT_PRICE } } });
  ({ t, runtimes, ask } = served);
}, 120_000);
afterAll(async () => {
  await served?.close();
});

describe('organization budgets and cost budgets', () => {
  it('an organization budget stops every key of every project of the organization, and no other organization', async () => {
    const org = await organizationWithTwoProjects('Org budget');
    const { setBudget } = await t.gqlOk(
      SET_BUDGET,
      { input: { scope: 'ORGANIZATION', id: org.organizationId, period: 'MONTH', tokenLimit: 8 } },
      { token: org.first.key },
    );
    expect(setBudget).toMatchObject({
      scope: 'ORGANIZATION',
      scopeId: org.organizationId,
      projectId: null,
      unit: 'TOKENS',
      tokenLimit: 8,
      costLimitMicros: null,
      remaining: 8,
    });

    // 5 tokens from a key of the first project, 5 from the second's (admitted with 3 left): 10 of 8.
    await ask(org.first.key);
    await ask(org.second.key);
    const seen = runtimes.received.length;
    for (const key of [org.first.key, org.second.key]) {
      const refused = await ask(key, 'over the organization budget').catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
      expect(refused).toMatchObject({ status: 429, code: 'insufficient_quota' });
      expect((refused as Error).message).toContain(`monthly token budget of organization ${org.organizationId} (8 tokens, 10 used)`);
    }
    // A key made after the budget is stopped too; nothing reached a runtime.
    const { createApiKey } = await t.gqlOk(CREATE_KEY, { input: { name: 'late', projectId: org.second.projectId, isServiceAccount: true, role: 'READER' } });
    await expect(ask(createApiKey.secret, 'over the organization budget')).rejects.toMatchObject({ status: 429, code: 'insufficient_quota' });
    expect(runtimes.received.length).toBe(seen);

    // Both projects see it (REST too); another organization's keys and the default organization's are not limited.
    for (const key of [org.first.key, org.second.key]) {
      const { body } = await rest(key, '/v1/budgets');
      expect(body.data).toContainEqual(
        expect.objectContaining({
          id: setBudget.id,
          scope: 'organization',
          scope_id: org.organizationId,
          project_id: null,
          unit: 'tokens',
          spent: 10,
          remaining: 0,
        }),
      );
    }
    expect((await ask(t.adminKey)).choices[0]?.message.content).toBe('within budget');

    // Deleted, it limits nothing.
    await t.gqlOk(DELETE_BUDGET, { id: setBudget.id }, { token: org.second.key });
    expect((await ask(org.first.key)).choices[0]?.message.content).toBe('within budget');
  });

  it('a cost budget stops after the priced tokens: the organization price over the default table, in USD micro-units', async () => {
    const org = await organizationWithTwoProjects('Cost budget');
    // The default table's price is what the organization starts with.
    expect((await t.gqlOk(PRICES, {}, { token: org.first.key })).modelPrices).toEqual([
      { modelId: MODEL, ...DEFAULT_PRICE, source: 'DEFAULT', updatedAt: null },
    ]);
    // $1 per 1M input tokens, $2 per 1M output tokens, over REST: 3 x 1 + 2 x 2 = 7 micro-units a request.
    const priced = await rest(org.first.key, '/v1/model_prices', {
      method: 'POST',
      body: { model: MODEL, input_micros_per_million: 1_000_000, output_micros_per_million: 2_000_000 },
    });
    expect(priced).toMatchObject({ status: 200, body: { object: 'model_price', model: MODEL, input_micros_per_million: 1_000_000, source: 'organization' } });
    const { body: table } = await rest(org.second.key, '/v1/model_prices');
    expect(table.data).toEqual([
      expect.objectContaining({ model: MODEL, input_micros_per_million: 1_000_000, output_micros_per_million: 2_000_000, source: 'organization' }),
    ]);

    // A project cost budget of 10 micro-units ($0.000010), set over REST.
    const set = await rest(org.first.key, '/v1/budgets', {
      method: 'POST',
      body: { scope: 'project', id: org.first.projectId, period: 'day', cost_limit_micros: 10 },
    });
    expect(set).toMatchObject({ status: 200, body: { object: 'budget', scope: 'project', unit: 'cost', token_limit: null, cost_limit_micros: 10, spent: 0 } });

    await ask(org.first.key); // 7
    await ask(org.first.key); // 14: admitted with 3 left
    const seen = runtimes.received.length;
    const refused = await ask(org.first.key, 'over the cost budget').catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 429, code: 'insufficient_quota' });
    expect((refused as Error).message).toContain(`daily cost budget of project ${org.first.projectId} ($0.000010, $0.000014 used)`);
    expect(runtimes.received.length).toBe(seen);
    const budget = (await t.gqlOk(BUDGETS, {}, { token: org.first.key })).budgets.find((b: { id: string }) => b.id === set.body.id);
    expect(budget).toMatchObject({ unit: 'COST', costLimitMicros: 10, tokenLimit: null, spent: 14, remaining: 0 });
    // The other project of the organization has no such budget.
    expect((await ask(org.second.key)).choices[0]?.message.content).toBe('within budget');
  });

  it("another organization's owner can neither see nor set our budgets and prices; a member who is no owner reads but cannot set", async () => {
    const ours = await organizationWithTwoProjects('Ours');
    const { setBudget: orgBudget } = await t.gqlOk(
      SET_BUDGET,
      { input: { scope: 'ORGANIZATION', id: ours.organizationId, period: 'WEEK', costLimitMicros: 1_000_000 } },
      { token: ours.first.key },
    );
    await t.gqlOk(SET_PRICE, { input: { modelId: MODEL, inputMicrosPerMillion: 5, outputMicrosPerMillion: 6 } }, { token: ours.first.key });
    const theirs = await projectWithKey(t, 'Theirs', { role: 'OWNER' });
    const asThem = { token: theirs.key };

    // Not seen: their budgets, REST list and price table hold nothing of ours.
    expect((await t.gqlOk(BUDGETS, {}, asThem)).budgets).toEqual([]);
    expect((await rest(theirs.key, '/v1/budgets')).body).toEqual({ object: 'list', data: [] });
    expect((await t.gqlOk(PRICES, {}, asThem)).modelPrices).toEqual([{ modelId: MODEL, ...DEFAULT_PRICE, source: 'DEFAULT', updatedAt: null }]);
    // Not set: a budget on our organization or project, a delete of ours, our project as their context.
    const onOurs = await t.gql(SET_BUDGET, { input: { scope: 'ORGANIZATION', id: ours.organizationId, period: 'DAY', tokenLimit: 1 } }, asThem);
    expect(onOurs.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const onOurProject = await t.gql(SET_BUDGET, { input: { scope: 'PROJECT', id: ours.first.projectId, period: 'DAY', tokenLimit: 1 } }, asThem);
    expect(onOurProject.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect((await t.gql(DELETE_BUDGET, { id: orgBudget.id }, asThem)).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const inOurProject = await t.gql(PRICES, {}, { ...asThem, headers: { 'OpenAI-Project': ours.first.projectId } });
    expect(inOurProject.errors?.length).toBeGreaterThan(0);
    expect(inOurProject.data?.modelPrices ?? null).toBeNull();
    // Their price is theirs: ours is unchanged, and ours limits only us.
    await t.gqlOk(SET_PRICE, { input: { modelId: MODEL, inputMicrosPerMillion: 7, outputMicrosPerMillion: 8 } }, asThem);
    expect((await t.gqlOk(PRICES, {}, { token: ours.first.key })).modelPrices).toEqual([
      expect.objectContaining({ modelId: MODEL, inputMicrosPerMillion: 5, outputMicrosPerMillion: 6, source: 'ORGANIZATION' }),
    ]);
    expect((await t.gqlOk(BUDGETS, {}, { token: ours.second.key })).budgets).toEqual([
      expect.objectContaining({ id: orgBudget.id, scope: 'ORGANIZATION', unit: 'COST', costLimitMicros: 1_000_000 }),
    ]);

    // A member of our organization who does not own it sees the organization budget, and sets nothing.
    const { createApiKey: reader } = await t.gqlOk(CREATE_KEY, {
      input: { name: 'reader', projectId: ours.second.projectId, isServiceAccount: true, role: 'READER' },
    });
    expect((await t.gqlOk(BUDGETS, {}, { token: reader.secret })).budgets.map((b: { id: string }) => b.id)).toEqual([orgBudget.id]);
    const readerPrice = await t.gql(SET_PRICE, { input: { modelId: MODEL, inputMicrosPerMillion: 0, outputMicrosPerMillion: 0 } }, { token: reader.secret });
    expect(readerPrice.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const readerBudget = await rest(reader.secret, '/v1/budgets', {
      method: 'POST',
      body: { scope: 'organization', id: ours.organizationId, period: 'day', token_limit: 1 },
    });
    expect(readerBudget.status).toBe(403);

    // Bad input changes nothing: both limits, neither, a fraction, a negative price.
    for (const input of [
      { scope: 'ORGANIZATION', id: ours.organizationId, period: 'DAY', tokenLimit: 10, costLimitMicros: 10 },
      { scope: 'ORGANIZATION', id: ours.organizationId, period: 'DAY' },
      { scope: 'ORGANIZATION', id: ours.organizationId, period: 'DAY', costLimitMicros: 0.5 },
    ]) {
      const bad = await t.gql(SET_BUDGET, { input }, { token: ours.first.key });
      expect(bad.errors?.[0]?.extensions?.code, JSON.stringify(input)).toBe('BAD_USER_INPUT');
    }
    const negative = await t.gql(SET_PRICE, { input: { modelId: MODEL, inputMicrosPerMillion: -1, outputMicrosPerMillion: 0 } }, { token: ours.first.key });
    expect(negative.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect((await t.gqlOk(BUDGETS, {}, { token: ours.first.key })).budgets).toHaveLength(1);
  });
});
