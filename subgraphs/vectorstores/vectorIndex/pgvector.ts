import type { Knex } from '../../../lib/db.js';
import { scoreOf, VectorIndexUnavailableError, type ChunkVector, type Metric, type VectorHit, type VectorIndex, type VectorSearchOptions } from './types.js';

/** The Postgres schema holding one table per vector store. */
export const PGVECTOR_SCHEMA = 'vector_index';

/** Rows per INSERT: keeps statements well under Postgres' 65,535 bind parameters. */
const INSERT_BATCH = 500;

/** HNSW candidates per search (pgvector's default is 40); more recall for top-k up to 100. */
const EF_SEARCH = 200;

const OPS: Record<Metric, { operator: string; opclass: string }> = {
  cosine: { operator: '<=>', opclass: 'vector_cosine_ops' },
  l2: { operator: '<->', opclass: 'vector_l2_ops' },
};

/** pgvector's text input for a vector: `[1,2,3]`. */
function literal(vector: readonly number[]): string {
  for (const x of vector) if (!Number.isFinite(x)) throw new Error('an embedding holds a value that is not a finite number');
  return `[${vector.join(',')}]`;
}

/** A store's table; store ids are `vs_` + letters and digits (lib/ids), so the name is safe and unique. */
function tableOf(storeId: string): string {
  if (!/^vs_[A-Za-z0-9]{1,60}$/.test(storeId)) throw new Error(`not a vector store id: ${storeId}`);
  return storeId;
}

/**
 * pgvector: the vectors in the platform's own Postgres (embedded PGlite ships the extension), one
 * table per store with an HNSW index for its metric. `required`: refuse when the database lacks the
 * extension (MARINER_VECTOR_INDEX=pgvector); otherwise return null and let the caller go on without.
 */
export async function createPgvectorIndex(knex: Knex, options: { required: boolean }): Promise<VectorIndex | null> {
  const available = await knex.raw(`select exists (select 1 from pg_available_extensions where name = 'vector') as ok`);
  if (!available.rows[0]?.ok) {
    if (!options.required) return null;
    throw new VectorIndexUnavailableError(
      'MARINER_VECTOR_INDEX=pgvector, but this PostgreSQL server has no pgvector extension: install pgvector (https://github.com/pgvector/pgvector) or set MARINER_VECTOR_INDEX=milvus',
    );
  }
  try {
    await knex.transaction(async (trx) => {
      await trx.raw('select pg_advisory_xact_lock(hashtext(?))', ['mariner-pgvector-setup']);
      await trx.raw('create extension if not exists vector');
      await trx.raw('create schema if not exists ??', [PGVECTOR_SCHEMA]);
    });
  } catch (error) {
    throw new VectorIndexUnavailableError(
      `pgvector: cannot enable the extension (${(error as Error).message}); ask a superuser to run CREATE EXTENSION vector`,
    );
  }
  return new PgvectorIndex(knex);
}

class PgvectorIndex implements VectorIndex {
  readonly kind = 'pgvector' as const;

  constructor(private readonly knex: Knex) {}

  async createCollection(storeId: string, dimension: number, metric: Metric): Promise<void> {
    if (!Number.isInteger(dimension) || dimension < 1 || dimension > 16_000) throw new Error(`pgvector: unsupported dimension ${dimension}`);
    const table = tableOf(storeId);
    // Concurrent ingestions of one store race to create its table: serialise them.
    await this.knex.transaction(async (trx) => {
      await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`mariner-pgvector-${table}`]);
      await trx.raw(
        `create table if not exists ??.?? (id bigserial primary key, file_id text not null, chunk_index integer not null, text text not null, embedding vector(${dimension}) not null)`,
        [PGVECTOR_SCHEMA, table],
      );
      await trx.raw('create index if not exists ?? on ??.?? (file_id)', [`${table}_file`, PGVECTOR_SCHEMA, table]);
      await trx.raw(`create index if not exists ?? on ??.?? using hnsw (embedding ${OPS[metric].opclass})`, [`${table}_hnsw`, PGVECTOR_SCHEMA, table]);
    });
  }

  async insert(storeId: string, _metric: Metric, chunks: readonly ChunkVector[]): Promise<void> {
    const table = tableOf(storeId);
    for (let i = 0; i < chunks.length; i += INSERT_BATCH) {
      const rows = chunks.slice(i, i + INSERT_BATCH).map((c) => ({ file_id: c.fileId, chunk_index: c.chunkIndex, text: c.text, embedding: literal(c.vector) }));
      await this.knex.withSchema(PGVECTOR_SCHEMA).table(table).insert(rows);
    }
  }

  private async exists(table: string): Promise<boolean> {
    const result = await this.knex.raw('select to_regclass(?) is not null as ok', [`"${PGVECTOR_SCHEMA}"."${table}"`]);
    return Boolean(result.rows[0]?.ok);
  }

  async deleteFile(storeId: string, fileId: string): Promise<void> {
    const table = tableOf(storeId);
    if (!(await this.exists(table))) return;
    await this.knex.withSchema(PGVECTOR_SCHEMA).table(table).where({ file_id: fileId }).delete();
  }

  async dropCollection(storeId: string): Promise<void> {
    await this.knex.raw('drop table if exists ??.??', [PGVECTOR_SCHEMA, tableOf(storeId)]);
  }

  async search(storeId: string, metric: Metric, vector: readonly number[], options: VectorSearchOptions): Promise<VectorHit[]> {
    const table = tableOf(storeId);
    if (options.fileIds && options.fileIds.length === 0) return [];
    if (!(await this.exists(table))) return [];
    const { operator } = OPS[metric];
    const rows = await this.knex.transaction(async (trx) => {
      // SET LOCAL: only this search. Iterative scans keep filtered searches from coming back short.
      await trx.raw(`set local hnsw.ef_search = ${Math.max(EF_SEARCH, options.topK)}`);
      await trx.raw('set local hnsw.iterative_scan = relaxed_order');
      const query = trx
        .withSchema(PGVECTOR_SCHEMA)
        .from(table)
        .select('file_id', 'chunk_index', 'text', trx.raw(`embedding ${operator} ?::vector as distance`, [literal(vector)]))
        .orderBy('distance')
        .limit(options.topK);
      if (options.fileIds) query.whereIn('file_id', options.fileIds as string[]);
      return (await query) as { file_id: string; chunk_index: number; text: string; distance: number }[];
    });
    // relaxed_order may return neighbours slightly out of order: put them back in order.
    return rows
      .map((r) => ({ fileId: r.file_id, chunkIndex: r.chunk_index, text: r.text, score: scoreOf(metric, Number(r.distance)) }))
      .sort((a, b) => b.score - a.score);
  }

  async close(): Promise<void> {
    // The knex instance is the platform's: closed with the database.
  }
}
