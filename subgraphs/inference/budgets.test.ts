import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../../lib/db.js';
import type { Identity } from '../../lib/identity.js';
import { newId } from '../../lib/ids.js';
import { silentLogger } from '../../lib/logging.js';
import { createTestDatabase } from '../../test/support/platform.js';
import { BudgetExceededError, BudgetGuard, costMicros, periodEnd, periodStart, usd } from './budgets.js';
import { BudgetStore, type BudgetPeriod } from './budgetsStore.js';
import { migrations } from './migrations/index.js';
import { SCHEMA } from './store.js';

function caller(apiKeyId: string, projectId = 'proj-p'): Identity {
  return {
    principal: {
      userId: 'u',
      internalUserId: 'u',
      tenantId: 't',
      isServiceAccount: false,
      apiKey: { id: apiKeyId, organizationId: 'org-o', projectId, excludedFromRateLimiting: false },
      organizations: [],
      projects: [],
    },
    project: { organizationId: 'org-o', projectId, role: 'projectOwner', scopes: [] },
  };
}

describe('budget periods (UTC)', () => {
  const at = new Date('2026-12-09T15:30:00Z'); // a Wednesday
  it.each<[BudgetPeriod, string, string]>([
    ['DAY', '2026-12-09T00:00:00.000Z', '2026-12-10T00:00:00.000Z'],
    ['WEEK', '2026-12-07T00:00:00.000Z', '2026-12-14T00:00:00.000Z'],
    ['MONTH', '2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z'],
  ])('a %s budget starts at %s and resets at %s', (period, start, end) => {
    expect(periodStart(period, at).toISOString()).toBe(start);
    expect(periodEnd(period, at).toISOString()).toBe(end);
  });
  it('a week that starts on a Sunday belongs to the Monday before; the first instant of a period is in it', () => {
    expect(periodStart('WEEK', new Date('2026-12-13T23:59:59Z')).toISOString()).toBe('2026-12-07T00:00:00.000Z');
    expect(periodStart('MONTH', new Date('2027-01-01T00:00:00Z')).toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });
});

describe('cost in USD micro-units (whole numbers)', () => {
  it('prices prompt and completion tokens per 1M, rounds a fraction of a micro-unit up, and costs nothing unpriced', () => {
    const price = { inputMicrosPerMillion: 150_000, outputMicrosPerMillion: 600_000 }; // $0.15 and $0.60 per 1M
    expect(costMicros(price, { prompt: 1_000_000, completion: 1_000_000 })).toBe(750_000);
    expect(costMicros(price, { prompt: 3, completion: 2 })).toBe(2); // 1.65 micro-units, rounded up
    expect(costMicros(price, { prompt: 0, completion: 0 })).toBe(0);
    expect(costMicros(undefined, { prompt: 1000, completion: 1000 })).toBe(0);
    // Far past 2^53 in the product: BigInt arithmetic keeps it exact.
    expect(costMicros({ inputMicrosPerMillion: 1_000_000_000_000, outputMicrosPerMillion: 0 }, { prompt: 9_000_000, completion: 0 })).toBe(9_000_000_000_000);
    expect(costMicros(price, { prompt: Number.NaN, completion: 2.5 })).toBe(2); // only the 2 whole completion tokens
    expect(usd(12_345_600)).toBe('$12.345600');
    expect(usd(5)).toBe('$0.000005');
  });
});

describe('the budget guard (PostgreSQL, two replicas, a movable clock)', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let replicas: Database[] = [];
  let dir: string;
  let now = new Date('2026-12-09T12:00:00Z');
  const clock = () => now;

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-budgets-'));
    replicas = [await openDatabase({ databaseUrl: database.url, dataDir: dir }), await openDatabase({ databaseUrl: database.url, dataDir: dir })];
    await migrate(replicas[0]!.knex, SCHEMA, migrations);
  });
  afterAll(async () => {
    for (const replica of replicas) await replica.close();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A request's usage of `tokens` prompt tokens. */
  const used = (tokens: number) => ({ prompt: tokens, completion: 0 });
  /** The guards of two replicas; `cacheMs` 0 reads the counter on every admission. */
  const guards = (cacheMs = 0) => replicas.map((db) => new BudgetGuard(new BudgetStore(db.knex), silentLogger(), cacheMs, clock));
  async function budget(apiKeyId: string, period: BudgetPeriod, tokenLimit: number, alertPercent: number | null = null) {
    return new BudgetStore(replicas[0]!.knex).upsert({
      id: newId('budget'),
      tenant_id: 't',
      organization_id: 'org-o',
      project_id: 'proj-p',
      scope: 'KEY',
      scope_id: apiKeyId,
      period,
      unit: 'TOKENS',
      token_limit: tokenLimit,
      cost_limit_micros: null,
      alert_percent: alertPercent,
      created_at: now,
    });
  }

  it('two replicas share the spend: what one charged refuses the next request on the other', async () => {
    await budget('key_shared', 'DAY', 10);
    const [a, b] = guards();
    const subject = await a!.admit(caller('key_shared'));
    await a!.charge(subject, used(6), 'm');
    await b!.charge(await b!.admit(caller('key_shared')), used(6), 'm');
    await expect(a!.admit(caller('key_shared'))).rejects.toBeInstanceOf(BudgetExceededError);
    await expect(b!.admit(caller('key_shared'))).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it("a replica that cached the spend sees the other replica's charges once its cache is older than cacheMs", async () => {
    await budget('key_cached', 'DAY', 10);
    const [a, b] = guards(60_000);
    await a!.admit(caller('key_cached')); // cached: 0 spent
    await b!.charge(await b!.admit(caller('key_cached')), used(10), 'm');
    // Within cacheMs, a still admits (the documented lag)...
    await expect(a!.admit(caller('key_cached'))).resolves.not.toBeNull();
    now = new Date(now.getTime() + 60_000);
    // ...and refuses once its cache is that old.
    await expect(a!.admit(caller('key_cached'))).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it('a new period resets the budget: the key spent yesterday is admitted today', async () => {
    now = new Date('2026-12-09T23:59:00Z');
    await budget('key_daily', 'DAY', 5);
    const [a] = guards(60_000);
    await a!.charge(await a!.admit(caller('key_daily')), used(5), 'm');
    const refused = await a!.admit(caller('key_daily')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect((refused as BudgetExceededError).state.resetsAt.toISOString()).toBe('2026-12-10T00:00:00.000Z');
    now = new Date('2026-12-10T00:00:00Z');
    await expect(a!.admit(caller('key_daily'))).resolves.not.toBeNull();
  });

  it('the alert fires once per period across replicas, and again in the next period', async () => {
    now = new Date('2026-12-09T12:00:00Z');
    const row = await budget('key_alert', 'DAY', 100, 50);
    const [a, b] = guards();
    const store = new BudgetStore(replicas[0]!.knex);
    await a!.charge(await a!.admit(caller('key_alert')), used(40), 'm');
    expect((await store.get('t', row.id))!.alerted_at).toBeNull();
    await Promise.all([a!.charge(await a!.admit(caller('key_alert')), used(10), 'm'), b!.charge(await b!.admit(caller('key_alert')), used(10), 'm')]);
    const first = (await store.get('t', row.id))!.alerted_at;
    expect(first?.toISOString()).toBe(now.toISOString());
    now = new Date('2026-12-09T13:00:00Z');
    await b!.charge(await b!.admit(caller('key_alert')), used(10), 'm');
    expect((await store.get('t', row.id))!.alerted_at?.toISOString()).toBe(first?.toISOString());
    now = new Date('2026-12-10T08:00:00Z');
    await a!.charge(await a!.admit(caller('key_alert')), used(50), 'm');
    expect((await store.get('t', row.id))!.alerted_at?.toISOString()).toBe('2026-12-10T08:00:00.000Z');
  });

  it("a key's budget in one project does not limit the same key id called in another project", async () => {
    await budget('key_elsewhere', 'DAY', 1);
    const [a] = guards();
    await a!.charge(await a!.admit(caller('key_elsewhere')), used(5), 'm');
    await expect(a!.admit(caller('key_elsewhere'))).rejects.toBeInstanceOf(BudgetExceededError);
    await expect(a!.admit(caller('key_elsewhere', 'proj-other'))).resolves.not.toBeNull();
  });

  it('an organization cost budget counts every project and key of the organization, at the price table (the organization over the default)', async () => {
    const store = new BudgetStore(replicas[0]!.knex);
    await store.upsert({
      id: newId('budget'),
      tenant_id: 't',
      organization_id: 'org-o',
      project_id: '',
      scope: 'ORGANIZATION',
      scope_id: 'org-o',
      period: 'DAY',
      unit: 'COST',
      token_limit: null,
      cost_limit_micros: 100,
      alert_percent: null,
      created_at: now,
    });
    // Default: 10 micro-units per 1M input tokens of m-priced; the organization sets 20 (input) and 40 (output).
    const guard = new BudgetGuard(store, silentLogger(), 0, clock, { 'm-priced': { inputMicrosPerMillion: 10_000_000, outputMicrosPerMillion: 0 } });
    await store.setPrice({
      tenant_id: 't',
      organization_id: 'org-o',
      model_id: 'm-priced',
      input_micros_per_million: 20_000_000,
      output_micros_per_million: 40_000_000,
      updated_at: now,
    });
    // 1 prompt + 1 completion token: 20 + 40 = 60 micro-units; an unpriced model costs nothing.
    await guard.charge(await guard.admit(caller('key_org_1')), { prompt: 1, completion: 1 }, 'm-priced');
    await guard.charge(await guard.admit(caller('key_org_2', 'proj-other')), { prompt: 1000, completion: 1000 }, 'm-unpriced');
    await guard.charge(await guard.admit(caller('key_org_2', 'proj-other')), { prompt: 1, completion: 1 }, 'm-priced');
    const refused = await guard.admit(caller('key_org_3', 'proj-third')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect((refused as BudgetExceededError).message).toContain('daily cost budget of organization org-o ($0.000100, $0.000120 used)');
  });
});
