import type { Migration } from '../../../lib/db.js';

/** Organizations, projects, users, memberships and API keys (LLMariner user manager §6). */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    const s = knex.schema.withSchema(schema);
    await s.createTable('organizations', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('title').notNullable();
      t.boolean('is_default').notNullable().defaultTo(false);
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.unique(['tenant_id', 'title']);
    });
    await knex.schema.withSchema(schema).createTable('projects', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable().references('id').inTable(`${schema}.organizations`).onDelete('CASCADE');
      t.text('title').notNullable();
      t.boolean('is_default').notNullable().defaultTo(false);
      t.jsonb('assignments').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.unique(['organization_id', 'title']);
    });
    await knex.schema.withSchema(schema).createTable('users', (t) => {
      t.text('id').primary();
      t.text('internal_id').notNullable().unique();
      t.text('tenant_id').notNullable();
      t.boolean('is_service_account').notNullable().defaultTo(false);
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    });
    await knex.schema.withSchema(schema).createTable('organization_members', (t) => {
      t.text('organization_id').notNullable().references('id').inTable(`${schema}.organizations`).onDelete('CASCADE');
      t.text('user_id').notNullable().references('id').inTable(`${schema}.users`).onDelete('CASCADE');
      t.text('role').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['organization_id', 'user_id']);
      t.index(['user_id']);
    });
    await knex.schema.withSchema(schema).createTable('project_members', (t) => {
      t.text('project_id').notNullable().references('id').inTable(`${schema}.projects`).onDelete('CASCADE');
      t.text('user_id').notNullable().references('id').inTable(`${schema}.users`).onDelete('CASCADE');
      t.text('role').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['project_id', 'user_id']);
      t.index(['user_id']);
    });
    await knex.schema.withSchema(schema).createTable('api_keys', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('name').notNullable();
      // SHA-256 of the secret: secrets are 48 random characters, so a fast hash is enough; the
      // secret itself is never stored.
      t.text('secret_hash').notNullable().unique();
      t.text('secret_hint').notNullable();
      t.text('user_id').notNullable().references('id').inTable(`${schema}.users`).onDelete('CASCADE');
      t.text('organization_id').notNullable().references('id').inTable(`${schema}.organizations`).onDelete('CASCADE');
      t.text('project_id').notNullable().references('id').inTable(`${schema}.projects`).onDelete('CASCADE');
      t.boolean('excluded_from_rate_limiting').notNullable().defaultTo(false);
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.index(['project_id']);
    });
  },
};
