/**
 * The web console's server side (gateway/console.ts) over real HTTP and graphql-ws: its page at
 * /console, `/` redirecting browsers there, sign-in with an API key into an HttpOnly, SameSite=Strict
 * session cookie, that cookie accepted for /graphql only from the console's own origin (CSRF), and
 * sign-out revoking it; the notebook hand-off (GET /console/notebook) with a one-time sign-in ticket. The
 * browser side is test/consoleBrowser.test.ts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'graphql-ws';
import { WebSocket } from 'ws';
import { createLoginTickets } from '../lib/loginTicket.js';
import { consoleBuilt } from './support/browser.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

let t: TestPlatform;
beforeAll(async () => {
  await consoleBuilt();
  t = await startTestPlatform({ embedded: true });
}, 120_000);
afterAll(async () => {
  await t?.close();
});

const CSRF = { 'x-mariner-csrf': '1' };

async function signIn(apiKey: string, headers: Record<string, string> = CSRF): Promise<Response> {
  return fetch(`${t.url}/console/session`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ apiKey }) });
}

async function sessionCookie(apiKey: string): Promise<string> {
  const response = await signIn(apiKey);
  expect(response.status).toBe(200);
  return response.headers.getSetCookie()[0]!.split(';')[0]!;
}

async function viewer(cookie: string, headers: Record<string, string> = CSRF) {
  const response = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie, ...headers },
    body: JSON.stringify({ query: '{ self { id } apiKeys { items { name } } }' }),
  });
  return {
    status: response.status,
    body: (await response.json()) as { data?: { self: { id: string }; apiKeys: { items: { name: string }[] } }; errors?: { extensions: { code: string } }[] },
  };
}

describe('console page', () => {
  it('is served at /console/ with its assets, and / redirects a browser there; /graphql, its explorer and unknown paths are unchanged', async () => {
    const root = await fetch(`${t.url}/`, { headers: { accept: 'text/html' }, redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/console/');
    expect((await fetch(`${t.url}/`)).status).toBe(404);
    expect((await fetch(`${t.url}/nothing-here`, { headers: { accept: 'text/html' } })).status).toBe(404);

    const page = await fetch(`${t.url}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    const html = await page.text();
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const asset = await fetch(`${t.url}${script}`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toContain('text/javascript');
    expect(asset.headers.get('cache-control')).toContain('immutable');
    // A route of the single-page app gets its page; a missing asset or a path outside it does not.
    expect((await fetch(`${t.url}/console/jobs`)).status).toBe(200);
    expect((await fetch(`${t.url}/console/assets/missing.js`)).status).toBe(404);
    expect((await fetch(`${t.url}/console/..%2f..%2fpackage.json`)).status).toBe(404);

    const explorer = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(explorer.status).toBe(200);
    expect(await explorer.text()).toContain('<html');
    expect((await t.gql('{ self { id } }')).status).toBe(200);
    expect((await fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${t.adminKey}` } })).status).toBe(200);
  });
});

describe('console session', () => {
  it('sign-in sets an HttpOnly, SameSite=Strict cookie that authenticates same-origin GraphQL; a bad key gets the API error and no cookie', async () => {
    const response = await signIn(t.adminKey);
    expect(response.status).toBe(200);
    const [setCookie] = response.headers.getSetCookie();
    expect(setCookie).toMatch(/^mariner_console=[\w-]+; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(setCookie).not.toContain(t.adminKey.slice(3, 20));
    const cookie = setCookie!.split(';')[0]!;
    const ok = await viewer(cookie);
    expect(ok.status).toBe(200);
    expect(ok.body.data?.self.id).toBeTruthy();

    const bad = await signIn('sk-not-a-real-key');
    expect(bad.status).toBe(401);
    expect(await bad.json()).toEqual({ error: { message: 'Invalid API key', code: 'UNAUTHENTICATED' } });
    expect(bad.headers.getSetCookie()).toEqual([]);
    const malformed = await signIn('');
    expect(malformed.status).toBe(400);
  });

  it('over TLS (an ingress saying https) the cookie is Secure', async () => {
    const response = await signIn(t.adminKey, { ...CSRF, 'x-forwarded-proto': 'https' });
    expect(response.headers.getSetCookie()[0]).toContain('; Secure');
  });

  it('CSRF: the cookie without the console header, from another site or origin is refused, and so is a cross-site sign-in', async () => {
    const cookie = await sessionCookie(t.adminKey);
    for (const headers of [
      {},
      { ...CSRF, 'sec-fetch-site': 'cross-site' },
      { ...CSRF, origin: 'https://evil.example' },
      { ...CSRF, 'sec-fetch-site': 'same-site' },
    ]) {
      const refused = await viewer(cookie, headers);
      expect(refused.status).toBe(403);
      expect(refused.body.errors?.[0]?.extensions.code).toBe('FORBIDDEN');
      expect(refused.body.data).toBeUndefined();
    }
    // What a form on another site can send: no custom header, text/plain, its own Origin.
    const form = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', cookie, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      body: JSON.stringify({ query: 'mutation { createApiKey(input: { name: "stolen" }) { secret } }' }),
    });
    expect(form.status).toBe(403);
    expect((await viewer(cookie)).body.data?.apiKeys.items.map((k) => k.name)).not.toContain('stolen');
    // Same origin, as the console sends it, is accepted.
    const host = new URL(t.url).host;
    expect((await viewer(cookie, { ...CSRF, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' })).status).toBe(200);

    expect((await signIn(t.adminKey, {})).status).toBe(403);
    expect((await signIn(t.adminKey, { ...CSRF, origin: 'https://evil.example' })).status).toBe(403);
  });

  it('graphql-ws with the cookie: accepted from the same origin, refused from another', async () => {
    const cookie = await sessionCookie(t.adminKey);
    const url = `${t.url.replace('http:', 'ws:')}/graphql`;
    const query = (origin: string) =>
      new Promise<unknown>((resolve, reject) => {
        const client = createClient({
          url,
          retryAttempts: 0,
          webSocketImpl: class extends WebSocket {
            constructor(address: string, protocols?: string | string[]) {
              super(address, protocols, { headers: { cookie, origin } });
            }
          },
          on: { closed: (event) => reject(new Error(`closed ${(event as { code?: number }).code ?? ''}`)), error: reject },
        });
        client.subscribe({ query: '{ self { id } }' }, { next: (value) => resolve(value), error: reject, complete: () => void client.dispose() });
      });
    expect(await query(t.url)).toMatchObject({ data: { self: { id: expect.any(String) } } });
    await expect(query('https://evil.example')).rejects.toThrow();
  });

  it('sign-out revokes the session server-side: the old cookie is refused even if replayed', async () => {
    const cookie = await sessionCookie(t.adminKey);
    expect((await viewer(cookie)).status).toBe(200);
    const out = await fetch(`${t.url}/console/session`, { method: 'DELETE', headers: { cookie, ...CSRF } });
    expect(out.status).toBe(200);
    expect(out.headers.getSetCookie()[0]).toMatch(/^mariner_console=; Max-Age=0;/);
    const replayed = await viewer(cookie);
    expect(replayed.status).toBe(401);
    expect(replayed.body.errors?.[0]?.extensions.code).toBe('UNAUTHENTICATED');
    // A tampered cookie is refused as well.
    const tampered = cookie.slice(0, -4) + (cookie.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect((await viewer(tampered)).status).toBe(401);
  });

  it("a key of another organization signs in to its own organization only: it sees none of the admin's keys", async () => {
    const other = await projectWithKey(t, 'console-other');
    const cookie = await sessionCookie(other.key);
    const seen = await viewer(cookie);
    expect(seen.status).toBe(200);
    expect(seen.body.data?.apiKeys.items.map((k) => k.name)).toEqual(['console-other-key']);
    // A deleted key's session stops working at once.
    const { apiKeys } = await t.gqlOk<{ apiKeys: { items: { id: string; name: string }[] } }>('{ apiKeys { items { id name } } }', {}, { token: other.key });
    await t.gqlOk('mutation($id: ID!) { deleteApiKey(id: $id) { deleted } }', { id: apiKeys.items[0]!.id }, { token: other.key });
    expect((await viewer(cookie)).status).toBe(401);
  });

  it("a page learns when its session ends; a key's session checked again by refresh goes on, and a deleted key's ends (cookie cleared)", async () => {
    const other = await projectWithKey(t, 'console-refresh');
    const cookie = await sessionCookie(other.key);
    const state = async (headers: Record<string, string>) =>
      (await (await fetch(`${t.url}/console/session`, { headers: { ...CSRF, ...headers } })).json()) as {
        oidc: boolean;
        session: { expiresAt: string; credentialExpiresAt: string | null; refreshable: boolean } | null;
      };
    expect(await state({})).toEqual({ oidc: false, session: null });
    const { session } = await state({ cookie });
    // An API key's session ends with the console's own lifetime (12 hours); nothing to renew before.
    expect(session).toMatchObject({ credentialExpiresAt: null, refreshable: false });
    expect(Date.parse(session!.expiresAt) - Date.now()).toBeGreaterThan(11 * 3600_000);

    const refresh = (headers: Record<string, string>) => fetch(`${t.url}/console/session/refresh`, { method: 'POST', headers: { ...CSRF, ...headers } });
    const still = await refresh({ cookie });
    expect(still.status).toBe(200);
    expect(((await still.json()) as { expiresAt: string }).expiresAt).toBe(session!.expiresAt);
    // Another site cannot make the browser refresh (CSRF): the console's header and origin are required.
    expect((await fetch(`${t.url}/console/session/refresh`, { method: 'POST', headers: { cookie } })).status).toBe(403);
    expect((await refresh({ cookie, origin: 'http://elsewhere.example', 'sec-fetch-site': 'cross-site' })).status).toBe(403);

    const { apiKeys } = await t.gqlOk<{ apiKeys: { items: { id: string }[] } }>('{ apiKeys { items { id } } }', {}, { token: other.key });
    await t.gqlOk('mutation($id: ID!) { deleteApiKey(id: $id) { deleted } }', { id: apiKeys.items[0]!.id }, { token: other.key });
    const ended = await refresh({ cookie });
    expect(ended.status).toBe(401);
    expect(ended.headers.getSetCookie()[0]).toMatch(/^mariner_console=; Max-Age=0;/);
    expect(((await ended.json()) as { error: { message: string } }).error.message).toBe('Your session expired: sign in again');
  });
});

describe('console notebook hand-off', () => {
  it('hands a notebook link a sign-in ticket for that notebook only from the console, and only to a notebook path', async () => {
    const cookie = await sessionCookie(t.adminKey);
    const notebook = '/v1/sessions/cluster-abc/v1/services/notebooks/nb-1/default/lab?token=jupyter';
    const handoff = (path: string, headers: Record<string, string> = {}) =>
      fetch(`${t.url}/console/notebook?path=${encodeURIComponent(path)}`, {
        headers: { cookie, 'sec-fetch-site': 'same-origin', ...headers },
        redirect: 'manual',
      });

    const ok = await handoff(notebook);
    expect(ok.status).toBe(303);
    const location = new URL(ok.headers.get('location')!, t.url);
    expect(location.pathname).toBe('/v1/sessions/cluster-abc/v1/services/notebooks/nb-1/default/lab');
    expect(location.searchParams.get('token')).toBe('jupyter');
    // A one-time ticket for this notebook, holding the session's credential sealed: the key is nowhere in the address.
    expect(location.searchParams.has('access_token')).toBe(false);
    expect(location.href).not.toContain(t.adminKey);
    const ticket = location.searchParams.get('login_ticket')!;
    expect(Buffer.from(ticket, 'base64url').toString('latin1')).not.toContain(t.adminKey);
    const opened = createLoginTickets(readFileSync(path.join(t.dataDir, 'internal-token-secret'), 'utf8').trim()).open(ticket);
    expect(opened).toMatchObject({
      target: { clusterId: 'cluster-abc', notebook: 'nb-1', namespace: 'default' },
      credential: { authorization: `Bearer ${t.adminKey}` },
    });
    expect(opened!.expiresAt).toBeLessThanOrEqual(Date.now() / 1000 + 60);
    // The sessions component opens it (the key derived from the same secret): the ticket's credential is admitted
    // and the notebook route goes on to the cluster, which has no agent here; a changed ticket is refused outright.
    const visit = await fetch(location, { redirect: 'manual' });
    expect(visit.status).toBe(503);
    expect(await visit.text()).toContain('No agent of cluster cluster-abc');
    const changed = new URL(location);
    changed.searchParams.set('login_ticket', `${ticket.slice(0, 30)}${ticket[30] === 'A' ? 'B' : 'A'}${ticket.slice(31)}`);
    expect((await fetch(changed, { redirect: 'manual' })).status).toBe(401);

    // Another site cannot send a signed-in browser through it.
    const crossSite = await handoff(notebook, { 'sec-fetch-site': 'cross-site' });
    expect(crossSite.status).toBe(403);
    expect(crossSite.headers.get('location')).toBeNull();
    // Only to a notebook on this origin.
    for (const path of [
      '//evil.example/v1/sessions/c/v1/services/notebooks/x',
      'https://evil.example/',
      '/v1/files',
      '/v1/sessions/c/v1/services/notebooks/../../../graphql',
      // No namespace: no notebook to make a ticket for.
      '/v1/sessions/cluster-abc/v1/services/notebooks/nb-1',
    ]) {
      const refused = await handoff(path);
      expect(refused.status, path).toBe(400);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('BAD_USER_INPUT');
    }
    // Without a session: no credential to hand.
    const signedOut = await fetch(`${t.url}/console/notebook?path=${encodeURIComponent(notebook)}`, { redirect: 'manual' });
    expect(signedOut.status).toBe(401);
  });
});
