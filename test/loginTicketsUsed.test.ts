import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../lib/db.js';
import { silentLogger } from '../lib/logging.js';
import { SESSIONS_SCHEMA } from '../subgraphs/sessions/index.js';
import { migrations } from '../subgraphs/sessions/migrations/index.js';
import { UsedLoginTickets } from '../subgraphs/sessions/usedLoginTickets.js';
import { createTestDatabase } from './support/platform.js';

/**
 * A notebook sign-in ticket signs one browser in, whichever sessions replica it reaches (issue 19): each
 * replica records the tickets it accepts in the shared table (subgraphs/sessions/usedLoginTickets.ts), here
 * two replicas' own pools on one PostgreSQL, and `mariner up`'s embedded PGlite.
 */
describe('used notebook sign-in tickets', () => {
  let postgres: { url: string; drop(): Promise<void> };
  let replicas: Database[] = [];
  let embedded: Database;
  let dataDir: string;
  const usedOn = (db: Database) => new UsedLoginTickets({ knex: db.knex, schema: SESSIONS_SCHEMA, logger: silentLogger() });
  const inAMinute = () => Math.floor(Date.now() / 1000) + 60;

  beforeAll(async () => {
    postgres = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-tickets-'));
    replicas = [await openDatabase({ databaseUrl: postgres.url, dataDir }), await openDatabase({ databaseUrl: postgres.url, dataDir })];
    embedded = await openDatabase({ dataDir });
    for (const db of [...replicas, embedded]) await migrate(db.knex, SESSIONS_SCHEMA, migrations);
  }, 60_000);
  afterAll(async () => {
    for (const db of [...replicas, embedded]) await db?.close();
    await postgres?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('two replicas offered one ticket at once accept it once; another ticket is accepted', async () => {
    const [a, b] = replicas.map(usedOn) as [UsedLoginTickets, UsedLoginTickets];
    const expiresAt = inAMinute();
    const answers = await Promise.all([a.use('ticket-1', expiresAt), b.use('ticket-1', expiresAt), a.use('ticket-1', expiresAt)]);
    expect(answers.filter(Boolean)).toHaveLength(1);
    expect(await b.use('ticket-1', expiresAt)).toBe(false);
    expect(await b.use('ticket-2', expiresAt)).toBe(true);
  });

  it("under mariner up (PGlite) too; rows of tickets long expired are deleted on a later use, a live ticket's kept", async () => {
    const used = usedOn(embedded);
    const table = () => embedded.knex.withSchema(SESSIONS_SCHEMA).table('login_tickets_used');
    await table().insert({ id: 'old', expires_at: new Date(Date.now() - 3600_000) });
    expect(await used.use('fresh', inAMinute())).toBe(true);
    expect(await used.use('fresh', inAMinute())).toBe(false);
    expect((await table().select('id').orderBy('id')).map((r: { id: string }) => r.id)).toEqual(['fresh']);
  });
});
