import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStore, type AuditEventRecord } from '../subgraphs/audit/store.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * `GET /v1/audit/events/export` (issue 20): an organization's owners download its audit log as JSON lines
 * or CSV, streamed and paged through internally, between `from` and `to`; another organization's owner
 * gets none of its entries, a member is refused.
 */

let t: TestPlatform;
let organizationId: string;
const HOUR = 3600_000;
/** The generated history: 250 entries an hour apart, the newest 2026-03-01T00:00Z. */
const newest = Date.UTC(2026, 2, 1);
const GENERATED = 250;
const tag = `export-${randomUUID().slice(0, 8)}`;

const exportOf = (query: string, token: string = t.adminKey) =>
  fetch(`${t.url}/v1/audit/events/export?${query}`, { headers: { authorization: `Bearer ${token}` } });

beforeAll(async () => {
  t = await startTestPlatform();
  // The admin's organization: where the entry of a REST mutation it makes lands.
  const created = await fetch(`${t.url}/v1/api_keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'export-test-key' }),
  });
  expect(created.status).toBe(200);
  const requestId = created.headers.get('x-request-id')!;
  const [row] = await waitFor(
    () => t.platform.db.knex.withSchema('audit').table('audit_events').where('request_id', requestId) as Promise<{ organization_id: string }[]>,
    (rows) => rows.length === 1,
    'the REST mutation’s audit entry',
  );
  organizationId = row!.organization_id;
  // A generated history in that organization (the audit component's own store), more than one internal page.
  const entry = (i: number): AuditEventRecord => ({
    occurredAt: new Date(newest - i * HOUR).toISOString(),
    requestId: `${tag}-${i}`,
    userId: 'admin@example.com',
    apiKeyId: null,
    organizationId,
    projectId: null,
    clientAddress: '127.0.0.1',
    kind: 'mutation',
    // A value a spreadsheet would run, and a comma: the CSV keeps both as text.
    operationName: i === 0 ? '=HYPERLINK("x")' : i === 1 ? 'a,"quoted"' : `Op${i}`,
    actions: [{ field: 'updateProject', arguments: [{ name: 'input.id', id: `proj-${i}` }] }],
    outcome: 'OK',
  });
  await new AuditStore(t.platform.db.knex).append(Array.from({ length: GENERATED }, (_, i) => entry(i)));
}, 120_000);
afterAll(async () => t?.close());

describe('audit export', () => {
  it('an owner downloads the range as JSON lines, newest first, across internal pages', async () => {
    // [newest - 219 h, newest + 1 h): entries 0..219, 220 of them (three internal pages).
    const from = new Date(newest - 219 * HOUR).toISOString();
    const to = new Date(newest + HOUR).toISOString();
    const answer = await exportOf(`format=jsonl&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    expect(answer.headers.get('content-disposition')).toMatch(/^attachment; filename="audit-.*\.jsonl"$/);
    const text = await answer.text();
    expect(text.endsWith('\n')).toBe(true);
    const lines = text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as { request_id: string; organization_id: string; occurred_at: string; actions: unknown });
    expect(lines.map((l) => l.request_id)).toEqual(Array.from({ length: 220 }, (_, i) => `${tag}-${i}`));
    expect(lines.every((l) => l.organization_id === organizationId)).toBe(true);
    expect(lines[5]!.actions).toEqual([{ field: 'updateProject', arguments: [{ name: 'input.id', id: 'proj-5' }] }]);
    // Three pages, three GraphQL operations on the gateway: ONE usage record, the REST call's (gateway/usage.ts).
    const calls = (requestId: string) =>
      t.platform.db.knex.withSchema('inference').table('api_calls').where('request_id', requestId) as Promise<{ route: string | null }[]>;
    const requestId = answer.headers.get('x-request-id')!;
    await waitFor(
      () => calls(requestId),
      (rows) => rows.length > 0,
      'the export’s usage record',
    );
    const later = `export-later-${randomUUID()}`;
    await t.gqlOk(`query { self { id } }`, {}, { headers: { 'x-request-id': later } });
    await waitFor(
      () => calls(later),
      (rows) => rows.length > 0,
      'a later call’s usage record',
    );
    expect((await calls(requestId)).map((r) => r.route)).toEqual(['/v1/audit/events/export']);
  });

  it('CSV: a header row, one row an entry, formulas and quotes made safe; Unix seconds as bounds', async () => {
    const from = Math.floor((newest - 2 * HOUR) / 1000);
    const to = Math.floor((newest + HOUR) / 1000);
    const answer = await exportOf(`format=csv&from=${from}&to=${to}`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(answer.headers.get('content-disposition')).toMatch(/\.csv"$/);
    const rows = (await answer.text()).trimEnd().split('\r\n');
    expect(rows[0]).toBe('id,occurred_at,request_id,user_id,api_key_id,organization_id,project_id,client_address,kind,operation_name,outcome,actions');
    expect(rows).toHaveLength(4);
    expect(rows[1]).toContain(`,${tag}-0,`);
    expect(rows[1]).toContain(`,"'=HYPERLINK(""x"")",`);
    expect(rows[2]).toContain(`,"a,""quoted""",`);
    expect(rows[3]).toContain(`,${tag}-2,`);
  });

  it("another organization's owner gets none of ours, and may not name our organization", async () => {
    const other = await projectWithKey(t, `export-other-${randomUUID().slice(0, 6)}`, { role: 'OWNER' });
    const theirs = await exportOf('format=jsonl', other.key);
    expect(theirs.status).toBe(200);
    const text = await theirs.text();
    const lines =
      text === ''
        ? []
        : text
            .trimEnd()
            .split('\n')
            .map((line) => JSON.parse(line) as { organization_id: string; request_id: string });
    expect(lines.every((l) => l.organization_id === other.organizationId)).toBe(true);
    expect(lines.some((l) => l.request_id.startsWith(tag))).toBe(false);
    const named = await exportOf(`format=jsonl&organization_id=${organizationId}`, other.key);
    expect(named.status).toBe(403);
    expect(named.headers.get('content-disposition')).toBeNull();
  });

  it('a member who does not own the organization is refused', async () => {
    const member = await projectWithKey(t, `export-member-${randomUUID().slice(0, 6)}`, { role: 'READER' });
    const refused = await exportOf('format=csv', member.key);
    expect(refused.status).toBe(403);
    const body = (await refused.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/owner/i);
    expect((await exportOf(`format=csv&organization_id=${organizationId}`, member.key)).status).toBe(403);
  });

  it('refuses an unknown format, a bad bound, and a caller without credentials', async () => {
    expect((await exportOf('format=xml')).status).toBe(400);
    expect((await exportOf('format=csv&from=yesterday')).status).toBe(400);
    expect((await fetch(`${t.url}/v1/audit/events/export?format=csv`)).status).toBe(401);
  });
});
