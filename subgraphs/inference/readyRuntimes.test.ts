import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../lib/logging.js';
import { ReadyRuntimes } from './readyRuntimes.js';
import type { RuntimeRow } from './store.js';

const row = (clusterId: string, modelId: string, updatedAt: number): RuntimeRow => ({
  cluster_id: clusterId,
  tenant_id: 't',
  model_id: modelId,
  desired_replicas: 1,
  ready_replicas: 1,
  in_flight_requests: 0,
  status_message: '',
  autoscaling: null,
  failure: null,
  updated_at: new Date(updatedAt),
});

/** The runtimes table as `readyForTenant` reads it, with a database clock `skewMs` ahead of this host's; counts the reads. */
function table(skewMs = 0) {
  const state = { rows: [] as RuntimeRow[], reads: 0, skewMs, hold: null as Promise<void> | null };
  const store = {
    async readyForTenant(tenantId: string) {
      state.reads++;
      const rows = state.rows.filter((r) => r.tenant_id === tenantId);
      if (state.hold) await state.hold;
      return { rows, now: rows.length ? new Date(Date.now() + state.skewMs) : null };
    },
  };
  return { state, store };
}

beforeEach(() => vi.useFakeTimers({ toFake: ['Date'] }));
afterEach(() => vi.useRealTimers());

describe('ReadyRuntimes: the tenants’ ready runtimes in memory', () => {
  it('reads a tenant once for many requests, and again once it is a second old (in the background) or announced', async () => {
    const { state, store } = table();
    const runtimes = new ReadyRuntimes(store, silentLogger(), { freshSeconds: 60 });
    state.rows = [row('c1', 'm', Date.now())];
    await Promise.all(Array.from({ length: 20 }, () => runtimes.ready('t', 'm')));
    expect(state.reads).toBe(1);
    state.rows.push(row('c2', 'm', Date.now()));
    expect(await runtimes.ready('t', 'm')).toHaveLength(1);
    // Announced: the next request reads (and sees the report).
    runtimes.announced('t');
    expect(await runtimes.ready('t', 'm')).toHaveLength(2);
    expect(state.reads).toBe(2);
    // Past a second: served at once, read again behind it.
    state.rows.push(row('c3', 'm', Date.now()));
    vi.advanceTimersByTime(1_001);
    expect(await runtimes.ready('t', 'm')).toHaveLength(2);
    await vi.waitFor(() => expect(state.reads).toBe(3));
    await vi.waitFor(async () => expect(await runtimes.ready('t', 'm')).toHaveLength(3));
    // A caller that waits for a runtime asks for one no older than it says.
    state.rows = [];
    expect(await runtimes.ready('t', 'm', 0)).toEqual([]);
  });

  it('a read in flight when a report is announced does not count: the next request waits for a read started after it', async () => {
    const { state, store } = table();
    const runtimes = new ReadyRuntimes(store, silentLogger(), { freshSeconds: 60 });
    let release!: () => void;
    state.hold = new Promise((resolve) => (release = resolve));
    const before = runtimes.ready('t', 'm');
    runtimes.announced('t');
    state.rows = [row('c1', 'm', Date.now())];
    const after = runtimes.ready('t', 'm');
    release();
    expect(await before).toEqual([]);
    expect(await after).toHaveLength(1);
    expect(state.reads).toBe(2);
  });

  it("judges freshness at each request against the database's clock, not this host's", async () => {
    // The database runs 30 s ahead: a report it stamped 50 s ago (its time) is 20 s old by this host's clock.
    const { state, store } = table(30_000);
    // Kept long enough that the second request is judged from the first read.
    const runtimes = new ReadyRuntimes(store, silentLogger(), { freshSeconds: 60, refreshAfterMs: 60_000, waitAfterMs: 60_000 });
    state.rows = [row('c1', 'm', Date.now() + 30_000 - 50_000)];
    expect(await runtimes.ready('t', 'm')).toHaveLength(1);
    // 11 s later, from the same read: 61 s old by the database's clock.
    vi.advanceTimersByTime(11_000);
    expect(await runtimes.ready('t', 'm')).toEqual([]);
    expect(state.reads).toBe(1);
  });
});
