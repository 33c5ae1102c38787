import type { Knex } from 'knex';
import type { AuditAction, AuditArgument, AuditEventRecord } from '../../lib/auditEventRecord.js';
import { randomString } from '../../lib/ids.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';

export const SCHEMA = 'audit';
const TABLE = 'audit_events';

export type { AuditAction, AuditArgument, AuditEventRecord };

export interface AuditEventRow {
  id: string;
  created_at: Date | string;
  request_id: string;
  user_id: string | null;
  api_key_id: string | null;
  organization_id: string | null;
  project_id: string | null;
  client_address: string | null;
  kind: string;
  operation_name: string | null;
  actions: AuditAction[] | string;
  outcome: string;
}

export interface AuditEventQuery {
  organizationId: string;
  projectId?: string | null;
  userId?: string | null;
  apiKeyId?: string | null;
  field?: string | null;
  requestId?: string | null;
  since?: string | null;
  until?: string | null;
}

/** Audit ids: `audit_` and random characters (an id, not a sequence: replicas write concurrently). */
export function newAuditEventId(): string {
  return `audit_${randomString(24)}`;
}

/**
 * All SQL of the audit log. Append and read only: there is no update, and `deleteOlderThan` (the
 * retention cleaner) is the only delete.
 */
export class AuditStore {
  constructor(private readonly knex: Knex) {}

  private table(): Knex.QueryBuilder {
    return this.knex.withSchema(SCHEMA).table(TABLE);
  }

  async append(events: readonly AuditEventRecord[]): Promise<number> {
    if (events.length === 0) return 0;
    const rows = events.map((e) => ({
      id: newAuditEventId(),
      created_at: e.occurredAt,
      request_id: e.requestId,
      user_id: e.userId,
      api_key_id: e.apiKeyId,
      organization_id: e.organizationId,
      project_id: e.projectId,
      client_address: e.clientAddress,
      kind: e.kind,
      operation_name: e.operationName,
      actions: JSON.stringify(e.actions),
      outcome: e.outcome,
    }));
    await this.table().insert(rows);
    return rows.length;
  }

  /** One organization's entries, newest first. */
  async list(query: AuditEventQuery, page: PageArgs): Promise<Page<AuditEventRow>> {
    const base = () => {
      const q = this.table().select(`${TABLE}.*`).where(`${TABLE}.organization_id`, query.organizationId);
      if (query.projectId) q.where(`${TABLE}.project_id`, query.projectId);
      if (query.userId) q.where(`${TABLE}.user_id`, query.userId);
      if (query.apiKeyId) q.where(`${TABLE}.api_key_id`, query.apiKeyId);
      if (query.requestId) q.where(`${TABLE}.request_id`, query.requestId);
      if (query.since) q.where(`${TABLE}.created_at`, '>=', query.since);
      if (query.until) q.where(`${TABLE}.created_at`, '<', query.until);
      if (query.field) q.whereRaw(`${TABLE}.actions @> ?::jsonb`, [JSON.stringify([{ field: query.field }])]);
      return q;
    };
    return paginate<AuditEventRow>(base, TABLE, { ...page, order: 'desc' });
  }

  /** The retention cleaner: removes entries older than `cutoff`; answers how many. */
  async deleteOlderThan(cutoff: Date): Promise<number> {
    // `returning`: knex answers a delete's count on pg but not on PGlite (knex-pglite).
    const removed = (await this.table().where('created_at', '<', cutoff.toISOString()).delete().returning('id')) as unknown[];
    return removed.length;
  }
}
