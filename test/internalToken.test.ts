import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INTERNAL_TOKEN_HEADER, type Identity } from '../lib/identity.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * Subgraphs accept only the gateway: every call must carry a short-lived internal token signed with
 * the platform's secret, for that subgraph's audience. The secret is fixed here (config override)
 * so the test can sign tokens the gateway would never mint: expired ones, or with another issuer.
 */

const SECRET = 'internal-token-secret-for-tests-0123456789';
const ISSUER = 'mariner-gateway';

let t: TestPlatform;
beforeAll(async () => {
  t = await startTestPlatform({ config: { internalTokenSecret: SECRET } });
});
afterAll(async () => {
  await t?.close();
});

interface SubgraphResponse {
  status: number;
  data?: Record<string, any> | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** A call straight to a subgraph, bypassing the gateway. */
async function callSubgraph(subgraph: 'users' | 'rbac', query: string, token?: string, variables?: Record<string, unknown>): Promise<SubgraphResponse> {
  const response = await fetch(t.platform.subgraphUrls[subgraph], {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token !== undefined ? { [INTERNAL_TOKEN_HEADER]: token } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, ...((await response.json()) as Omit<SubgraphResponse, 'status'>) };
}

/** A token with the claims the gateway uses, signed with whatever key and times the test picks. */
function signToken(options: { secret?: string; audience?: string; issuer?: string; expiresAt?: number; issuedAt?: number; system?: boolean }) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ rid: 'req-test', ...((options.system ?? true) ? { sys: true } : {}) })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? 'users')
    .setSubject('system')
    .setIssuedAt(options.issuedAt ?? now)
    .setExpirationTime(options.expiresAt ?? now + 60)
    .sign(new TextEncoder().encode(options.secret ?? SECRET));
}

function expectRefused(result: SubgraphResponse) {
  expect(result.status).toBe(401);
  expect(result.data).toBeUndefined();
  expect(result.errors).toEqual([{ message: 'This subgraph only accepts calls from the gateway', extensions: { code: 'UNAUTHENTICATED' } }]);
}

/** An identity as the gateway would build it for the bootstrap admin, but with no project. */
function adminIdentity(): Identity {
  return {
    principal: {
      userId: 'admin@example.com',
      internalUserId: 'user-handmade',
      tenantId: 'default',
      isServiceAccount: false,
      apiKey: null,
      organizations: [],
      projects: [],
    },
    project: null,
    projectRefusal: 'built by hand for a test',
  };
}

const PRINCIPAL_BY_KEY = `query($secret: String!) { principalByApiKey(secret: $secret) { userId } }`;

describe('a subgraph refuses calls that do not come from the gateway', () => {
  it('no internal token: HTTP 401 UNAUTHENTICATED', async () => {
    expectRefused(await callSubgraph('users', '{ self { id } }'));
    expectRefused(await callSubgraph('rbac', '{ __typename }'));
  });

  it('an empty or garbage token: refused', async () => {
    expectRefused(await callSubgraph('users', '{ self { id } }', ''));
    expectRefused(await callSubgraph('users', '{ self { id } }', 'not-a-jwt'));
  });

  it('a token signed with another secret: refused', async () => {
    const forged = await signToken({ secret: 'some-other-secret-that-is-long-enough-000' });
    expectRefused(await callSubgraph('users', PRINCIPAL_BY_KEY, forged, { secret: t.adminKey }));
  });

  it('an unsigned token (alg none): refused', async () => {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${encode({ alg: 'none' })}.${encode({ rid: 'r', sys: true, iss: ISSUER, aud: 'users', iat: now, exp: now + 60 })}.`;
    expectRefused(await callSubgraph('users', PRINCIPAL_BY_KEY, unsigned, { secret: t.adminKey }));
  });

  it("a token minted for the other subgraph's audience: refused, both ways", async () => {
    expectRefused(await callSubgraph('users', PRINCIPAL_BY_KEY, await t.platform.tokens.mint('rbac', 'req-1', null, true), { secret: t.adminKey }));
    expectRefused(await callSubgraph('rbac', '{ __typename }', await t.platform.tokens.mint('users', 'req-1', null, true)));
  });

  it('an expired token signed with the right secret: refused, while a fresh one is accepted', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await signToken({ issuedAt: now - 120, expiresAt: now - 60 });
    expectRefused(await callSubgraph('users', PRINCIPAL_BY_KEY, expired, { secret: t.adminKey }));

    const fresh = await signToken({});
    const accepted = await callSubgraph('users', PRINCIPAL_BY_KEY, fresh, { secret: t.adminKey });
    expect(accepted.status).toBe(200);
    expect(accepted.data).toEqual({ principalByApiKey: { userId: 'admin@example.com' } });
  });

  it('a token with another issuer, signed with the right secret: refused', async () => {
    expectRefused(await callSubgraph('users', PRINCIPAL_BY_KEY, await signToken({ issuer: 'someone-else' }), { secret: t.adminKey }));
  });
});

describe('a valid token is held to its rights', () => {
  it('the gateway system token can look up the principal behind an API key', async () => {
    const token = await t.platform.tokens.mint('users', 'req-system', null, true);
    const result = await callSubgraph('users', PRINCIPAL_BY_KEY, token, { secret: t.adminKey });
    expect(result.status).toBe(200);
    expect(result.errors).toBeUndefined();
    expect(result.data).toEqual({ principalByApiKey: { userId: 'admin@example.com' } });
  });

  it('a user token reaches user fields but not the gateway-only lookup (FORBIDDEN)', async () => {
    const token = await t.platform.tokens.mint('users', 'req-user', adminIdentity());
    const self = await callSubgraph('users', '{ self { id } }', token);
    expect(self.data).toEqual({ self: { id: 'admin@example.com' } });

    const lookup = await callSubgraph('users', PRINCIPAL_BY_KEY, token, { secret: t.adminKey });
    expect(lookup.data).toEqual({ principalByApiKey: null });
    expect(lookup.errors).toHaveLength(1);
    expect(lookup.errors![0]!.extensions?.code).toBe('FORBIDDEN');
    expect(JSON.stringify(lookup)).not.toContain('admin@example.com');
  });

  it('_service { sdl }: refused without a token, served with a valid one', async () => {
    expectRefused(await callSubgraph('users', '{ _service { sdl } }'));
    const withToken = await callSubgraph('users', '{ _service { sdl } }', await t.platform.tokens.mint('users', 'req-sdl', null, true));
    expect(withToken.status).toBe(200);
    expect(withToken.data?.['_service'].sdl).toContain('type Organization');
  });
});

describe('through the gateway', () => {
  it('the same query works for an API key', async () => {
    const result = await t.gql(`{ self { id } }`);
    expect(result.status).toBe(200);
    expect(result.data).toEqual({ self: { id: 'admin@example.com' } });
  });

  it('the gateway-only lookup is not part of the public API', async () => {
    const result = await t.gql(PRINCIPAL_BY_KEY, { secret: t.adminKey });
    expect(result.status).toBe(400);
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(result)).not.toContain('admin@example.com');
  });
});
