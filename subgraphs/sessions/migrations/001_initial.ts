import type { Migration } from '../../../lib/db.js';

/**
 * Which sessions replica holds which cluster's agent tunnels (peers.ts): one row per cluster and
 * replica, written when its tunnels change and refreshed on each heartbeat; rows not refreshed for a
 * few heartbeats belong to a replica that died and are ignored, then deleted.
 */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('cluster_tunnels', (t) => {
      t.text('cluster_id').notNullable();
      t.text('replica_id').notNullable();
      t.text('tenant_id').notNullable();
      t.text('cluster_name').notNullable();
      // host:port of the replica's peer endpoint (h2c).
      t.text('peer_address').notNullable();
      t.integer('tunnels').notNullable();
      t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['cluster_id', 'replica_id']);
      t.index(['updated_at']);
    });
  },
};
