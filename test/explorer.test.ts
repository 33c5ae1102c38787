import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_QUERY, INTROSPECTION_QUERY } from '../gateway/explorer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await startTestPlatform();
});
afterAll(async () => {
  await t?.close();
});

describe('the explorer page at /graphql', () => {
  it('a browser gets the offline explorer page', async () => {
    const response = await fetch(t.graphqlUrl, { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/html');
    expect(await response.text()).toContain('Mariner GraphQL explorer');
  });

  it('its introspection query passes the gateway limits and RBAC, with or without a key', async () => {
    for (const token of [t.adminKey, undefined]) {
      const result = await t.gql(INTROSPECTION_QUERY, {}, { token });
      expect(result.errors).toBeUndefined();
      const queryType = result.data?.['__schema'].types.find((type: { name: string }) => type.name === 'Query');
      expect(queryType.fields.map((f: { name: string }) => f.name)).toContain('self');
      expect(queryType.fields.map((f: { name: string }) => f.name)).not.toContain('principalByApiKey');
    }
  });

  it('its default query works for the admin key of a fresh install', async () => {
    const result = await t.gqlOk(DEFAULT_QUERY);
    expect(result['self'].id).toBe('admin@example.com');
  });

  it('with introspection off, there is no explorer and no schema', async () => {
    const closed = await startTestPlatform({ config: { introspection: false } });
    try {
      const page = await fetch(closed.graphqlUrl, { headers: { accept: 'text/html' } });
      expect(page.status).toBe(404);
      const result = await closed.gql(INTROSPECTION_QUERY);
      expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    } finally {
      await closed.close();
    }
  });
});
