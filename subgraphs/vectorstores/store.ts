import { toCount, type Knex } from '../../lib/db.js';
import type { Identity } from '../../lib/identity.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';
import type { Metric } from './vectorIndex/types.js';

export const SCHEMA = 'vectorstores';

export type FileStatusValue = 'IN_PROGRESS' | 'COMPLETED' | 'FAILED' | 'CANCELLED';
export type FileErrorCode = 'SERVER_ERROR' | 'UNSUPPORTED_FILE' | 'INVALID_FILE';

export interface VectorStoreRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  name: string;
  embedding_model: string;
  metric: Metric;
  dimension: number | null;
  metadata: Record<string, string>;
  expires_after_days: number | null;
  last_active_at: Date;
  created_at: Date;
}

export interface VectorStoreFileRow {
  vector_store_id: string;
  file_id: string;
  filename: string;
  object_key: string;
  status: FileStatusValue;
  last_error_code: FileErrorCode | null;
  last_error_message: string | null;
  /** bigint: a string on pg, normalised to a number by the store. */
  usage_bytes: number;
  chunk_count: number;
  max_chunk_size_tokens: number;
  chunk_overlap_tokens: number;
  attributes: Record<string, string | number | boolean> | null;
  batch_id: string | null;
  ingest_identity: Identity;
  lease_owner: string | null;
  lease_until: Date | null;
  attempts: number;
  created_at: Date;
}

export interface BatchRow {
  id: string;
  vector_store_id: string;
  cancelled: boolean;
  created_at: Date;
}

export interface FileCounts {
  inProgress: number;
  completed: number;
  failed: number;
  cancelled: number;
  total: number;
}

/** The stores of one project (lib/identity's ProjectScope fits). */
export type ProjectScope = Pick<import('../../lib/identity.js').ProjectScope, 'tenantId' | 'organizationId' | 'projectId'>;

function normaliseFile(row: VectorStoreFileRow): VectorStoreFileRow {
  return { ...row, usage_bytes: Number(row.usage_bytes) };
}

const COUNT_COLUMNS = `count(*) filter (where status = 'IN_PROGRESS') as in_progress,
  count(*) filter (where status = 'COMPLETED') as completed,
  count(*) filter (where status = 'FAILED') as failed,
  count(*) filter (where status = 'CANCELLED') as cancelled,
  count(*) as total`;

function countsOf(row: Record<string, unknown> | undefined): FileCounts {
  return {
    inProgress: toCount(row?.['in_progress']),
    completed: toCount(row?.['completed']),
    failed: toCount(row?.['failed']),
    cancelled: toCount(row?.['cancelled']),
    total: toCount(row?.['total']),
  };
}

/** All SQL of the vectorstores subgraph. Every user-facing read is scoped to a project. */
export class VectorStoreStore {
  constructor(private readonly knex: Knex) {}

  private t(table: string): Knex.QueryBuilder {
    return this.knex.withSchema(SCHEMA).table(table);
  }

  // Stores

  async insertStore(row: Omit<VectorStoreRow, 'created_at' | 'last_active_at' | 'dimension'>): Promise<VectorStoreRow> {
    const [created] = await this.t('vector_stores')
      .insert({ ...row, metadata: JSON.stringify(row.metadata) })
      .returning('*');
    return created as VectorStoreRow;
  }

  async store(scope: ProjectScope, id: string): Promise<VectorStoreRow | undefined> {
    return this.t('vector_stores').where({ id, project_id: scope.projectId, tenant_id: scope.tenantId }).first();
  }

  async storeByName(scope: ProjectScope, name: string): Promise<VectorStoreRow | undefined> {
    return this.t('vector_stores').where({ name, project_id: scope.projectId, tenant_id: scope.tenantId }).first();
  }

  /** For the ingestion worker: a store by id alone (the file row it works on names it). */
  async storeById(id: string): Promise<VectorStoreRow | undefined> {
    return this.t('vector_stores').where({ id }).first();
  }

  async listStores(scope: ProjectScope, page: PageArgs): Promise<Page<VectorStoreRow>> {
    return paginate<VectorStoreRow>(
      () => this.t('vector_stores').where({ 'vector_stores.project_id': scope.projectId, 'vector_stores.tenant_id': scope.tenantId }),
      'vector_stores',
      page,
    );
  }

  async updateStore(
    scope: ProjectScope,
    id: string,
    patch: { name?: string; metadata?: Record<string, string>; expires_after_days?: number | null },
  ): Promise<VectorStoreRow | undefined> {
    const changes: Record<string, unknown> = { last_active_at: this.knex.fn.now() };
    if (patch.name !== undefined) changes['name'] = patch.name;
    if (patch.metadata !== undefined) changes['metadata'] = JSON.stringify(patch.metadata);
    if (patch.expires_after_days !== undefined) changes['expires_after_days'] = patch.expires_after_days;
    const [row] = await this.t('vector_stores').where({ id, project_id: scope.projectId, tenant_id: scope.tenantId }).update(changes).returning('*');
    return row as VectorStoreRow | undefined;
  }

  async touchStore(id: string): Promise<void> {
    await this.t('vector_stores').where({ id }).update({ last_active_at: this.knex.fn.now() });
  }

  /** Sets the store's dimension the first time; returns the dimension in force. */
  async settleDimension(id: string, dimension: number): Promise<number | undefined> {
    await this.t('vector_stores').where({ id }).whereNull('dimension').update({ dimension });
    const row = await this.t('vector_stores').where({ id }).first('dimension');
    return row?.dimension ?? undefined;
  }

  async deleteStore(scope: ProjectScope, id: string): Promise<VectorStoreRow | undefined> {
    const [row] = await this.t('vector_stores').where({ id, project_id: scope.projectId, tenant_id: scope.tenantId }).delete().returning('*');
    return row as VectorStoreRow | undefined;
  }

  async fileCounts(storeIds: readonly string[]): Promise<Map<string, FileCounts & { usageBytes: number }>> {
    const out = new Map<string, FileCounts & { usageBytes: number }>();
    if (!storeIds.length) return out;
    const rows = await this.t('vector_store_files')
      .whereIn('vector_store_id', storeIds as string[])
      .groupBy('vector_store_id')
      .select(
        'vector_store_id',
        this.knex.raw(COUNT_COLUMNS),
        this.knex.raw(`coalesce(sum(usage_bytes) filter (where status = 'COMPLETED'), 0) as usage_bytes`),
      );
    for (const row of rows as Record<string, unknown>[]) {
      out.set(String(row['vector_store_id']), { ...countsOf(row), usageBytes: Number(row['usage_bytes'] ?? 0) });
    }
    return out;
  }

  // Files

  /**
   * Adds files to a store for ingestion (IN_PROGRESS); a file already there is re-ingested from
   * scratch (its old vectors are replaced when the worker takes it).
   */
  async upsertFiles(
    rows: Omit<
      VectorStoreFileRow,
      'created_at' | 'status' | 'last_error_code' | 'last_error_message' | 'usage_bytes' | 'chunk_count' | 'lease_owner' | 'lease_until' | 'attempts'
    >[],
  ): Promise<VectorStoreFileRow[]> {
    if (!rows.length) return [];
    const values = rows.map((r) => ({
      ...r,
      attributes: r.attributes === null ? null : JSON.stringify(r.attributes),
      ingest_identity: JSON.stringify(r.ingest_identity),
      status: 'IN_PROGRESS',
    }));
    const created = await this.t('vector_store_files')
      .insert(values)
      .onConflict(['vector_store_id', 'file_id'])
      .merge({
        status: 'IN_PROGRESS',
        last_error_code: null,
        last_error_message: null,
        usage_bytes: 0,
        chunk_count: 0,
        lease_owner: null,
        lease_until: null,
        attempts: 0,
        filename: this.knex.raw('excluded.filename'),
        object_key: this.knex.raw('excluded.object_key'),
        max_chunk_size_tokens: this.knex.raw('excluded.max_chunk_size_tokens'),
        chunk_overlap_tokens: this.knex.raw('excluded.chunk_overlap_tokens'),
        attributes: this.knex.raw('excluded.attributes'),
        batch_id: this.knex.raw('excluded.batch_id'),
        ingest_identity: this.knex.raw('excluded.ingest_identity'),
      })
      .returning('*');
    return (created as VectorStoreFileRow[]).map(normaliseFile);
  }

  async file(storeId: string, fileId: string): Promise<VectorStoreFileRow | undefined> {
    const row = await this.t('vector_store_files').where({ vector_store_id: storeId, file_id: fileId }).first();
    return row ? normaliseFile(row) : undefined;
  }

  async filesByIds(storeId: string, fileIds: readonly string[]): Promise<VectorStoreFileRow[]> {
    if (!fileIds.length) return [];
    return (
      (await this.t('vector_store_files')
        .where({ vector_store_id: storeId })
        .whereIn('file_id', fileIds as string[])) as VectorStoreFileRow[]
    ).map(normaliseFile);
  }

  /** Completed files of a store with attributes, for resolving an attribute filter. */
  async completedFiles(storeId: string): Promise<Pick<VectorStoreFileRow, 'file_id' | 'attributes'>[]> {
    return this.t('vector_store_files').where({ vector_store_id: storeId, status: 'COMPLETED' }).select('file_id', 'attributes');
  }

  async listFiles(storeId: string, filter: { status?: FileStatusValue | null; batchId?: string }, page: PageArgs): Promise<Page<VectorStoreFileRow>> {
    const result = await paginate<VectorStoreFileRow>(
      () => {
        const q = this.t('vector_store_files').where({ 'vector_store_files.vector_store_id': storeId });
        if (filter.status) q.where('vector_store_files.status', filter.status);
        if (filter.batchId) q.where('vector_store_files.batch_id', filter.batchId);
        return q;
      },
      'vector_store_files',
      page,
      'file_id',
    );
    return { ...result, items: result.items.map(normaliseFile) };
  }

  async updateAttributes(
    storeId: string,
    fileId: string,
    attributes: Record<string, string | number | boolean> | null,
  ): Promise<VectorStoreFileRow | undefined> {
    const [row] = await this.t('vector_store_files')
      .where({ vector_store_id: storeId, file_id: fileId })
      .update({ attributes: attributes === null ? null : JSON.stringify(attributes) })
      .returning('*');
    return row ? normaliseFile(row as VectorStoreFileRow) : undefined;
  }

  async deleteFile(storeId: string, fileId: string): Promise<VectorStoreFileRow | undefined> {
    const [row] = await this.t('vector_store_files').where({ vector_store_id: storeId, file_id: fileId }).delete().returning('*');
    return row ? normaliseFile(row as VectorStoreFileRow) : undefined;
  }

  // Batches

  async insertBatch(row: Omit<BatchRow, 'created_at' | 'cancelled'>): Promise<BatchRow> {
    const [created] = await this.t('vector_store_file_batches').insert(row).returning('*');
    return created as BatchRow;
  }

  async batch(storeId: string, id: string): Promise<BatchRow | undefined> {
    return this.t('vector_store_file_batches').where({ id, vector_store_id: storeId }).first();
  }

  async batchCounts(batchId: string): Promise<FileCounts> {
    return countsOf(await this.t('vector_store_files').where({ batch_id: batchId }).first(this.knex.raw(COUNT_COLUMNS)));
  }

  /** Marks the batch cancelled and its files still waiting or running CANCELLED, in one transaction. */
  async cancelBatch(storeId: string, id: string): Promise<BatchRow | undefined> {
    return this.knex.transaction(async (trx) => {
      const [row] = await trx
        .withSchema(SCHEMA)
        .table('vector_store_file_batches')
        .where({ id, vector_store_id: storeId })
        .update({ cancelled: true })
        .returning('*');
      if (!row) return undefined;
      await trx
        .withSchema(SCHEMA)
        .table('vector_store_files')
        .where({ batch_id: id, vector_store_id: storeId, status: 'IN_PROGRESS' })
        .update({ status: 'CANCELLED', lease_owner: null, lease_until: null });
      return row as BatchRow;
    });
  }

  // Ingestion (the worker)

  /**
   * Takes one file to ingest: IN_PROGRESS with no live lease (never taken, or its worker stopped
   * renewing: crashed). SKIP LOCKED lets replicas claim different files at once.
   */
  async claimFile(owner: string, leaseSeconds: number): Promise<VectorStoreFileRow | undefined> {
    const result = await this.knex.raw(
      `update ??.vector_store_files f set lease_owner = ?, lease_until = now() + make_interval(secs => ?), attempts = f.attempts + 1
       where (f.vector_store_id, f.file_id) = (
         select c.vector_store_id, c.file_id from ??.vector_store_files c
         where c.status = 'IN_PROGRESS' and (c.lease_until is null or c.lease_until < now())
         order by c.created_at limit 1 for update skip locked)
       returning f.*`,
      [SCHEMA, owner, leaseSeconds, SCHEMA],
    );
    const row = result.rows[0] as VectorStoreFileRow | undefined;
    return row ? normaliseFile(row) : undefined;
  }

  /** Extends the lease; false when the file is no longer this worker's (cancelled, deleted, taken over). */
  async renewLease(storeId: string, fileId: string, owner: string, leaseSeconds: number): Promise<boolean> {
    const updated = await this.t('vector_store_files')
      .where({ vector_store_id: storeId, file_id: fileId, lease_owner: owner, status: 'IN_PROGRESS' })
      .update({ lease_until: this.knex.raw('now() + make_interval(secs => ?)', [leaseSeconds]) });
    return toCount(updated) > 0;
  }

  /** Ends an ingestion; false when the file was no longer this worker's (nothing changed then). */
  async finishFile(
    storeId: string,
    fileId: string,
    owner: string,
    outcome: { status: 'COMPLETED'; usageBytes: number; chunkCount: number } | { status: 'FAILED'; code: FileErrorCode; message: string },
  ): Promise<boolean> {
    const changes =
      outcome.status === 'COMPLETED'
        ? { status: 'COMPLETED', usage_bytes: outcome.usageBytes, chunk_count: outcome.chunkCount, last_error_code: null, last_error_message: null }
        : { status: 'FAILED', last_error_code: outcome.code, last_error_message: outcome.message.slice(0, 2000), usage_bytes: 0, chunk_count: 0 };
    const updated = await this.t('vector_store_files')
      .where({ vector_store_id: storeId, file_id: fileId, lease_owner: owner, status: 'IN_PROGRESS' })
      .update({ ...changes, lease_owner: null, lease_until: null });
    return toCount(updated) > 0;
  }
}
