import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../../lib/db.js';
import { migrations } from './migrations/index.js';
import { RuntimeStore, SCHEMA, type RuntimeReport } from './store.js';

/** A runtime report as an agent sends it every 15 s. */
const report = (overrides: Partial<RuntimeReport> = {}): RuntimeReport => ({
  model_id: 'llama-3',
  desired_replicas: 1,
  ready_replicas: 1,
  in_flight_requests: 0,
  status_message: 'ready',
  failure: null,
  autoscaling: {
    minReplicas: 0,
    maxReplicas: 2,
    targetInFlight: 4,
    averageInFlight: 0.5,
    idleSeconds: 10,
    scaleToZeroAt: null,
    lastScaledAt: null,
    lastScaleReason: null,
  },
  ...overrides,
});

describe('storing runtime reports (PGlite)', () => {
  let dir: string;
  let db: Database;
  /** The statements that write, as the database sees them. */
  const writes: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-runtimes-'));
    db = await openDatabase({ databaseUrl: undefined, dataDir: dir });
    await migrate(db.knex, SCHEMA, migrations);
    db.knex.on('query', (query: { sql: string }) => {
      if (/^\s*(insert|update|delete)\b/i.test(query.sql)) writes.push(query.sql);
    });
  });
  afterAll(async () => {
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes an unchanged report not at all, a changed one at once, and an unchanged one only its time once the stored one ages', async () => {
    const store = new RuntimeStore(db.knex, 1);
    const first = await store.storeReport('tenant-a', 'cluster-1', [report(), report({ model_id: 'a-small-model', autoscaling: null })]);
    expect(first.write).toBe('replaced');
    expect(first.rows.map((row) => row.model_id).sort()).toEqual(['a-small-model', 'llama-3']);

    // The same report again, its runtimes listed in another order and its autoscaling keys too: nothing is written.
    writes.length = 0;
    const { scaleToZeroAt, ...rest } = report().autoscaling!;
    const again = await store.storeReport('tenant-a', 'cluster-1', [
      report({ model_id: 'a-small-model', autoscaling: null }),
      report({ autoscaling: { scaleToZeroAt, ...rest } }),
    ]);
    expect(again.write).toBe('unchanged');
    expect(writes).toEqual([]);
    expect(again.rows.map((row) => row.updated_at.getTime()).sort()).toEqual(first.rows.map((row) => row.updated_at.getTime()).sort());

    // A changed report (one more request in flight) is written.
    const changed = await store.storeReport('tenant-a', 'cluster-1', [
      report({ in_flight_requests: 1 }),
      report({ model_id: 'a-small-model', autoscaling: null }),
    ]);
    expect(changed.write).toBe('replaced');
    expect(writes.length).toBeGreaterThan(0);
    expect((await store.forTenant('tenant-a')).find((row) => row.model_id === 'llama-3')?.in_flight_requests).toBe(1);

    // Unchanged, but the stored report is older than the store keeps it: only its time is written (routing needs it fresh).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    writes.length = 0;
    const refreshed = await store.storeReport('tenant-a', 'cluster-1', [
      report({ in_flight_requests: 1 }),
      report({ model_id: 'a-small-model', autoscaling: null }),
    ]);
    expect(refreshed.write).toBe('refreshed');
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatch(/^update/i);
    for (const row of refreshed.rows) expect(row.updated_at.getTime()).toBeGreaterThan(changed.rows[0]!.updated_at.getTime());

    // A runtime gone from the report is a change.
    const fewer = await store.storeReport('tenant-a', 'cluster-1', [report({ in_flight_requests: 1 })]);
    expect(fewer.write).toBe('replaced');
    expect((await store.forTenant('tenant-a')).map((row) => row.model_id)).toEqual(['llama-3']);
  });
});
