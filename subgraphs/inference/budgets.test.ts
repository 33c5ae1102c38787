import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../../lib/db.js';
import type { Identity } from '../../lib/identity.js';
import { newId } from '../../lib/ids.js';
import { silentLogger } from '../../lib/logging.js';
import { createTestDatabase } from '../../test/support/platform.js';
import { BudgetExceededError, BudgetGuard, periodEnd, periodStart } from './budgets.js';
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
      token_limit: tokenLimit,
      alert_percent: alertPercent,
      created_at: now,
    });
  }

  it('two replicas share the spend: what one charged refuses the next request on the other', async () => {
    await budget('key_shared', 'DAY', 10);
    const [a, b] = guards();
    const subject = await a!.admit(caller('key_shared'));
    await a!.charge(subject, 6);
    await b!.charge(await b!.admit(caller('key_shared')), 6);
    await expect(a!.admit(caller('key_shared'))).rejects.toBeInstanceOf(BudgetExceededError);
    await expect(b!.admit(caller('key_shared'))).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it("a replica that cached the spend sees the other replica's charges once its cache is older than cacheMs", async () => {
    await budget('key_cached', 'DAY', 10);
    const [a, b] = guards(60_000);
    await a!.admit(caller('key_cached')); // cached: 0 spent
    await b!.charge(await b!.admit(caller('key_cached')), 10);
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
    await a!.charge(await a!.admit(caller('key_daily')), 5);
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
    await a!.charge(await a!.admit(caller('key_alert')), 40);
    expect((await store.get('t', row.id))!.alerted_at).toBeNull();
    await Promise.all([a!.charge(await a!.admit(caller('key_alert')), 10), b!.charge(await b!.admit(caller('key_alert')), 10)]);
    const first = (await store.get('t', row.id))!.alerted_at;
    expect(first?.toISOString()).toBe(now.toISOString());
    now = new Date('2026-12-09T13:00:00Z');
    await b!.charge(await b!.admit(caller('key_alert')), 10);
    expect((await store.get('t', row.id))!.alerted_at?.toISOString()).toBe(first?.toISOString());
    now = new Date('2026-12-10T08:00:00Z');
    await a!.charge(await a!.admit(caller('key_alert')), 50);
    expect((await store.get('t', row.id))!.alerted_at?.toISOString()).toBe('2026-12-10T08:00:00.000Z');
  });

  it("a key's budget in one project does not limit the same key id called in another project", async () => {
    await budget('key_elsewhere', 'DAY', 1);
    const [a] = guards();
    await a!.charge(await a!.admit(caller('key_elsewhere')), 5);
    await expect(a!.admit(caller('key_elsewhere'))).rejects.toBeInstanceOf(BudgetExceededError);
    await expect(a!.admit(caller('key_elsewhere', 'proj-other'))).resolves.not.toBeNull();
  });
});
