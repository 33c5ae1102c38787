import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { ensurePrivateDirSync } from './privateDir.js';

export type { Knex };

/**
 * One knex instance per process. On PGlite there is a single backend: every subgraph shares this one
 * connection (pool max 1) and keeps its tables in its own Postgres schema. Never await another query,
 * and never make a network call, while holding a transaction (DESIGN §5).
 */
export interface Database {
  knex: Knex;
  kind: 'postgres' | 'pglite';
  close(): Promise<void>;
}

/** The embedded database's buffer cache (Postgres's shared_buffers), in its WebAssembly memory. */
const PGLITE_SHARED_BUFFERS = '16MB';

/** Connections per process when the caller names no pool size (lib/config.ts MARINER_DB_POOL_SIZE). */
export const DEFAULT_POOL_SIZE = 10;

/**
 * Opens PostgreSQL (`databaseUrl`) with a pool of `poolSize` connections, else the embedded PGlite (one
 * connection, always). Each pod has its own pool: their sum across a deployment must stay under the
 * server's max_connections.
 */
export async function openDatabase(options: { databaseUrl?: string | undefined; dataDir: string; poolSize?: number | undefined }): Promise<Database> {
  if (options.databaseUrl) {
    const knex = knexFactory({ client: 'pg', connection: options.databaseUrl, pool: { min: 0, max: options.poolSize ?? DEFAULT_POOL_SIZE } });
    await knex.raw('select 1');
    return { knex, kind: 'postgres', close: () => knex.destroy() };
  }
  const dir = path.join(options.dataDir, 'pglite');
  // PGlite writes its files 0666: only a private folder keeps other local users out of them.
  ensurePrivateDirSync(dir);
  const { PGlite } = await import('@electric-sql/pglite');
  const { default: ClientPgLite } = await import('knex-pglite');
  // pgvector (0.8, HNSW) ships with PGlite as an extension: the embedded vector index (subgraphs/vectorstores).
  const { vector } = await import('@electric-sql/pglite-pgvector');
  // Postgres's default shared_buffers (128 MB) lived in the WebAssembly memory, every page of it
  // resident: about 120 MB of `mariner up`'s idle RSS. PGlite reads what is not in them from the data
  // dir's files, which the kernel's page cache keeps; an embedded platform's data is small. PGlite's own
  // start parameters are kept as they are (its durability among them).
  const pglite = await PGlite.create({
    dataDir: dir,
    extensions: { vector },
    startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${PGLITE_SHARED_BUFFERS}`],
  });
  const knex = knexFactory({ client: countingClient(ClientPgLite as unknown as typeof knexFactory.Client), connection: { pglite } as never });
  await knex.raw('select 1');
  return {
    knex,
    kind: 'pglite',
    close: async () => {
      await knex.destroy();
      if (!pglite.closed) await pglite.close();
    },
  };
}

/**
 * knex-pglite names a query's command after knex's method, and knex calls a delete `del` (an increment
 * `counter`), so its Postgres response handling did not know them: a delete answered the raw result
 * object instead of the number of rows, and every `delete() > 0` check read "nothing deleted" on the
 * embedded database (a project member or a cluster could not be removed under `mariner up`). The
 * methods are named as the commands they are, so deletes and updates answer row counts as on pg.
 */
function countingClient(base: typeof knexFactory.Client): typeof knexFactory.Client {
  const commands: Record<string, string> = { del: 'delete', counter: 'update' };
  // processResponse is a method of knex's dialect clients that its typings leave out.
  type Responding = new (...args: never[]) => { processResponse(obj: { method?: string }, runner: unknown): unknown };
  const Base = base as unknown as Responding;
  return class extends Base {
    override processResponse(obj: { method?: string }, runner: unknown): unknown {
      const command = obj.method ? commands[obj.method] : undefined;
      return super.processResponse(command ? { ...obj, method: command } : obj, runner);
    }
  } as unknown as typeof knexFactory.Client;
}

/** count(*) is a string on pg and a number on PGlite: normalise it here, once. */
export function toCount(value: unknown): number {
  const n = typeof value === 'number' ? value : Number.parseInt(String(value ?? '0'), 10);
  return Number.isFinite(n) ? n : 0;
}

/** A Postgres unique_violation (SQLSTATE 23505), on pg and PGlite alike. */
export function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === '23505';
}

/** A migration of one subgraph's schema. Ids are applied in array order and recorded. */
export interface Migration {
  id: string;
  up(knex: Knex, schema: string): Promise<void>;
}

/**
 * Runs a subgraph's pending migrations inside its own schema, each in a transaction, recorded in
 * `<schema>.mariner_migrations`. An advisory lock keeps concurrent starts from racing.
 */
export async function migrate(knex: Knex, schema: string, migrations: Migration[]): Promise<void> {
  await knex.transaction(async (trx) => {
    await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`mariner-migrate-${schema}`]);
    await trx.raw('create schema if not exists ??', [schema]);
    await trx.raw('create table if not exists ??.mariner_migrations (id text primary key, applied_at timestamptz not null default now())', [schema]);
    const done = new Set<string>((await trx.withSchema(schema).table('mariner_migrations').select('id')).map((r: { id: string }) => r.id));
    for (const migration of migrations) {
      if (done.has(migration.id)) continue;
      await migration.up(trx, schema);
      await trx.withSchema(schema).table('mariner_migrations').insert({ id: migration.id });
    }
  });
}
