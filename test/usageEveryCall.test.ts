import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logging.js';
import { UsageStore } from '../subgraphs/inference/store.js';
import { UsageRecorder } from '../subgraphs/inference/usage.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * Usage records of every API call (issue 20): each GraphQL operation and each REST call makes ONE record
 * (a REST call's forwarded GraphQL operations make none of their own) with its method, route or operation,
 * status or error code, latency and caller; summaries per hour/day and model/key/project/user show an
 * organization's owners all of it and anyone else their own calls; retention removes only older records.
 */

let t: TestPlatform;

interface CallRow {
  request_id: string;
  protocol: string;
  method: string;
  route: string | null;
  operation_type: string | null;
  operation_name: string | null;
  status_code: number;
  error_code: string | null;
  latency_ms: number;
  tenant_id: string | null;
  organization_id: string | null;
  project_id: string | null;
  user_id: string | null;
  api_key_id: string | null;
  model_id: string | null;
}

const knex = () => t.platform.db.knex;
const rowsOf = (requestId: string) => knex().withSchema('inference').table('api_calls').where('request_id', requestId) as Promise<CallRow[]>;
/** A call's records once the gateway's batch is written (off the request's path, every second). */
const recordsOf = (requestId: string) =>
  waitFor(
    () => rowsOf(requestId),
    (rows) => rows.length >= 1,
    `the usage record of ${requestId}`,
    20_000,
  );

/**
 * The records of a call after a LATER call's record is written: the gateway writes its queue in order, so
 * any second record of the first call would be written by then.
 */
async function settledRecordsOf(requestId: string): Promise<CallRow[]> {
  await recordsOf(requestId);
  const later = `usage-later-${randomUUID()}`;
  await t.gqlOk(`query Later { self { id } }`, {}, { headers: { 'x-request-id': later } });
  await recordsOf(later);
  return rowsOf(requestId);
}

const rest = (path: string, init: RequestInit & { token?: string | null; requestId?: string } = {}) =>
  fetch(`${t.url}${path}`, {
    ...init,
    headers: {
      ...(init.token === null ? {} : { authorization: `Bearer ${init.token ?? t.adminKey}` }),
      ...(init.requestId ? { 'x-request-id': init.requestId } : {}),
      ...(init.body ? { 'content-type': 'application/json' } : {}),
    },
  });

beforeAll(async () => {
  t = await startTestPlatform();
}, 120_000);
afterAll(async () => t?.close());

describe('one usage record for every API call', () => {
  it('a REST call makes one record (route, method, status, caller), however many GraphQL operations it forwards', async () => {
    const requestId = `usage-rest-${randomUUID()}`;
    const answer = await rest('/v1/models', { requestId });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-request-id')).toBe(requestId);
    const rows = await settledRecordsOf(requestId);
    expect(rows, JSON.stringify(rows)).toHaveLength(1);
    expect(rows[0]).toMatchObject({ protocol: 'rest', method: 'GET', route: '/v1/models', status_code: 200, error_code: null, operation_type: null });
    expect(rows[0]!.user_id).toBeTruthy();
    expect(rows[0]!.api_key_id).toMatch(/^key_/);
    expect(rows[0]!.organization_id).toBeTruthy();
    expect(rows[0]!.project_id).toBeTruthy();
    expect(rows[0]!.latency_ms).toBeGreaterThanOrEqual(0);

    // A REST route that runs a mutation: still one record, with the route as declared (not the id in the path).
    const created = await rest('/v1/api_keys', { method: 'POST', body: JSON.stringify({ name: 'usage-key' }) });
    expect(created.status).toBe(200);
    const key = (await created.json()) as { id: string };
    const deleteId = `usage-del-${randomUUID()}`;
    expect((await rest(`/v1/api_keys/${key.id}`, { method: 'DELETE', requestId: deleteId })).status).toBe(200);
    const deleted = await settledRecordsOf(deleteId);
    expect(deleted).toHaveLength(1);
    expect(deleted[0]).toMatchObject({ protocol: 'rest', method: 'DELETE', route: '/v1/api_keys/:id', status_code: 200 });
  });

  it('a refused REST call is recorded with its status and no caller; an unknown route with none', async () => {
    const refusedId = `usage-refused-${randomUUID()}`;
    expect((await rest('/v1/models', { requestId: refusedId, token: 'sk-not-a-key' })).status).toBe(401);
    const [refused] = await recordsOf(refusedId);
    expect(refused).toMatchObject({ protocol: 'rest', route: '/v1/models', status_code: 401, user_id: null, organization_id: null });
    expect(refused!.error_code).toBeTruthy();
    const unknownId = `usage-unknown-${randomUUID()}`;
    expect((await rest('/v1/no-such-route', { requestId: unknownId })).status).toBe(404);
    const [unknown] = await recordsOf(unknownId);
    expect(unknown).toMatchObject({ protocol: 'rest', route: null, status_code: 404 });
  });

  it('an inference call on the data plane is recorded once, with its caller and model, without GraphQL', async () => {
    const requestId = `usage-chat-${randomUUID()}`;
    const answer = await rest('/v1/chat/completions', {
      method: 'POST',
      requestId,
      body: JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(answer.status).toBe(404);
    const rows = await settledRecordsOf(requestId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ protocol: 'rest', method: 'POST', route: '/v1/chat/completions', status_code: 404, model_id: 'no-such-model' });
    expect(rows[0]!.api_key_id).toMatch(/^key_/);
  });

  it('a GraphQL operation is recorded with its type, name, status and error code', async () => {
    const okId = `usage-gql-${randomUUID()}`;
    await t.gqlOk(`query WhoAmI { self { id } }`, {}, { headers: { 'x-request-id': okId } });
    const ok = await settledRecordsOf(okId);
    expect(ok).toHaveLength(1);
    expect(ok[0]).toMatchObject({ protocol: 'graphql', method: 'POST', operation_type: 'query', operation_name: 'WhoAmI', status_code: 200, error_code: null });
    expect(ok[0]!.api_key_id).toMatch(/^key_/);

    const reader = await projectWithKey(t, `usage-reader-${randomUUID().slice(0, 6)}`, { role: 'READER' });
    const forbiddenId = `usage-forbidden-${randomUUID()}`;
    // The audit log is for organization owners: a reader is refused.
    const refused = await t.gql(`query ReadAudit { auditEvents { items { id } } }`, {}, { token: reader.key, headers: { 'x-request-id': forbiddenId } });
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const [forbidden] = await recordsOf(forbiddenId);
    expect(forbidden).toMatchObject({
      protocol: 'graphql',
      operation_type: 'query',
      operation_name: 'ReadAudit',
      error_code: 'FORBIDDEN',
      organization_id: reader.organizationId,
    });

    const badKeyId = `usage-badkey-${randomUUID()}`;
    const unauthenticated = await t.gql(`query { self { id } }`, {}, { token: 'sk-bad', headers: { 'x-request-id': badKeyId } });
    expect(unauthenticated.status).toBe(401);
    const [badKey] = await recordsOf(badKeyId);
    expect(badKey).toMatchObject({ protocol: 'graphql', status_code: 401, error_code: 'UNAUTHENTICATED', user_id: null });
  });

  it("under mariner up the records go straight into the inference component's store, not through its GraphQL", async () => {
    const requestId = `usage-in-process-${randomUUID()}`;
    await t.gqlOk(`query InProcess { self { id } }`, {}, { headers: { 'x-request-id': requestId } });
    await recordsOf(requestId);
    // /metrics counts every GraphQL operation each subgraph answers: over HTTP, the batches would be the
    // inference subgraph's RecordApiCalls (test/serve.test.ts sees them there under `mariner serve`).
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(metrics).toMatch(/operation="InProcess"/);
    expect(metrics).not.toMatch(/operation="RecordApiCalls"/);
  });
});

describe('records still waiting when mariner up stops', () => {
  let p: TestPlatform;
  beforeAll(async () => {
    // No batch is due for an hour: only the stop writes them.
    p = await startTestPlatform({ config: { inference: { usageFlushIntervalMs: 3_600_000 } } });
  }, 120_000);
  afterAll(async () => p?.close());

  it('are written as the gateway stops, into the store that stops after it', async () => {
    const requestId = `usage-on-stop-${randomUUID()}`;
    await p.gqlOk(`query BeforeStop { self { id } }`, {}, { headers: { 'x-request-id': requestId } });
    const rows = () => p.platform.db.knex.withSchema('inference').table('api_calls').where('request_id', requestId) as Promise<CallRow[]>;
    expect(await rows()).toEqual([]);
    await p.restart();
    expect(await rows()).toMatchObject([{ protocol: 'graphql', operation_name: 'BeforeStop', status_code: 200 }]);
  });
});

describe('summaries over a generated history', () => {
  const HOUR = 3600_000;
  /** 2026-01-10T00:00Z: the generated history's day (in the past, so live calls do not mix in). */
  const day = Date.UTC(2026, 0, 10);

  it('buckets and totals by hour and day, grouped by model, key, project and user; owners see all, members their own', async () => {
    const member = await projectWithKey(t, `usage-sum-${randomUUID().slice(0, 6)}`, { role: 'READER' });
    const memberId = `usage-member-${randomUUID()}`;
    await t.gqlOk(`query { self { id } }`, {}, { token: member.key, headers: { 'x-request-id': memberId } });
    const [memberCall] = await recordsOf(memberId);
    const { tenant_id: tenantId, user_id: memberUser, api_key_id: memberKey } = memberCall!;
    const org = member.organizationId;
    const project = member.projectId;
    const call = (at: number, userId: string, apiKeyId: string | null, modelId: string | null, status = 200) => ({
      created_at: new Date(at),
      request_id: `gen-${randomUUID()}`,
      protocol: 'rest',
      method: 'POST',
      route: '/v1/chat/completions',
      status_code: status,
      latency_ms: 100,
      tenant_id: tenantId,
      organization_id: org,
      project_id: project,
      user_id: userId,
      api_key_id: apiKeyId,
      model_id: modelId,
    });
    const tokens = (at: number, userId: string, apiKeyId: string | null, modelId: string, prompt: number, completion: number) => ({
      tenant_id: tenantId,
      organization_id: org,
      project_id: project,
      user_id: userId,
      api_key_id: apiKeyId,
      model_id: modelId,
      api_method: '/v1/chat/completions',
      status_code: 200,
      prompt_tokens: prompt,
      completion_tokens: completion,
      time_to_first_token_ms: null,
      latency_ms: 100,
      created_at: new Date(at),
    });
    // Hour 01: the member calls model-a twice (one failed); hour 02: the member once on model-b, another user once on model-a.
    await knex()
      .withSchema('inference')
      .table('api_calls')
      .insert([
        call(day + 1 * HOUR + 60_000, memberUser!, memberKey, 'model-a'),
        call(day + 1 * HOUR + 120_000, memberUser!, memberKey, 'model-a', 500),
        call(day + 2 * HOUR + 60_000, memberUser!, memberKey, 'model-b'),
        call(day + 2 * HOUR + 90_000, 'someone-else', 'key_other', 'model-a'),
        // Outside the range asked: the next day.
        call(day + 25 * HOUR, memberUser!, memberKey, 'model-a'),
      ]);
    await knex()
      .withSchema('inference')
      .table('usage_records')
      .insert([
        tokens(day + 1 * HOUR + 60_000, memberUser!, memberKey, 'model-a', 10, 5),
        tokens(day + 2 * HOUR + 60_000, memberUser!, memberKey, 'model-b', 7, 3),
        tokens(day + 2 * HOUR + 90_000, 'someone-else', 'key_other', 'model-a', 100, 50),
      ]);

    const query = `query Sums($org: ID, $bucket: UsageBucket!, $groupBy: [ApiCallGroup!]!, $from: DateTime, $to: DateTime) {
      apiCallSummaries(organizationId: $org, bucket: $bucket, groupBy: $groupBy, startTime: $from, endTime: $to) {
        bucketStart modelId apiKeyId projectId userId requests failedRequests avgLatencyMs promptTokens completionTokens } }`;
    type Sum = {
      bucketStart: string;
      modelId: string | null;
      userId: string | null;
      requests: number;
      failedRequests: number;
      promptTokens: number;
      completionTokens: number;
    };
    const range = { from: new Date(day).toISOString(), to: new Date(day + 24 * HOUR).toISOString() };

    // The admin created the organization: an owner, who sees every call of it.
    const byHourAndModel = await t.gqlOk<{ apiCallSummaries: Sum[] }>(query, { org, bucket: 'HOUR', groupBy: ['MODEL'], ...range });
    expect(byHourAndModel.apiCallSummaries.map((s) => [s.bucketStart, s.modelId, s.requests, s.failedRequests, s.promptTokens, s.completionTokens])).toEqual([
      [new Date(day + 1 * HOUR).toISOString(), 'model-a', 2, 1, 10, 5],
      [new Date(day + 2 * HOUR).toISOString(), 'model-a', 1, 0, 100, 50],
      [new Date(day + 2 * HOUR).toISOString(), 'model-b', 1, 0, 7, 3],
    ]);
    const byDayAndUser = await t.gqlOk<{ apiCallSummaries: Sum[] }>(query, { org, bucket: 'DAY', groupBy: ['USER'], ...range });
    expect(byDayAndUser.apiCallSummaries.map((s) => [s.bucketStart, s.userId, s.modelId, s.requests, s.promptTokens])).toEqual(
      [
        [new Date(day).toISOString(), memberUser, null, 3, 17],
        [new Date(day).toISOString(), 'someone-else', null, 1, 100],
      ].sort((a, b) => String(a[1]).localeCompare(String(b[1]))),
    );

    // The member (not an owner) sees their own calls only, even when asking for the whole organization.
    const own = await t.gqlOk<{ apiCallSummaries: Sum[] }>(query, { org, bucket: 'DAY', groupBy: [], ...range }, { token: member.key });
    expect(own.apiCallSummaries).toHaveLength(1);
    expect(own.apiCallSummaries[0]).toMatchObject({ requests: 3, failedRequests: 1, promptTokens: 17, completionTokens: 8 });

    // Another organization's owner may not ask about this one.
    const stranger = await projectWithKey(t, `usage-stranger-${randomUUID().slice(0, 6)}`, { role: 'OWNER' });
    const refused = await t.gql(query, { org, bucket: 'DAY', groupBy: [], ...range }, { token: stranger.key });
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    // REST: the same summary in LLMariner's api-usage shape (unix seconds, int64 as strings).
    const params = new URLSearchParams({
      organization_id: org,
      bucket: 'hour',
      group_by: 'model',
      'filter.start_timestamp': String(day / 1000),
      'filter.end_timestamp': String((day + 24 * HOUR) / 1000),
    });
    const answer = await rest(`/v1/api-usage/api-call-summaries?${params.toString()}`);
    expect(answer.status).toBe(200);
    const body = (await answer.json()) as { datapoints: Record<string, unknown>[] };
    expect(body.datapoints[0]).toMatchObject({
      timestamp: String((day + HOUR) / 1000),
      model_id: 'model-a',
      total_requests: '2',
      failed_requests: '1',
      total_prompt_tokens: '10',
      total_completion_tokens: '5',
    });
    expect(body.datapoints).toHaveLength(3);
    const strangerRest = await rest(`/v1/api-usage/api-call-summaries?${params.toString()}`, { token: stranger.key });
    expect(strangerRest.status).toBe(403);
    expect((await rest('/v1/api-usage/api-call-summaries?group_by=colour')).status).toBe(400);
  });

  it('retention (MARINER_USAGE_RETENTION_DAYS) deletes only records older than it', async () => {
    const tag = `retention-${randomUUID()}`;
    const now = Date.now();
    const DAY = 24 * HOUR;
    const ages = [1, 10, 29, 31, 60, 400];
    const row = (ageDays: number) => ({
      created_at: new Date(now - ageDays * DAY),
      request_id: `${tag}-${ageDays}`,
      protocol: 'graphql',
      method: 'POST',
      status_code: 200,
      latency_ms: 1,
      tenant_id: tag,
      organization_id: tag,
    });
    await knex().withSchema('inference').table('api_calls').insert(ages.map(row));
    const usage = (ageDays: number) => ({
      tenant_id: tag,
      organization_id: tag,
      project_id: tag,
      user_id: 'u',
      api_key_id: null,
      model_id: 'm',
      api_method: '/v1/embeddings',
      status_code: 200,
      prompt_tokens: 1,
      completion_tokens: 0,
      time_to_first_token_ms: null,
      latency_ms: 1,
      created_at: new Date(now - ageDays * DAY),
    });
    await knex().withSchema('inference').table('usage_records').insert(ages.map(usage));
    // The inference component's cleaner, with a 30-day retention.
    const recorder = new UsageRecorder(new UsageStore(knex()), { flushIntervalMs: 60_000, maxBatch: 100, maxPending: 100, retentionDays: 30 }, silentLogger());
    try {
      await recorder.purge(new Date(now));
    } finally {
      await recorder.stop();
    }
    const calls = (await knex().withSchema('inference').table('api_calls').where('tenant_id', tag).orderBy('created_at', 'desc')) as { request_id: string }[];
    expect(calls.map((c) => c.request_id)).toEqual([`${tag}-1`, `${tag}-10`, `${tag}-29`]);
    const records = (await knex().withSchema('inference').table('usage_records').where('tenant_id', tag)) as unknown[];
    expect(records).toHaveLength(3);
  });
});
