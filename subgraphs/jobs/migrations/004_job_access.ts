import type { Migration } from '../../../lib/db.js';

/**
 * Who may see a job, and for whom it still acts (README "Security model", issue 14):
 * - `dispatched_cluster_id`: the cluster the job was last sent to. An agent sees and reports on a job
 *   only when it is both placed on and sent to its cluster (a job placed there but not sent yet, or
 *   moved away, is not its business). Jobs an agent accepted before this migration count as sent to
 *   the cluster they are on; one waiting to be (re)created is marked when it is sent.
 * - `creator_revoked_at`: when the job stopped acting for its creator because the API key that created
 *   it was deleted (a notebook's own API key is deleted then, once).
 * The job's organization was kept from the start (`organization_id`): placement and dispatch use it.
 */
export const jobAccess: Migration = {
  id: '004_job_access',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('jobs', (t) => {
      t.text('dispatched_cluster_id');
      t.timestamp('creator_revoked_at', { useTz: true });
    });
    await knex.raw(
      `update ??.jobs set dispatched_cluster_id = cluster_id where cluster_id is not null and attempts > 0 and pending_action is distinct from 'creating'`,
      [schema],
    );
  },
};
