import type { Migration } from '../../../lib/db.js';

interface StoredAssignment {
  clusterId: string | null;
  namespace: string;
}

/**
 * A namespace belongs to one project of a tenant, on every cluster (issue 14): before this, an
 * organization owner could assign another organization's namespace to a project of theirs and read its
 * pods through /v1/sessions. `namespace_claims` holds one row per (tenant, namespace name); the unique
 * key is what keeps two concurrent creates from both winning.
 *
 * Backfill: projects are visited oldest first and each claims the namespaces of its assignments. Where
 * an existing project names a namespace an older project already claimed, the older one keeps it: the
 * newer project's assignments of that namespace are removed (it must no longer reach another project's
 * pods) and written to `namespace_claim_conflicts`, which the users component reports once in its log at
 * start. The migration never fails on such data.
 */
export const namespaceClaims: Migration = {
  id: '002_namespace_claims',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('namespace_claims', (t) => {
      t.text('tenant_id').notNullable();
      t.text('namespace').notNullable();
      t.text('project_id').notNullable().references('id').inTable(`${schema}.projects`).onDelete('CASCADE');
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['tenant_id', 'namespace']);
      t.index(['project_id']);
    });
    await knex.schema.withSchema(schema).createTable('namespace_claim_conflicts', (t) => {
      t.increments('id').primary();
      t.text('tenant_id').notNullable();
      t.text('namespace').notNullable();
      /** The newer project, which lost these assignments. */
      t.text('project_id').notNullable();
      /** The older project, which keeps the namespace. */
      t.text('claimed_by_project_id').notNullable();
      t.jsonb('removed_assignments').notNullable();
      t.timestamp('recorded_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      /** When the users component logged it (once). */
      t.timestamp('reported_at', { useTz: true });
    });

    const projects = (await knex
      .withSchema(schema)
      .table('projects')
      .orderBy([{ column: 'created_at' }, { column: 'id' }])
      .select('id', 'tenant_id', 'assignments')) as { id: string; tenant_id: string; assignments: StoredAssignment[] }[];
    const owners = new Map<string, string>();
    for (const project of projects) {
      const kept: StoredAssignment[] = [];
      const lost = new Map<string, StoredAssignment[]>();
      for (const assignment of project.assignments) {
        const key = `${project.tenant_id}/${assignment.namespace}`;
        const owner = owners.get(key) ?? project.id;
        owners.set(key, owner);
        if (owner === project.id) kept.push(assignment);
        else lost.set(assignment.namespace, [...(lost.get(assignment.namespace) ?? []), assignment]);
      }
      const claimed = [...new Set(kept.map((a) => a.namespace))];
      if (claimed.length) {
        await knex
          .withSchema(schema)
          .table('namespace_claims')
          .insert(claimed.map((namespace) => ({ tenant_id: project.tenant_id, namespace, project_id: project.id })));
      }
      if (!lost.size) continue;
      for (const [namespace, removed] of lost) {
        await knex
          .withSchema(schema)
          .table('namespace_claim_conflicts')
          .insert({
            tenant_id: project.tenant_id,
            namespace,
            project_id: project.id,
            claimed_by_project_id: owners.get(`${project.tenant_id}/${namespace}`),
            removed_assignments: JSON.stringify(removed),
          });
      }
      // Possibly none left: the project then cannot run workloads until an owner assigns a namespace of
      // its own (the jobs subgraph says so), rather than keep reaching another project's.
      await knex
        .withSchema(schema)
        .table('projects')
        .where({ id: project.id })
        .update({ assignments: JSON.stringify(kept) });
    }
  },
};
