import { toCount, type Knex } from '../../lib/db.js';
import { SCHEMA } from './store.js';
import type { ApiCallRecord } from '../../lib/apiCallRecord.js';

export type { ApiCallRecord };

export type ApiCallBucket = 'HOUR' | 'DAY';
export type ApiCallGroup = 'MODEL' | 'API_KEY' | 'PROJECT' | 'USER';

export interface ApiCallSummaryQuery {
  tenantId: string;
  organizationId: string;
  /** Only this user's calls (a caller who does not own the organization sees their own only). */
  userId: string | null;
  projectId: string | null;
  from: Date;
  to: Date;
  bucket: ApiCallBucket;
  groupBy: readonly ApiCallGroup[];
}

/** One group in one time bucket; a dimension not grouped by is null. */
export interface ApiCallSummaryRow {
  bucketStart: Date;
  modelId: string | null;
  apiKeyId: string | null;
  projectId: string | null;
  userId: string | null;
  requests: number;
  failedRequests: number;
  avgLatencyMs: number;
  promptTokens: number;
  completionTokens: number;
}

const COLUMN: Record<ApiCallGroup, 'model_id' | 'api_key_id' | 'project_id' | 'user_id'> = {
  MODEL: 'model_id',
  API_KEY: 'api_key_id',
  PROJECT: 'project_id',
  USER: 'user_id',
};

const MAX_INSERT = 500;

/** All SQL of the API call records (`api_calls`), and the summaries that add the inference records' tokens. */
export class ApiCallStore {
  constructor(private readonly knex: Knex) {}

  async insert(calls: readonly ApiCallRecord[]): Promise<number> {
    const rows = calls.map((c) => ({
      created_at: c.occurredAt,
      request_id: c.requestId,
      protocol: c.protocol,
      method: c.method,
      route: c.route,
      operation_type: c.operationType,
      operation_name: c.operationName,
      status_code: c.statusCode,
      error_code: c.errorCode,
      latency_ms: Math.max(0, Math.round(c.latencyMs)),
      tenant_id: c.tenantId,
      organization_id: c.organizationId,
      project_id: c.projectId,
      user_id: c.userId,
      api_key_id: c.apiKeyId,
      model_id: c.modelId,
    }));
    for (let i = 0; i < rows.length; i += MAX_INSERT) {
      await this.knex
        .withSchema(SCHEMA)
        .table('api_calls')
        .insert(rows.slice(i, i + MAX_INSERT));
    }
    return rows.length;
  }

  /** Deletes the API call records older than `before` (retention); answers how many went. */
  async purgeBefore(before: Date): Promise<number> {
    // `returning`: a delete's count through knex-pglite is not always a number.
    const removed = (await this.knex.withSchema(SCHEMA).table('api_calls').where('created_at', '<', before).delete().returning('id')) as unknown[];
    return removed.length;
  }

  /**
   * Calls per time bucket (UTC hours or days) and group over [from, to): requests, failures (status 400 or
   * more, or a GraphQL error code) and mean latency from the API call records, tokens from the inference usage records of the same
   * group and bucket (the inference component writes those, one per inference request, with its model).
   */
  async summaries(query: ApiCallSummaryQuery): Promise<ApiCallSummaryRow[]> {
    const unit = query.bucket === 'DAY' ? 'day' : 'hour';
    const groups = [...new Set(query.groupBy)].map((g) => COLUMN[g]);
    const bucket = this.knex.raw(`extract(epoch from date_trunc('${unit}', created_at at time zone 'UTC'))::bigint as bucket`);
    const scoped = (table: string) => {
      const q = this.knex
        .withSchema(SCHEMA)
        .table(table)
        .where({ tenant_id: query.tenantId, organization_id: query.organizationId })
        .where('created_at', '>=', query.from)
        .where('created_at', '<', query.to)
        .select(bucket, ...groups)
        .groupByRaw(['1', ...groups].join(', '));
      if (query.userId !== null) q.where('user_id', query.userId);
      if (query.projectId !== null) q.where('project_id', query.projectId);
      return q;
    };
    const calls = (await scoped('api_calls')
      .select(this.knex.raw('count(*) as requests'))
      .select(this.knex.raw('count(*) filter (where status_code >= 400 or error_code is not null) as failed'))
      .select(this.knex.raw('coalesce(sum(latency_ms), 0) as latency'))) as Record<string, unknown>[];
    const tokens = (await scoped('usage_records')
      .select(this.knex.raw('coalesce(sum(prompt_tokens), 0) as prompt'))
      .select(this.knex.raw('coalesce(sum(completion_tokens), 0) as completion'))) as Record<string, unknown>[];

    const byKey = new Map<string, ApiCallSummaryRow & { latencyTotal: number }>();
    const keyOf = (r: Record<string, unknown>) => JSON.stringify([String(r['bucket']), ...groups.map((g) => r[g] ?? null)]);
    const rowOf = (r: Record<string, unknown>) => {
      const key = keyOf(r);
      let row = byKey.get(key);
      if (!row) {
        const dim = (column: (typeof COLUMN)[ApiCallGroup]) => (groups.includes(column) ? ((r[column] as string | null) ?? null) : null);
        row = {
          bucketStart: new Date(Number(r['bucket']) * 1000),
          modelId: dim('model_id'),
          apiKeyId: dim('api_key_id'),
          projectId: dim('project_id'),
          userId: dim('user_id'),
          requests: 0,
          failedRequests: 0,
          avgLatencyMs: 0,
          promptTokens: 0,
          completionTokens: 0,
          latencyTotal: 0,
        };
        byKey.set(key, row);
      }
      return row;
    };
    for (const r of calls) {
      const row = rowOf(r);
      row.requests = toCount(r['requests']);
      row.failedRequests = toCount(r['failed']);
      row.latencyTotal = Number(r['latency']);
    }
    for (const r of tokens) {
      const row = rowOf(r);
      row.promptTokens = toCount(r['prompt']);
      row.completionTokens = toCount(r['completion']);
    }
    const order = (v: string | null) => v ?? '';
    return [...byKey.values()]
      .map(({ latencyTotal, ...row }) => ({ ...row, avgLatencyMs: row.requests > 0 ? latencyTotal / row.requests : 0 }))
      .sort(
        (a, b) =>
          a.bucketStart.getTime() - b.bucketStart.getTime() ||
          order(a.projectId).localeCompare(order(b.projectId)) ||
          order(a.userId).localeCompare(order(b.userId)) ||
          order(a.apiKeyId).localeCompare(order(b.apiKeyId)) ||
          order(a.modelId).localeCompare(order(b.modelId)),
      );
  }
}
