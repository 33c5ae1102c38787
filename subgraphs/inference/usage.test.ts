import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../../lib/db.js';
import { silentLogger } from '../../lib/logging.js';
import { createTestDatabase } from '../../test/support/platform.js';
import { migrations } from './migrations/index.js';
import { SCHEMA, UsageStore, type UsageRecord } from './store.js';
import { UsageRecorder } from './usage.js';

const record = (overrides: Partial<UsageRecord> = {}): UsageRecord => ({
  tenant_id: 't',
  organization_id: 'o',
  project_id: 'p',
  user_id: 'alice',
  api_key_id: 'key_a',
  model_id: 'm',
  api_method: '/v1/chat/completions',
  status_code: 200,
  prompt_tokens: 10,
  completion_tokens: 5,
  time_to_first_token_ms: null,
  latency_ms: 100,
  created_at: new Date(),
  ...overrides,
});

describe('usage records: batched writes, summaries per user, key and model, retention', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let dir: string;
  let store: UsageStore;

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-usage-'));
    db = await openDatabase({ databaseUrl: database.url, dataDir: dir });
    await migrate(db.knex, SCHEMA, migrations);
    store = new UsageStore(db.knex);
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('queues without writing, writes a full batch at once, and the rest on stop', async () => {
    const recorder = new UsageRecorder(store, { flushIntervalMs: 600_000, maxBatch: 3, maxPending: 1000, retentionDays: 0 }, silentLogger());
    recorder.record(record({ project_id: 'batched' }));
    recorder.record(record({ project_id: 'batched' }));
    expect(await store.summaries('t', 'batched', null, null)).toEqual([]);
    recorder.record(record({ project_id: 'batched', status_code: 429, prompt_tokens: 0, completion_tokens: 0 }));
    recorder.record(record({ project_id: 'batched', time_to_first_token_ms: 40, latency_ms: 200 }));
    await recorder.flush();
    await recorder.stop();
    expect(await store.summaries('t', 'batched', null, null)).toEqual([
      {
        user_id: 'alice',
        api_key_id: 'key_a',
        model_id: 'm',
        total_requests: 4,
        failed_requests: 1,
        avg_latency_ms: 125,
        avg_time_to_first_token_ms: 40,
        total_prompt_tokens: 30,
        total_completion_tokens: 15,
      },
    ]);
  });

  it('groups by user, key and model, within the project and the time range only', async () => {
    const at = (iso: string) => new Date(iso);
    await store.insert([
      record({ project_id: 'grouped', created_at: at('2026-01-01T10:00:00Z') }),
      record({ project_id: 'grouped', model_id: 'n', created_at: at('2026-01-01T11:00:00Z') }),
      record({ project_id: 'grouped', api_key_id: null, user_id: 'bob', created_at: at('2026-01-01T12:00:00Z') }),
      record({ project_id: 'elsewhere', created_at: at('2026-01-01T10:00:00Z') }),
      record({ project_id: 'grouped', tenant_id: 'other-tenant', created_at: at('2026-01-01T10:00:00Z') }),
    ]);
    const all = await store.summaries('t', 'grouped', null, null);
    expect(all.map((u) => [u.user_id, u.api_key_id, u.model_id, u.total_requests])).toEqual([
      ['alice', 'key_a', 'm', 1],
      ['alice', 'key_a', 'n', 1],
      ['bob', null, 'm', 1],
    ]);
    const morning = await store.summaries('t', 'grouped', at('2026-01-01T10:30:00Z'), at('2026-01-01T12:00:00Z'));
    expect(morning.map((u) => u.model_id)).toEqual(['n']);
  });

  it('purges the records past the retention', async () => {
    const now = new Date('2026-06-01T00:00:00Z');
    await store.insert([
      record({ project_id: 'old', created_at: new Date('2026-01-01T00:00:00Z') }),
      record({ project_id: 'old', created_at: new Date('2026-05-30T00:00:00Z') }),
    ]);
    const recorder = new UsageRecorder(store, { flushIntervalMs: 600_000, maxBatch: 100, maxPending: 100, retentionDays: 30 }, silentLogger());
    try {
      expect(await recorder.purge(now)).toBeGreaterThanOrEqual(1);
      expect((await store.summaries('t', 'old', null, null))[0]!.total_requests).toBe(1);
    } finally {
      await recorder.stop();
    }
  });

  it('keeps records whose write failed and writes them with the next batch', async () => {
    let failNext = true;
    const flaky = new UsageStore(db.knex);
    const insert = flaky.insert.bind(flaky);
    flaky.insert = async (records) => {
      if (failNext) {
        failNext = false;
        throw new Error('database unavailable');
      }
      return insert(records);
    };
    const recorder = new UsageRecorder(flaky, { flushIntervalMs: 600_000, maxBatch: 100, maxPending: 100, retentionDays: 0 }, silentLogger());
    recorder.record(record({ project_id: 'retried' }));
    await recorder.flush();
    expect(await store.summaries('t', 'retried', null, null)).toEqual([]);
    recorder.record(record({ project_id: 'retried' }));
    await recorder.stop();
    expect((await store.summaries('t', 'retried', null, null))[0]!.total_requests).toBe(2);
  });
});
