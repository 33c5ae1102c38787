import type { VectorStoresConfig } from '../../../lib/config.js';
import type { Database } from '../../../lib/db.js';
import type { Logger } from '../../../lib/logging.js';
import { createPgvectorIndex } from './pgvector.js';
import type { MilvusOptions } from './milvus.js';
import type { VectorIndex } from './types.js';

export { createPgvectorIndex, PGVECTOR_SCHEMA } from './pgvector.js';
export type { MilvusOptions } from './milvus.js';

/** The Milvus index; its SDK (gRPC, protobuf) is loaded only when Milvus is configured. */
export async function createMilvusIndex(options: MilvusOptions): Promise<VectorIndex> {
  return (await import('./milvus.js')).createMilvusIndex(options);
}
export * from './types.js';

/**
 * The vector index the configuration asks for (MARINER_VECTOR_INDEX). `auto` takes pgvector where
 * the database has it (always on embedded PGlite) and otherwise runs without one, saying so: the
 * rest of the platform stays usable on a plain PostgreSQL, and vector stores answer
 * FAILED_PRECONDITION with what to install.
 */
export async function openVectorIndex(config: VectorStoresConfig, db: Database, logger: Logger): Promise<VectorIndex | null> {
  if (config.index === 'milvus') {
    return createMilvusIndex({ address: config.milvus.address!, token: config.milvus.token, database: config.milvus.database, ssl: config.milvus.ssl });
  }
  const index = await createPgvectorIndex(db.knex, { required: config.index === 'pgvector' });
  if (!index) {
    logger.warn(
      'vector stores: this PostgreSQL has no pgvector extension; vector stores are unavailable (install pgvector or set MARINER_VECTOR_INDEX=milvus)',
    );
  }
  return index;
}
