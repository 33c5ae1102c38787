/**
 * lib/db.ts's migrations, on the real PostgreSQL and on PGlite: pending ones run once, in order, recorded;
 * a start with nothing pending runs none; one added later runs on the next start. And the embedded
 * database's buffer cache is the small one lib/db.ts sets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database, type Migration } from '../lib/db.js';
import { createTestDatabase } from './support/platform.js';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function postgres(): Promise<Database> {
  const database = await createTestDatabase();
  const db = await openDatabase({ databaseUrl: database.url, dataDir: tmpdir() });
  cleanups.push(async () => {
    await db.close();
    await database.drop();
  });
  return db;
}

async function pglite(): Promise<Database> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mariner-db-'));
  const db = await openDatabase({ dataDir: dir });
  cleanups.push(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return db;
}

describe.each([
  ['PostgreSQL', postgres],
  ['PGlite', pglite],
])('migrations on %s', (_name, open) => {
  it('run once each, in order; a start with none pending runs none; one added later runs on the next start', async () => {
    const db = await open();
    const ran: string[] = [];
    const migration = (id: string, sql: string): Migration => ({
      id,
      up: async (knex, schema) => {
        ran.push(id);
        await knex.raw(sql.replaceAll('$schema', schema));
      },
    });
    const first = [
      migration('001_items', 'create table $schema.items (id int primary key)'),
      migration('002_name', 'alter table $schema.items add column name text'),
    ];
    // The first start: neither the schema nor its record exists yet.
    await migrate(db.knex, 'testdb', first);
    expect(ran).toEqual(['001_items', '002_name']);
    await db.knex.withSchema('testdb').table('items').insert({ id: 1, name: 'kept' });

    await migrate(db.knex, 'testdb', first);
    expect(ran).toEqual(['001_items', '002_name']);

    await migrate(db.knex, 'testdb', [...first, migration('003_price', 'alter table $schema.items add column price int not null default 7')]);
    expect(ran).toEqual(['001_items', '002_name', '003_price']);
    expect(await db.knex.withSchema('testdb').table('items').select('id', 'name', 'price')).toEqual([{ id: 1, name: 'kept', price: 7 }]);
    const recorded = await db.knex.withSchema('testdb').table('mariner_migrations').orderBy('id').pluck('id');
    expect(recorded).toEqual(['001_items', '002_name', '003_price']);
  });
});

describe('the embedded database', () => {
  it('keeps a 16MB buffer cache, not Postgres’s 128MB default that was resident in its WebAssembly memory', async () => {
    const db = await pglite();
    const { rows } = (await db.knex.raw('show shared_buffers')) as { rows: Array<{ shared_buffers: string }> };
    expect(rows[0]!.shared_buffers).toBe('16MB');
  });
});
