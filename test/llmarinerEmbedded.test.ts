import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageStore } from '../subgraphs/inference/store.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * LLMariner's summary routes on `mariner up`'s embedded database (PGlite): their SQL (time buckets,
 * grouping) runs there as on PostgreSQL. test/llmarinerContract.test.ts checks their shapes.
 */

let t: TestPlatform;

beforeAll(async () => {
  t = await startTestPlatform({ embedded: true });
});
afterAll(async () => {
  await t?.close();
});

async function get(path: string) {
  const response = await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${t.adminKey}` } });
  return { status: response.status, body: (await response.json()) as any };
}

describe('LLMariner summaries on the embedded database', () => {
  it('model usage summaries count requests and tokens per model and hour', async () => {
    // The bootstrap admin key's project: the default one (the only one on a fresh platform).
    const project = (await t.platform.db.knex
      .withSchema('users')
      .table('projects')
      .where({ is_default: true })
      .first('id', 'organization_id', 'tenant_id')) as {
      id: string;
      organization_id: string;
      tenant_id: string;
    };
    const start = Math.floor(Date.now() / 1000 / 3600) * 3600 - 2 * 3600;
    const at = (seconds: number) => new Date(seconds * 1000);
    const base = {
      tenant_id: project.tenant_id,
      organization_id: project.organization_id,
      project_id: project.id,
      user_id: 'user-embedded',
      api_key_id: null,
      api_method: '/v1/chat/completions',
      status_code: 200,
      time_to_first_token_ms: null,
      latency_ms: 10,
    };
    await new UsageStore(t.platform.db.knex).insert([
      { ...base, model_id: 'm1', prompt_tokens: 4, completion_tokens: 2, created_at: at(start + 60) },
      { ...base, model_id: 'm1', prompt_tokens: 6, completion_tokens: 3, created_at: at(start + 3600 + 60) },
      { ...base, model_id: 'm2', prompt_tokens: 1, completion_tokens: 1, created_at: at(start + 3600 + 120) },
    ]);
    const { status, body } = await get(`/v1/api-usage/model-usage-summaries?filter.start_timestamp=${start}&filter.end_timestamp=${start + 7200}`);
    expect(status).toBe(200);
    expect(body.datapoints).toEqual([
      {
        timestamp: String(start),
        values: [
          { model_id: 'm1', total_requests: '1', total_prompt_tokens: '4', total_completion_tokens: '2' },
          { model_id: 'm2', total_requests: '0', total_prompt_tokens: '0', total_completion_tokens: '0' },
        ],
      },
      {
        timestamp: String(start + 3600),
        values: [
          { model_id: 'm1', total_requests: '1', total_prompt_tokens: '6', total_completion_tokens: '3' },
          { model_id: 'm2', total_requests: '1', total_prompt_tokens: '1', total_completion_tokens: '1' },
        ],
      },
    ]);
  });

  it('job summaries and cluster telemetry answer', async () => {
    const jobs = await get('/v1/jobs/summaries');
    expect(jobs.status).toBe(200);
    expect(jobs.body.datapoints[0].values[0]).toMatchObject({ total_stopped: '0', total_deleted: '0' });
    expect((await get('/v1/clustertelemetry/clustersnapshots')).status).toBe(200);
    expect((await get('/v1/clustertelemetry/gpu-usages')).status).toBe(200);
  });
});
