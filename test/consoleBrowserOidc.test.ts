/**
 * The console's OIDC sign-in in headless Chromium, against a real OpenID provider (oidc-provider 9 with
 * its own login and consent pages) on loopback: the person clicks "Sign in with your identity provider",
 * types their login on the provider's form, consents, and lands in the console signed in as their Mariner
 * user, with the same HttpOnly SameSite=Strict session cookie an API key gets. A callback this browser did
 * not start is refused; a person who is not a Mariner user is told so; sign-out revokes the session.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { consoleBuilt, hasChromium, launchChromium, screenshotPath, CHROMIUM_PATH } from './support/browser.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

const run = hasChromium || process.env['CI'] ? describe : describe.skip;
const CLIENT_ID = 'mariner-console';

interface ProviderInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
}
type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;

/** A plain Map store for oidc-provider (nothing outlives the test). */
function mapAdapter() {
  const store = new Map<string, Record<string, unknown>>();
  return class MapAdapter {
    constructor(private readonly model: string) {}
    async upsert(id: string, payload: Record<string, unknown>) {
      store.set(`${this.model}:${id}`, payload);
    }
    async find(id: string) {
      return store.get(`${this.model}:${id}`);
    }
    async findByUid(uid: string) {
      return [...store.values()].find((p) => p['uid'] === uid);
    }
    async findByUserCode(code: string) {
      return [...store.values()].find((p) => p['userCode'] === code);
    }
    async consume(id: string) {
      const payload = store.get(`${this.model}:${id}`);
      if (payload) payload['consumed'] = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      store.delete(`${this.model}:${id}`);
    }
    async revokeByGrantId(grantId: string) {
      for (const [key, p] of store) if (p['grantId'] === grantId) store.delete(key);
    }
  };
}

let t: TestPlatform;
let browser: Browser;
let idp: ReturnType<typeof createServer>;

run(`OIDC sign-in to the console in Chromium (${CHROMIUM_PATH})`, () => {
  beforeAll(async () => {
    // The issuer contains the provider's port and the client's redirect URI the platform's: bind, start, then configure.
    idp = createServer();
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    const issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`;
    const [platform, launched] = await Promise.all([
      consoleBuilt().then(() => startTestPlatform({ embedded: true, config: { oidc: { issuer, audience: CLIENT_ID, emailClaim: 'email' } } })),
      launchChromium(),
    ]);
    t = platform;
    browser = launched;
    const specifier: string = 'oidc-provider';
    const Provider = ((await import(specifier)) as { default: ProviderConstructor }).default;
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const provider = new Provider(issuer, {
      // A public client: PKCE instead of a secret, as a browser sign-in is set up at Dex.
      clients: [
        {
          client_id: CLIENT_ID,
          token_endpoint_auth_method: 'none',
          grant_types: ['authorization_code'],
          response_types: ['code'],
          redirect_uris: [`${t.url}/console/oidc/callback`],
        },
      ],
      adapter: mapAdapter(),
      jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] },
      cookies: { keys: [randomBytes(32).toString('base64url')] },
      ttl: { Interaction: 600, Session: 600, Grant: 600, AccessToken: 600, IdToken: 600 },
      // Whoever types a login is that account; its email is the login.
      findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub, email: sub, email_verified: true }) }),
      claims: { openid: ['sub'], email: ['email', 'email_verified'] },
      // The ID token carries the email (as Dex's does) rather than only the userinfo endpoint.
      conformIdTokenClaims: false,
      features: { devInteractions: { enabled: true } },
    });
    idp.on('request', provider.callback());
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    idp?.closeAllConnections();
    idp?.close();
  });

  /** The provider's dev pages import a web font; nothing leaves loopback. */
  async function loopbackOnly(page: Page): Promise<void> {
    await page.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
  }

  async function signInAtProvider(page: Page, login: string): Promise<void> {
    await page.goto(`${t.url}/console/`);
    await page.getByRole('link', { name: 'Sign in with your identity provider' }).click();
    await page.getByPlaceholder('Enter any login').fill(login);
    await page.getByPlaceholder('and password').fill('anything');
    await page.screenshot({ path: screenshotPath('oidc-01-provider-login') });
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
  }

  it('a person signs in through the identity provider, works in the console, and signs out', { timeout: 60_000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await loopbackOnly(page);
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));

    await signInAtProvider(page, 'admin@example.com');
    await page.getByRole('heading', { name: 'Models' }).waitFor({ timeout: 20_000 });
    expect(new URL(page.url()).pathname).toBe('/console/');
    await page.screenshot({ path: screenshotPath('oidc-02-signed-in') });
    const cookies = await context.cookies(t.url);
    const session = cookies.find((c) => c.name === 'mariner_console')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    // The flow cookie is gone once used, and no script can read the session.
    expect(cookies.find((c) => c.name === 'mariner_oidc')).toBeUndefined();
    expect(await page.evaluate(() => document.cookie)).toBe('');

    // The session is the person's Mariner user (the admin's email): the API answers as them.
    const self = await page.evaluate(async () => {
      const response = await fetch('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mariner-csrf': '1' },
        body: JSON.stringify({ query: '{ self { id } }' }),
      });
      return (await response.json()) as { data?: { self: { id: string } } };
    });
    expect(self.data?.self.id).toBe('admin@example.com');
    // A screen with live data works on that session.
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByRole('table', { name: 'API keys' }).waitFor();

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in with your identity provider' }).waitFor();
    const replay = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mariner-csrf': '1', cookie: `${session.name}=${session.value}` },
      body: JSON.stringify({ query: '{ self { id } }' }),
    });
    expect(replay.status).toBe(401);
    expect(pageErrors).toEqual([]);
    await context.close();
  });

  it('a person the platform does not know is told so, and gets no session', { timeout: 60_000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
    const page = await context.newPage();
    await loopbackOnly(page);
    await signInAtProvider(page, 'stranger@elsewhere.example');
    await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 20_000 }).toContain('not a Mariner user');
    await page.screenshot({ path: screenshotPath('oidc-03-unknown-user-phone-dark') });
    expect((await context.cookies(t.url)).find((c) => c.name === 'mariner_console')).toBeUndefined();
    await context.close();
  });

  it('a callback this browser did not start is refused (login CSRF), and so is one with another state', async () => {
    // No flow cookie: an attacker's link with their own code.
    const forged = await fetch(`${t.url}/console/oidc/callback?code=attacker-code&state=whatever`, { redirect: 'manual' });
    expect(forged.status).toBe(302);
    expect(forged.headers.get('location')).toBe('/console/#/sign-in?oidc-error=expired');
    expect(forged.headers.getSetCookie().some((c) => c.startsWith('mariner_console='))).toBe(false);

    // A flow this client started, answered with another state.
    const start = await fetch(`${t.url}/console/oidc/login`, { redirect: 'manual' });
    expect(start.status).toBe(302);
    const authorize = new URL(start.headers.get('location')!);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${t.url}/console/oidc/callback`);
    const flowCookie = start.headers.getSetCookie().find((c) => c.startsWith('mariner_oidc='))!;
    expect(flowCookie).toMatch(/HttpOnly/);
    expect(flowCookie).toMatch(/SameSite=Lax/);
    const wrongState = await fetch(`${t.url}/console/oidc/callback?code=x&state=not-the-one`, {
      redirect: 'manual',
      headers: { cookie: flowCookie.split(';')[0]! },
    });
    expect(wrongState.headers.get('location')).toBe('/console/#/sign-in?oidc-error=state');
    expect(wrongState.headers.getSetCookie().some((c) => c.startsWith('mariner_console='))).toBe(false);
    // The right state with a made-up code: the provider refuses it, no session.
    const madeUp = await fetch(`${t.url}/console/oidc/callback?code=made-up&state=${authorize.searchParams.get('state')}`, {
      redirect: 'manual',
      headers: { cookie: flowCookie.split(';')[0]! },
    });
    expect(madeUp.headers.get('location')).toBe('/console/#/sign-in?oidc-error=token');
    expect(madeUp.headers.getSetCookie().some((c) => c.startsWith('mariner_console='))).toBe(false);
  });
});
