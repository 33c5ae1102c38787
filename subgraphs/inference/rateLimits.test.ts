import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../../lib/db.js';
import type { Identity } from '../../lib/identity.js';
import { createTestDatabase } from '../../test/support/platform.js';
import { migrations } from './migrations/index.js';
import { RateLimitedError, RateLimiter } from './rateLimits.js';
import { RateLimitStore, SCHEMA } from './store.js';

function caller(apiKeyId: string | null, excludedFromRateLimiting = false): Identity {
  return {
    principal: {
      userId: 'u',
      internalUserId: 'u',
      tenantId: 't',
      isServiceAccount: false,
      apiKey: apiKeyId ? { id: apiKeyId, organizationId: 'o', projectId: 'p', excludedFromRateLimiting } : null,
      organizations: [],
      projects: [],
    },
    project: { organizationId: 'o', projectId: 'p', role: 'projectOwner', scopes: [] },
  };
}

describe('the per-API-key rate limiter (Postgres, shared by every replica)', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  // Two replicas of the inference subgraph: separate connection pools on one database.
  let replicas: Database[] = [];
  let dir: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-ratelimiter-'));
    replicas = [await openDatabase({ databaseUrl: database.url, dataDir: dir }), await openDatabase({ databaseUrl: database.url, dataDir: dir })];
    await migrate(replicas[0]!.knex, SCHEMA, migrations);
  });
  afterAll(async () => {
    for (const replica of replicas) await replica.close();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const limiters = (requestsPerMinute: number, tokensPerMinute: number) =>
    replicas.map((db) => new RateLimiter(new RateLimitStore(db.knex), { requestsPerMinute, tokensPerMinute }));

  it('admits exactly the limit across replicas, however the requests race', async () => {
    const [a, b] = limiters(5, 0);
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? a! : b!).admit(caller('key_race'))));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(5);
    const refusals = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(refusals).toHaveLength(15);
    for (const refusal of refusals) {
      expect(refusal.reason).toBeInstanceOf(RateLimitedError);
      expect((refusal.reason as RateLimitedError).state).toMatchObject({ limitRequests: 5, remainingRequests: 0 });
      expect((refusal.reason as RateLimitedError).state.resetInMs).toBeGreaterThan(50_000);
    }
  });

  it('refuses once the tokens charged from responses reach the limit', async () => {
    const [a, b] = limiters(0, 100);
    const key = await a!.admit(caller('key_tokens'));
    await a!.charge(key, 60);
    expect(await b!.state(caller('key_tokens'))).toMatchObject({ remainingTokens: 40 });
    // Tokens left: admitted (its own usage is not known yet), and it overspends.
    await b!.charge(await b!.admit(caller('key_tokens')), 70);
    await expect(a!.admit(caller('key_tokens'))).rejects.toBeInstanceOf(RateLimitedError);
    expect(await a!.state(caller('key_tokens'))).toMatchObject({ limitTokens: 100, remainingTokens: 0 });
  });

  it('a window that has ended starts anew', async () => {
    const [a] = limiters(1, 0);
    await a!.admit(caller('key_window'));
    await expect(a!.admit(caller('key_window'))).rejects.toBeInstanceOf(RateLimitedError);
    await replicas[0]!.knex
      .withSchema(SCHEMA)
      .table('rate_limit_windows')
      .where({ api_key_id: 'key_window' })
      .update({ window_start: replicas[0]!.knex.raw("now() - interval '61 seconds'") });
    expect(await a!.admit(caller('key_window'))).toBe('key_window');
    expect(await a!.state(caller('key_window'))).toMatchObject({ remainingRequests: 0 });
  });

  it('admitWithState returns the budgets left after the request, as the next state read shows them, from the same admission', async () => {
    const [a, b] = limiters(3, 100);
    const first = await a!.admitWithState(caller('key_headers'));
    expect(first.key).toBe('key_headers');
    expect(first.state).toMatchObject({ limitRequests: 3, remainingRequests: 2, limitTokens: 100, remainingTokens: 100 });
    expect(first.state!.resetInMs).toBeGreaterThan(50_000);
    expect(first.state!.resetInMs).toBeLessThanOrEqual(60_000);
    await a!.charge(first.key, 30);
    // Another replica admits against the same window: the tokens charged and its own request count.
    const second = await b!.admitWithState(caller('key_headers'));
    expect(second.state).toMatchObject({ remainingRequests: 1, remainingTokens: 70 });
    expect(second.state!.resetsAt).toEqual(first.state!.resetsAt);
    expect(await a!.state(caller('key_headers'))).toEqual({ ...second.state, resetInMs: expect.any(Number) });
    // The last request of the window: admitted, with nothing left; the next is refused with that state.
    expect((await a!.admitWithState(caller('key_headers'))).state).toMatchObject({ remainingRequests: 0 });
    const refusal = await b!.admitWithState(caller('key_headers')).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(RateLimitedError);
    expect((refusal as RateLimitedError).state).toMatchObject({ remainingRequests: 0, remainingTokens: 70 });
    // Not limited: no key, no state (no `x-ratelimit-*` headers).
    expect(await a!.admitWithState(caller('key_headers', true))).toEqual({ key: null, state: null });
    expect(await a!.admitWithState(caller(null))).toEqual({ key: null, state: null });
  });

  it('excluded keys, OIDC callers (no key) and zero limits are not limited', async () => {
    const [a] = limiters(1, 0);
    for (let i = 0; i < 3; i++) {
      expect(await a!.admit(caller('key_excluded', true))).toBeNull();
      expect(await a!.admit(caller(null))).toBeNull();
    }
    expect(await a!.state(caller('key_excluded', true))).toBeNull();
    const [unlimited] = limiters(0, 0);
    expect(await unlimited!.admit(caller('key_any'))).toBeNull();
  });
});

describe('the rate limiter on embedded PGlite (`mariner up`)', () => {
  it('admits, charges and refuses with the same SQL', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mariner-ratelimiter-pglite-'));
    const db = await openDatabase({ dataDir: dir });
    try {
      await migrate(db.knex, SCHEMA, migrations);
      const limiter = new RateLimiter(new RateLimitStore(db.knex), { requestsPerMinute: 2, tokensPerMinute: 50 });
      await limiter.charge(await limiter.admit(caller('key_embedded')), 10);
      expect(await limiter.state(caller('key_embedded'))).toMatchObject({ remainingRequests: 1, remainingTokens: 40 });
      await limiter.admit(caller('key_embedded'));
      await expect(limiter.admit(caller('key_embedded'))).rejects.toBeInstanceOf(RateLimitedError);
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
