import type { Migration } from '../../../lib/db.js';

/**
 * Cluster telemetry as a time series (subgraphs/clusters/telemetry.ts): one row per cluster and change,
 * holding what its agent reported from `started_at` until `last_seen_at`. An unchanged report moves
 * `last_seen_at`; a changed one starts a row, at most one a minute (within the minute it replaces the
 * row's sample). The retention cleaner deletes by `last_seen_at`.
 */
export const telemetry: Migration = {
  id: '003_telemetry',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('telemetry', (t) => {
      t.bigIncrements('id');
      t.text('cluster_id').notNullable().references('id').inTable(`${schema}.clusters`).onDelete('CASCADE');
      t.timestamp('started_at', { useTz: true }).notNullable();
      t.timestamp('last_seen_at', { useTz: true }).notNullable();
      // SHA-256 of the sample: an unchanged report is told by it without reading the sample back.
      t.text('digest').notNullable();
      t.jsonb('sample').notNullable();
      t.index(['cluster_id', 'started_at']);
      t.index(['last_seen_at']);
    });
  },
};
