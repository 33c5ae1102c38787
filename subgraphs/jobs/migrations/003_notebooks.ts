import type { Migration } from '../../../lib/db.js';

/**
 * Notebooks (LLMariner §4c) share the jobs' placement, dispatch and agent protocol: rows of kind
 * `notebook` with their name, what they run, when they were stopped, and their secrets (encrypted).
 */
export const notebooks: Migration = {
  id: '003_notebooks',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('jobs', (t) => {
      t.text('name');
      t.jsonb('notebook');
      t.jsonb('secrets');
      t.timestamp('stopped_at', { useTz: true });
    });
    await knex.raw(`create unique index jobs_notebook_name on ??.jobs (tenant_id, project_id, name) where kind = 'notebook'`, [schema]);
  },
};
