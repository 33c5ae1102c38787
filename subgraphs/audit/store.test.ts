import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../../lib/db.js';
import { migrations } from './migrations/index.js';
import { AuditStore, SCHEMA, type AuditEventRecord } from './store.js';

/** The audit store on PGlite, as `mariner up` runs it (test/auditLog.test.ts covers PostgreSQL through the platform). */

let db: Database;
let dir: string;
let store: AuditStore;
const DAY = 24 * 60 * 60 * 1000;

const entry = (requestId: string, daysAgo: number, field = 'createApiKey'): AuditEventRecord => ({
  occurredAt: new Date(Date.now() - daysAgo * DAY).toISOString(),
  requestId,
  userId: 'user-a',
  apiKeyId: null,
  organizationId: 'org-a',
  projectId: 'proj-a',
  clientAddress: '127.0.0.1',
  kind: 'mutation',
  operationName: null,
  actions: [{ field, arguments: [{ name: 'id', id: 'key_1' }] }],
  outcome: 'OK',
});

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mariner-audit-'));
  db = await openDatabase({ dataDir: dir });
  await migrate(db.knex, SCHEMA, migrations);
  store = new AuditStore(db.knex);
}, 60_000);
afterAll(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the audit store on PGlite', () => {
  it('appends, lists one organization newest first filtered by field, refuses UPDATE, and retention removes only older entries', async () => {
    await store.append([entry('old', 40), entry('recent', 10), entry('other', 5, 'deleteApiKey'), { ...entry('elsewhere', 1), organizationId: 'org-b' }]);
    const page = await store.list({ organizationId: 'org-a', field: 'createApiKey' }, {});
    expect(page.items.map((r) => r.request_id)).toEqual(['recent', 'old']);
    await expect(db.knex.withSchema(SCHEMA).table('audit_events').update({ outcome: 'FORGED' })).rejects.toThrow(/append-only/);
    expect(await store.deleteOlderThan(new Date(Date.now() - 30 * DAY))).toBe(1);
    const left = await store.list({ organizationId: 'org-a' }, {});
    expect(left.items.map((r) => r.request_id)).toEqual(['other', 'recent']);
  });
});
