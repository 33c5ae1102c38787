import { randomUUID } from 'node:crypto';
import { Supergraph } from '@apollo/federation-internals';
import { getNamedType, isObjectType, isInterfaceType, isUnionType, isNonNullType, type GraphQLField } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInternalClient } from '../lib/internalClient.js';
import { subgraphSdl, supergraphSdl } from '../schema/subgraphs.js';
import { AuditStore } from '../subgraphs/audit/store.js';
import { auditSettings } from '../subgraphs/audit/settings.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';
import { parse } from 'graphql';
import { loadConfig } from '../lib/config.js';

/**
 * The audit log (issue 20): every mutation that reaches the gateway — over GraphQL or through a REST
 * route — writes one entry with who, which organization and project, the request id and the client's
 * address; organization owners read their own organization's entries only; no API changes or deletes
 * an entry; retention removes only what is older; no secret lands in an entry.
 */

let t: TestPlatform;
let store: AuditStore;

interface Row {
  id: string;
  request_id: string;
  user_id: string | null;
  api_key_id: string | null;
  organization_id: string | null;
  project_id: string | null;
  client_address: string | null;
  operation_name: string | null;
  actions: { field: string; arguments: { name: string; id: string | null }[] }[];
  outcome: string;
}

const knex = () => t.platform.db.knex;
const rowsOf = (requestId: string) => knex().withSchema('audit').table('audit_events').where('request_id', requestId) as Promise<Row[]>;
/** The entries of a request, once the gateway's batch is written (it is off the request's path). */
const entriesOf = (requestId: string, count = 1) =>
  waitFor(
    () => rowsOf(requestId),
    (rows) => rows.length >= count,
    `audit entries of ${requestId}`,
    10_000,
  );

const SELF = `query { self { id } }`;

beforeAll(async () => {
  t = await startTestPlatform();
  store = new AuditStore(knex());
}, 60_000);
afterAll(async () => t?.close());

describe('every mutation of the supergraph is recorded by the gateway', () => {
  it('each Mutation field, sent through the gateway, writes exactly one entry naming that field', async () => {
    const api = Supergraph.build(supergraphSdl()).apiSchema().toGraphQLJSSchema();
    const fields = Object.values(api.getMutationType()!.getFields());
    expect(fields.length).toBeGreaterThan(40);
    const selectionOf = (field: GraphQLField<unknown, unknown>) => {
      const type = getNamedType(field.type);
      return isObjectType(type) || isInterfaceType(type) || isUnionType(type) ? ' { __typename }' : '';
    };
    // Without credentials: the RBAC check refuses each one before any subgraph is called (nothing
    // changes), and the attempt is recorded all the same — the hook is generic over every mutation.
    const sent = await Promise.all(
      fields.map(async (field) => {
        const required = field.args.filter((a) => isNonNullType(a.type));
        const variables = required.map((a) => `$${a.name}: ${a.type.toString()}`).join(', ');
        const args = required.map((a) => `${a.name}: $${a.name}`).join(', ');
        const query = `mutation Audit_${field.name}${variables ? `(${variables})` : ''} { ${field.name}${args ? `(${args})` : ''}${selectionOf(field)} }`;
        const requestId = `audit-walk-${field.name}-${randomUUID().slice(0, 8)}`;
        const result = await t.gql(query, {}, { token: undefined, headers: { 'x-request-id': requestId } });
        expect(result.errors?.length, field.name).toBeGreaterThan(0);
        return { field: field.name, requestId };
      }),
    );
    for (const { field, requestId } of sent) {
      const rows = await entriesOf(requestId);
      expect(rows, field).toHaveLength(1);
      expect(rows[0]!.actions.map((a) => a.field)).toEqual([field]);
      expect(rows[0]!.operation_name).toBe(`Audit_${field}`);
      expect(rows[0]!.user_id).toBeNull();
      expect(rows[0]!.outcome).toMatch(/^(UNAUTHENTICATED|BAD_USER_INPUT|FORBIDDEN)$/);
    }
  }, 60_000);

  it('a GraphQL mutation writes one entry with the principal, organization, project, request id and client address', async () => {
    const self = await t.gqlOk<{ self: { id: string } }>(SELF);
    const { organizationId, projectId } = await projectWithKey(t, `audit-gql-${randomUUID().slice(0, 6)}`, { role: 'OWNER' });
    const requestId = `audit-gql-${randomUUID()}`;
    const result = await t.gql(
      `mutation RenameProject($id: ID!, $title: String!) { updateProject(input: { id: $id, title: $title }) { id } }`,
      { id: projectId, title: 'renamed by the audit test' },
      { headers: { 'x-request-id': requestId } },
    );
    expect(result.errors).toBeUndefined();
    const [row] = await entriesOf(requestId);
    expect(row).toMatchObject({
      user_id: self.self.id,
      operation_name: 'RenameProject',
      outcome: 'OK',
      client_address: expect.stringMatching(/127\.0\.0\.1|::1/),
    });
    // The admin key's project context decides the entry's organization and project.
    expect(row!.organization_id).not.toBeNull();
    expect(row!.project_id).not.toBeNull();
    expect(row!.api_key_id).toMatch(/^key_/);
    expect(row!.actions).toEqual([
      {
        field: 'updateProject',
        arguments: [
          { name: 'input', id: null },
          { name: 'input.id', id: projectId },
          { name: 'input.title', id: null },
        ],
      },
    ]);
    expect(organizationId).toMatch(/^org-/);
    expect(await rowsOf(requestId)).toHaveLength(1);
  });

  it('a REST route that runs a mutation writes exactly one entry, with the REST request id', async () => {
    const response = await fetch(`${t.url}/v1/api_keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'audit-rest-key' }),
    });
    expect(response.status).toBe(200);
    const requestId = response.headers.get('x-request-id')!;
    const created = (await response.json()) as { id: string; secret: string };
    const rows = await entriesOf(requestId);
    await t.gqlOk(SELF); // a later request: had a second entry been queued for the REST call, it would be written by now
    expect(await rowsOf(requestId)).toHaveLength(1);
    expect(rows[0]).toMatchObject({ operation_name: 'CreateApiKey', outcome: 'OK', api_key_id: expect.stringMatching(/^key_/) });
    expect(rows[0]!.actions[0]!.field).toBe('createApiKey');
    expect(rows[0]!.client_address).toMatch(/127\.0\.0\.1|::1/);
    const deleted = await fetch(`${t.url}/v1/api_keys/${created.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${t.adminKey}` } });
    expect(deleted.status).toBe(200);
    const [deletion] = await entriesOf(deleted.headers.get('x-request-id')!);
    expect(deletion!.actions[0]).toEqual({ field: 'deleteApiKey', arguments: [{ name: 'id', id: created.id }] });
  });
});

describe('reading the audit log', () => {
  it("an organization owner reads their organization's entries, and another organization's owner sees none of them", async () => {
    const other = await projectWithKey(t, `audit-other-${randomUUID().slice(0, 6)}`, { role: 'OWNER' });
    const requestId = `audit-read-${randomUUID()}`;
    await t.gqlOk(
      `mutation Touch($id: ID!) { updateProject(input: { id: $id, title: "touched" }) { id } }`,
      { id: other.projectId },
      { headers: { 'x-request-id': requestId } },
    );
    const [row] = await entriesOf(requestId);
    const query = `query($filter: AuditEventFilter, $after: String) { auditEvents(filter: $filter, limit: 100, after: $after) {
      items { id requestId userId apiKeyId organizationId projectId clientAddress kind operationName outcome occurredAt actions { field arguments { name id } } } hasMore } }`;
    // The admin owns the default organization, where its key's entries are.
    const mine = await t.gqlOk<{ auditEvents: { items: { requestId: string; organizationId: string; actions: { field: string }[] }[] } }>(query, {
      filter: { requestId },
    });
    expect(mine.auditEvents.items).toHaveLength(1);
    expect(mine.auditEvents.items[0]).toMatchObject({ requestId, organizationId: row!.organization_id, kind: 'mutation' });
    // The other organization's owner: its own log holds none of the admin's entries ...
    const theirs = await t.gqlOk<{ auditEvents: { items: { organizationId: string; requestId: string }[] } }>(query, {}, { token: other.key });
    expect(theirs.auditEvents.items.every((e) => e.organizationId === other.organizationId)).toBe(true);
    expect(theirs.auditEvents.items.map((e) => e.requestId)).not.toContain(requestId);
    // ... and asking for the admin's organization is refused.
    const refused = await t.gql(query, { filter: { organizationId: row!.organization_id } }, { token: other.key });
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('a project owner who is not an organization owner is refused', async () => {
    const reader = await projectWithKey(t, `audit-reader-${randomUUID().slice(0, 6)}`, { role: 'READER' });
    const refused = await t.gql(`query { auditEvents { items { id } } }`, {}, { token: reader.key });
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('pages newest first, filtered by mutation field', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const requestId = `audit-page-${i}-${randomUUID()}`;
      await t.gqlOk(
        `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`,
        { input: { name: `audit-page-${i}` } },
        { headers: { 'x-request-id': requestId } },
      );
      ids.push(requestId);
    }
    await entriesOf(ids[2]!);
    const page = async (after?: string) =>
      (
        await t.gqlOk<{ auditEvents: { items: { id: string; requestId: string }[]; hasMore: boolean } }>(
          `query($after: String) { auditEvents(filter: { field: "createApiKey" }, limit: 2, after: $after) { items { id requestId } hasMore } }`,
          { after: after ?? null },
        )
      ).auditEvents;
    const first = await page();
    expect(first.hasMore).toBe(true);
    expect(first.items.map((e) => e.requestId)).toEqual([ids[2], ids[1]]);
    const second = await page(first.items[1]!.id);
    expect(second.items[0]!.requestId).toBe(ids[0]);
  });
});

describe('append-only', () => {
  it('no API changes or deletes an entry: the only audit mutation appends, and only for the gateway', async () => {
    const full = Supergraph.build(supergraphSdl()).schema.toGraphQLJSSchema();
    const auditMutations = Object.keys(full.getMutationType()!.getFields()).filter((f) => /audit/i.test(f));
    expect(auditMutations).toEqual(['recordAuditEvents']);
    const sdl = parse(subgraphSdl('audit'));
    const mutationFields = sdl.definitions.flatMap((d) =>
      d.kind === 'ObjectTypeDefinition' && d.name.value === 'Mutation' ? (d.fields ?? []).map((f) => f.name.value) : [],
    );
    expect(mutationFields).toEqual(['recordAuditEvents']);
    // Not in the public API ...
    const viaGateway = await t.gql(`mutation { recordAuditEvents(events: []) }`);
    expect(viaGateway.errors?.[0]?.message).toMatch(/Cannot query field "recordAuditEvents"/);
    // ... and a caller's token straight to the subgraph is refused.
    const direct = createInternalClient({ subgraph: 'audit', url: t.platform.subgraphUrls.audit, tokens: t.platform.tokens });
    const doc = parse(`mutation($events: [AuditEventInput!]!) { recordAuditEvents(events: $events) }`);
    await expect(direct.request({ kind: 'caller', requestId: 'audit-forge', identity: null }, doc as never, { events: [] })).rejects.toThrow();
  });

  it('the table refuses UPDATE even from SQL', async () => {
    const requestId = `audit-update-${randomUUID()}`;
    await t.gqlOk(
      `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`,
      { input: { name: 'audit-update' } },
      { headers: { 'x-request-id': requestId } },
    );
    await entriesOf(requestId);
    await expect(knex().withSchema('audit').table('audit_events').where('request_id', requestId).update({ outcome: 'FORGED' })).rejects.toThrow(/append-only/);
    expect((await rowsOf(requestId))[0]!.outcome).toBe('OK');
  });
});

describe('retention', () => {
  it('deletes only entries older than the retention period', async () => {
    const base = {
      userId: null,
      apiKeyId: null,
      organizationId: 'org-retention',
      projectId: null,
      clientAddress: null,
      kind: 'mutation',
      operationName: null,
      actions: [],
      outcome: 'OK',
    };
    const day = 24 * 60 * 60 * 1000;
    await store.append([
      { ...base, occurredAt: new Date(Date.now() - 40 * day).toISOString(), requestId: 'retention-old' },
      { ...base, occurredAt: new Date(Date.now() - 20 * day).toISOString(), requestId: 'retention-recent' },
    ]);
    const removed = await store.deleteOlderThan(new Date(Date.now() - 30 * day));
    expect(removed).toBeGreaterThanOrEqual(1);
    expect(await rowsOf('retention-old')).toHaveLength(0);
    expect(await rowsOf('retention-recent')).toHaveLength(1);
  });

  it('MARINER_AUDIT_RETENTION_DAYS sets the period, refusing nonsense', () => {
    const config = loadConfig({}, {});
    expect(auditSettings(config, {}).retentionDays).toBe(365);
    expect(auditSettings(config, { MARINER_AUDIT_RETENTION_DAYS: '30' }).retentionDays).toBe(30);
    expect(() => auditSettings(config, { MARINER_AUDIT_RETENTION_DAYS: '-1' })).toThrow(/MARINER_AUDIT_RETENTION_DAYS/);
  });
});

describe('secrets', () => {
  it('an API key secret created over GraphQL or REST appears nowhere in the audit table', async () => {
    const requestId = `audit-secret-${randomUUID()}`;
    const { createApiKey } = await t.gqlOk<{ createApiKey: { secret: string } }>(
      `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`,
      { input: { name: 'audit-secret' } },
      { headers: { 'x-request-id': requestId } },
    );
    const rest = await fetch(`${t.url}/v1/api_keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'audit-secret-rest' }),
    });
    const restSecret = ((await rest.json()) as { secret: string }).secret;
    await entriesOf(requestId);
    await entriesOf(rest.headers.get('x-request-id')!);
    const everything = JSON.stringify(await knex().withSchema('audit').table('audit_events').select('*'));
    for (const secret of [createApiKey.secret, restSecret, t.adminKey]) {
      expect(secret).toMatch(/^sk-/);
      expect(everything).not.toContain(secret);
      expect(everything).not.toContain(secret.slice(3));
    }
  });
});
