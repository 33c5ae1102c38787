import type { Migration } from '../../../lib/db.js';

/**
 * Who a cluster works for (README "Security model"): an owning organization (null: a platform
 * cluster), and for platform clusters whether every organization may use it or only those granted.
 * Clusters registered before this stay platform clusters shared with every organization, as they
 * were. A name is unique among the clusters of one owner, so another organization's names do not
 * show through a conflict.
 */
export const clusterOwners: Migration = {
  id: '002_cluster_owners',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('clusters', (t) => {
      t.text('organization_id');
      t.boolean('shared_with_all_organizations').notNullable().defaultTo(true);
      t.jsonb('granted_organization_ids').notNullable().defaultTo(knex.raw(`'[]'::jsonb`));
      t.dropUnique(['tenant_id', 'name']);
    });
    await knex.raw(`create unique index clusters_owner_name_unique on ??.clusters (tenant_id, coalesce(organization_id, ''), name)`, [schema]);
  },
};
