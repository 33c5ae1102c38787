import type { Migration } from '../../../lib/db.js';

/**
 * Vector stores, their files and file batches (LLMariner §5, OpenAI vector store API). The vectors
 * themselves live in the vector index (pgvector tables or Milvus collections), not here.
 */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('vector_stores', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('name').notNullable();
      t.text('embedding_model').notNullable();
      t.text('metric').notNullable();
      // Known from the first embeddings; the index collection is created then.
      t.integer('dimension');
      t.jsonb('metadata').notNullable();
      t.integer('expires_after_days');
      t.timestamp('last_active_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      // LLMariner: a store's name is unique in its project (the rag tool finds stores by name).
      t.unique(['tenant_id', 'project_id', 'name']);
      t.index(['project_id', 'created_at']);
    });
    await knex.schema.withSchema(schema).createTable('vector_store_file_batches', (t) => {
      t.text('id').primary();
      t.text('vector_store_id').notNullable().references('id').inTable(`${schema}.vector_stores`).onDelete('CASCADE');
      t.boolean('cancelled').notNullable().defaultTo(false);
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    });
    await knex.schema.withSchema(schema).createTable('vector_store_files', (t) => {
      t.text('vector_store_id').notNullable().references('id').inTable(`${schema}.vector_stores`).onDelete('CASCADE');
      t.text('file_id').notNullable();
      t.text('filename').notNullable();
      t.text('object_key').notNullable();
      t.text('status').notNullable();
      t.text('last_error_code');
      t.text('last_error_message');
      t.bigInteger('usage_bytes').notNullable().defaultTo(0);
      t.integer('chunk_count').notNullable().defaultTo(0);
      t.integer('max_chunk_size_tokens').notNullable();
      t.integer('chunk_overlap_tokens').notNullable();
      t.jsonb('attributes');
      t.text('batch_id');
      // Who added the file: ingestion embeds as them (their project's models, their rights).
      t.jsonb('ingest_identity').notNullable();
      // Ingestion lease: a worker holds the file while it renews this; an expired lease is taken over.
      t.text('lease_owner');
      t.timestamp('lease_until', { useTz: true });
      t.integer('attempts').notNullable().defaultTo(0);
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['vector_store_id', 'file_id']);
      t.index(['status', 'lease_until']);
      t.index(['batch_id']);
    });
  },
};
