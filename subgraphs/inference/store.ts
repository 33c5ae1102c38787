import { toCount, type Knex } from '../../lib/db.js';
import { ApiCallStore } from './usageStore.js';

export const SCHEMA = 'inference';

/** The autoscaler's state of a runtime, as its agent reported it (stored as JSON). */
export interface RuntimeAutoscaling {
  minReplicas: number;
  maxReplicas: number;
  targetInFlight: number;
  averageInFlight: number;
  idleSeconds: number;
  scaleToZeroAt: string | null;
  lastScaledAt: string | null;
  lastScaleReason: string | null;
  /** The scaling schedule in force (absent in reports from before schedules). */
  schedule?: RuntimeScalingSchedule | null;
  nextScheduleChangeAt?: string | null;
  /** Shut down by its schedule, refusing requests until then. */
  scheduledOffUntil?: string | null;
}

export interface RuntimeScalingSchedule {
  cron: string;
  timeZone: string;
  minReplicas: number;
  maxReplicas: number;
  onDemand: boolean;
}

export interface RuntimeRow {
  cluster_id: string;
  tenant_id: string;
  model_id: string;
  desired_replicas: number;
  ready_replicas: number;
  in_flight_requests: number;
  status_message: string;
  /** null: the runtime runs its model's configured replicas. */
  autoscaling: RuntimeAutoscaling | null;
  /** Why the cluster cannot run the model at all (null: it can or may). */
  failure: string | null;
  updated_at: Date;
}

export type RuntimeReport = Pick<
  RuntimeRow,
  'model_id' | 'desired_replicas' | 'ready_replicas' | 'in_flight_requests' | 'status_message' | 'autoscaling' | 'failure'
>;

/** A stored row: the JSON column as the driver returns it (an object; a string on some drivers). */
function runtimeRow(row: RuntimeRow): RuntimeRow {
  const autoscaling = row.autoscaling as unknown;
  return typeof autoscaling === 'string' ? { ...row, autoscaling: JSON.parse(autoscaling) as RuntimeAutoscaling } : row;
}

/** A report's rows in one comparable form: sorted by model, the autoscaling state with its keys sorted. */
function reportKey(rows: readonly RuntimeReport[]): string {
  const sorted = (value: object | null) => (value ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b))) : null);
  return JSON.stringify(
    [...rows]
      .sort((a, b) => a.model_id.localeCompare(b.model_id))
      .map((r) => [r.model_id, r.desired_replicas, r.ready_replicas, r.in_flight_requests, r.status_message, sorted(r.autoscaling), r.failure ?? null]),
  );
}

/** The status of a runtime whose cluster's agent disconnected (RuntimeStore.markDisconnected). */
export const DISCONNECTED_STATUS = "the cluster's agent is disconnected; not ready until it reconnects and reports";

/** What storing a report did: `unchanged`, nothing written; `refreshed`, only the rows' time; `replaced`, the rows. */
export type RuntimeReportWrite = 'unchanged' | 'refreshed' | 'replaced';

/** All SQL of the inference subgraph. */
export class RuntimeStore {
  constructor(
    private readonly knex: Knex,
    /**
     * A report identical to the stored one is not written while the stored one is younger than this;
     * older, only its time is (routing drops a runtime whose report is older than `runtimeFreshSeconds`).
     */
    private readonly unchangedKeepSeconds = 30,
  ) {}

  private runtimes(): Knex.QueryBuilder {
    return this.knex.withSchema(SCHEMA).table('runtimes');
  }

  /**
   * Stores a cluster's report: nothing when it says what the stored one says (agents report every 15 s,
   * most often with nothing new, and rewriting the rows cost ~140 ms of CPU on PGlite each time), only
   * the rows' time once that is `unchangedKeepSeconds` old, else the rows. Returns the cluster's rows.
   */
  async storeReport(tenantId: string, clusterId: string, reports: RuntimeReport[]): Promise<{ rows: RuntimeRow[]; write: RuntimeReportWrite }> {
    const stored = (await this.runtimes()
      .where({ cluster_id: clusterId })
      .select('*', this.knex.raw('now() - updated_at < make_interval(secs => ?) as recent', [this.unchangedKeepSeconds]))) as (RuntimeRow & {
      recent: boolean;
    })[];
    const rows = stored.map(({ recent: _recent, ...row }) => runtimeRow(row));
    if (stored.length === reports.length && stored.every((row) => row.tenant_id === tenantId) && reportKey(rows) === reportKey(reports)) {
      if (stored.every((row) => row.recent)) return { rows, write: 'unchanged' };
      if (stored.length === 0) return { rows, write: 'unchanged' };
      const refreshed = (await this.runtimes().where({ cluster_id: clusterId }).update({ updated_at: this.knex.fn.now() }).returning('*')) as RuntimeRow[];
      return { rows: refreshed.map(runtimeRow), write: 'refreshed' };
    }
    return { rows: await this.replaceForCluster(tenantId, clusterId, reports), write: 'replaced' };
  }

  /** Replaces a cluster's runtimes with its agent's latest report. */
  async replaceForCluster(tenantId: string, clusterId: string, reports: RuntimeReport[]): Promise<RuntimeRow[]> {
    return this.knex.transaction(async (trx) => {
      await trx.withSchema(SCHEMA).table('runtimes').where({ cluster_id: clusterId }).delete();
      if (reports.length === 0) return [];
      const rows = (await trx
        .withSchema(SCHEMA)
        .table('runtimes')
        .insert(reports.map((r) => ({ ...r, autoscaling: r.autoscaling ? JSON.stringify(r.autoscaling) : null, cluster_id: clusterId, tenant_id: tenantId })))
        .returning('*')) as RuntimeRow[];
      return rows.map(runtimeRow);
    });
  }

  /**
   * The cluster's agent is gone (its last tunnel closed): its runtimes stay listed, as not ready, with
   * DISCONNECTED_STATUS (what they said, a pid among it, is no longer true), until the agent reports
   * again. Returns the tenants whose rows changed (none when they were marked already).
   */
  async markDisconnected(clusterId: string): Promise<string[]> {
    const rows = (await this.runtimes()
      .where({ cluster_id: clusterId })
      .where((q) => q.where('ready_replicas', '>', 0).orWhere('in_flight_requests', '>', 0).orWhereNot('status_message', DISCONNECTED_STATUS))
      .update({ ready_replicas: 0, in_flight_requests: 0, status_message: DISCONNECTED_STATUS })
      .returning('tenant_id')) as { tenant_id: string }[];
    return [...new Set(rows.map((row) => row.tenant_id))];
  }

  /** Every tenant's runtimes (metrics). */
  async all(): Promise<RuntimeRow[]> {
    return ((await this.runtimes().orderBy(['cluster_id', 'model_id'])) as RuntimeRow[]).map(runtimeRow);
  }

  async forTenant(tenantId: string): Promise<RuntimeRow[]> {
    return ((await this.runtimes().where({ tenant_id: tenantId }).orderBy(['model_id', 'cluster_id'])) as RuntimeRow[]).map(runtimeRow);
  }

  async forModels(tenantId: string, modelIds: readonly string[]): Promise<RuntimeRow[]> {
    return (
      (await this.runtimes()
        .where({ tenant_id: tenantId })
        .whereIn('model_id', [...modelIds])
        .orderBy('cluster_id')) as RuntimeRow[]
    ).map(runtimeRow);
  }

  /**
   * The tenant's runtimes with a ready replica, whatever their age, and the database's clock when they
   * were read (null when none was: an empty answer has no clock to carry): the router's in-memory
   * snapshot (readyRuntimes.ts), which judges freshness itself at each request.
   */
  async readyForTenant(tenantId: string): Promise<{ rows: RuntimeRow[]; now: Date | null }> {
    const rows = (await this.runtimes()
      .where({ tenant_id: tenantId })
      .where('ready_replicas', '>', 0)
      .select('*', this.knex.raw('now() as read_at'))
      .orderBy('in_flight_requests')) as (RuntimeRow & { read_at: Date | string })[];
    return { rows: rows.map(({ read_at: _readAt, ...row }) => runtimeRow(row)), now: rows[0] ? new Date(rows[0].read_at) : null };
  }

  /** Runtimes of a model with a ready replica, reported within `freshSeconds`. */
  async ready(tenantId: string, modelId: string, freshSeconds: number): Promise<RuntimeRow[]> {
    return this.runtimes()
      .where({ tenant_id: tenantId, model_id: modelId })
      .where('ready_replicas', '>', 0)
      .where('updated_at', '>', this.knex.raw(`now() - make_interval(secs => ?)`, [freshSeconds]))
      .orderBy('in_flight_requests');
  }
}

/** A key's rate-limit window as stored, with the database's clock (every replica reads the same one). */
export interface RateLimitWindowRow {
  window_start: Date;
  requests: number;
  tokens: number;
  now: Date;
}

/** What the limits allow per window; 0: that dimension is not limited. */
export interface WindowLimits {
  windowSeconds: number;
  requests: number;
  tokens: number;
}

function windowRow(row: { window_start: Date | string; requests: number | string; tokens: number | string; now: Date | string }): RateLimitWindowRow {
  return { window_start: new Date(row.window_start), requests: toCount(row.requests), tokens: toCount(row.tokens), now: new Date(row.now) };
}

/** The rate-limit windows of API keys (all SQL of the limiter). */
export class RateLimitStore {
  constructor(private readonly knex: Knex) {}

  /**
   * Admits one request of `apiKeyId` and returns its window after counting it, or null when the
   * window's request or token budget is spent. One statement (an upsert with a guard), so replicas
   * admitting concurrently cannot both take the last request; a window that has ended starts anew.
   */
  async admit(apiKeyId: string, limits: WindowLimits): Promise<RateLimitWindowRow | null> {
    const ended = `w.window_start <= now() - make_interval(secs => ${Number(limits.windowSeconds)})`;
    const result = await this.knex.raw(
      `insert into ??.rate_limit_windows as w (api_key_id, window_start, requests, tokens) values (?, now(), 1, 0)
       on conflict (api_key_id) do update set
         window_start = case when ${ended} then now() else w.window_start end,
         requests = case when ${ended} then 1 else w.requests + 1 end,
         tokens = case when ${ended} then 0 else w.tokens end
       where ${ended} or ((?::int = 0 or w.requests < ?::int) and (?::bigint = 0 or w.tokens < ?::bigint))
       returning w.window_start, w.requests, w.tokens, now() as now`,
      [SCHEMA, apiKeyId, limits.requests, limits.requests, limits.tokens, limits.tokens],
    );
    const row = (result.rows as Parameters<typeof windowRow>[0][])[0];
    return row ? windowRow(row) : null;
  }

  /** The key's window now (null: no request yet). A window that has ended reads as spent nothing. */
  async current(apiKeyId: string, limits: WindowLimits): Promise<RateLimitWindowRow | null> {
    const result = await this.knex.raw(
      `select window_start, requests, tokens, now() as now, window_start <= now() - make_interval(secs => ${Number(limits.windowSeconds)}) as ended
       from ??.rate_limit_windows where api_key_id = ?`,
      [SCHEMA, apiKeyId],
    );
    const row = (result.rows as (Parameters<typeof windowRow>[0] & { ended: boolean })[])[0];
    if (!row || row.ended) return null;
    return windowRow(row);
  }

  /** Charges tokens to the key's window once a response's usage is known. */
  async charge(apiKeyId: string, tokens: number): Promise<void> {
    if (tokens <= 0) return;
    await this.knex.withSchema(SCHEMA).table('rate_limit_windows').where({ api_key_id: apiKeyId }).increment('tokens', tokens);
  }
}

/** One inference request, as recorded for api-usage (LLMariner UsageRecord). */
export interface UsageRecord {
  tenant_id: string;
  organization_id: string;
  project_id: string;
  user_id: string;
  api_key_id: string | null;
  model_id: string;
  api_method: string;
  status_code: number;
  prompt_tokens: number;
  completion_tokens: number;
  time_to_first_token_ms: number | null;
  latency_ms: number;
  created_at: Date;
}

/** Usage of one (user, API key, model) over a time range. */
export interface UsageSummaryRow {
  user_id: string;
  api_key_id: string | null;
  model_id: string;
  total_requests: number;
  failed_requests: number;
  avg_latency_ms: number;
  avg_time_to_first_token_ms: number | null;
  total_prompt_tokens: number;
  total_completion_tokens: number;
}

/** Requests and tokens of one model in one time bucket (`bucket`: its index from the range's start). */
export interface ModelUsageBucketRow {
  bucket: number;
  model_id: string;
  total_requests: number;
  total_prompt_tokens: number;
  total_completion_tokens: number;
}

/** Usage records (all SQL of api-usage). */
export class UsageStore {
  /** The records of every API call (usageStore.ts): retention removes them with these. */
  readonly apiCalls: ApiCallStore;

  constructor(private readonly knex: Knex) {
    this.apiCalls = new ApiCallStore(knex);
  }

  async insert(records: readonly UsageRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.knex.withSchema(SCHEMA).table('usage_records').insert(records);
  }

  /** Deletes the inference and API call records older than `before` (retention); returns how many went. */
  async purgeBefore(before: Date): Promise<number> {
    // `returning`: a delete's count through knex-pglite is not always a number.
    const removed = (await this.knex.withSchema(SCHEMA).table('usage_records').where('created_at', '<', before).delete().returning('id')) as unknown[];
    return removed.length + (await this.apiCalls.purgeBefore(before));
  }

  /**
   * A project's usage in [from, to) per model and time bucket of `intervalSeconds` from `from`
   * (LLMariner `GET /v1/api-usage/model-usage-summaries`); `statusCode` keeps only the requests answered
   * with it. Buckets without requests are absent.
   */
  async modelUsageBuckets(
    tenantId: string,
    projectId: string,
    range: { from: Date; to: Date; intervalSeconds: number; statusCode: number | null },
  ): Promise<ModelUsageBucketRow[]> {
    const bucket = this.knex.raw('floor(extract(epoch from (created_at - ?::timestamptz)) / ?)::int', [range.from.toISOString(), range.intervalSeconds]);
    const query = this.knex
      .withSchema(SCHEMA)
      .table('usage_records')
      .where({ tenant_id: tenantId, project_id: projectId })
      .where('created_at', '>=', range.from)
      .where('created_at', '<', range.to)
      .select({ bucket }, 'model_id')
      .select(this.knex.raw('count(*) as total_requests'))
      .select(this.knex.raw('coalesce(sum(prompt_tokens), 0) as total_prompt_tokens'))
      .select(this.knex.raw('coalesce(sum(completion_tokens), 0) as total_completion_tokens'))
      .groupByRaw('1, model_id')
      .orderBy([{ column: 'bucket' }, { column: 'model_id' }]);
    if (range.statusCode !== null) query.where('status_code', range.statusCode);
    const rows = (await query) as Record<string, unknown>[];
    return rows.map((r) => ({
      bucket: Number(r['bucket']),
      model_id: String(r['model_id']),
      total_requests: toCount(r['total_requests']),
      total_prompt_tokens: toCount(r['total_prompt_tokens']),
      total_completion_tokens: toCount(r['total_completion_tokens']),
    }));
  }

  /** A project's usage in [from, to), grouped by user, API key and model (LLMariner `GET /v1/api_usages`). */
  async summaries(tenantId: string, projectId: string, from: Date | null, to: Date | null): Promise<UsageSummaryRow[]> {
    const query = this.knex
      .withSchema(SCHEMA)
      .table('usage_records')
      .where({ tenant_id: tenantId, project_id: projectId })
      .select('user_id', 'api_key_id', 'model_id')
      .select(this.knex.raw('count(*) as total_requests'))
      .select(this.knex.raw('count(*) filter (where status_code >= 400) as failed_requests'))
      .select(this.knex.raw('avg(latency_ms) as avg_latency_ms'))
      .select(this.knex.raw('avg(time_to_first_token_ms) as avg_time_to_first_token_ms'))
      .select(this.knex.raw('coalesce(sum(prompt_tokens), 0) as total_prompt_tokens'))
      .select(this.knex.raw('coalesce(sum(completion_tokens), 0) as total_completion_tokens'))
      .groupBy('user_id', 'api_key_id', 'model_id')
      .orderBy(['user_id', 'api_key_id', 'model_id']);
    if (from) query.where('created_at', '>=', from);
    if (to) query.where('created_at', '<', to);
    const rows = (await query) as Record<string, unknown>[];
    return rows.map((r) => ({
      user_id: String(r['user_id']),
      api_key_id: (r['api_key_id'] as string | null) ?? null,
      model_id: String(r['model_id']),
      total_requests: toCount(r['total_requests']),
      failed_requests: toCount(r['failed_requests']),
      avg_latency_ms: Number(r['avg_latency_ms'] ?? 0),
      avg_time_to_first_token_ms: r['avg_time_to_first_token_ms'] === null ? null : Number(r['avg_time_to_first_token_ms']),
      total_prompt_tokens: toCount(r['total_prompt_tokens']),
      total_completion_tokens: toCount(r['total_completion_tokens']),
    }));
  }
}
