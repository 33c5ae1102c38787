/**
 * The console's OIDC sign-in in headless Chromium, against a real OpenID provider (oidc-provider 9 with
 * its own login and consent pages) on loopback: the person clicks "Sign in with your identity provider",
 * types their login on the provider's form, consents, and lands in the console signed in as their Mariner
 * user, with the same HttpOnly SameSite=Strict session cookie an API key gets. A callback this browser did
 * not start is refused; a person who is not a Mariner user is told so; sign-out revokes the session. The
 * provider's ID tokens last seconds: the console renews the session with its refresh token while the person
 * works, and when the provider ends the session the console says so and signs back in to the same page (as it does
 * for an API key's session whose key is deleted).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { consoleBuilt, hasChromium, launchChromium, screenshotPath, CHROMIUM_PATH } from './support/browser.js';
import { listenTestLoginProvider, type TestLoginProvider } from './support/oidcProvider.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

const run = hasChromium || process.env['CI'] ? describe : describe.skip;
const CLIENT_ID = 'mariner-console';
/** Short ID tokens, so that the console renews its session (refresh tokens) while the test runs. */
const ID_TOKEN_SECONDS = 20;

let t: TestPlatform;
let browser: Browser;
let idp: TestLoginProvider;

run(`OIDC sign-in to the console in Chromium (${CHROMIUM_PATH})`, () => {
  beforeAll(async () => {
    // The issuer contains the provider's port and the client's redirect URI the platform's: bind, start, then serve.
    idp = await listenTestLoginProvider();
    const [platform, launched] = await Promise.all([
      consoleBuilt().then(() => startTestPlatform({ embedded: true, config: { oidc: { issuer: idp.issuer, audience: CLIENT_ID, emailClaim: 'email' } } })),
      launchChromium(),
    ]);
    t = platform;
    browser = launched;
    await idp.serve({ clientId: CLIENT_ID, redirectUri: `${t.url}/console/oidc/callback`, idTokenSeconds: ID_TOKEN_SECONDS, refresh: true });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await idp?.close();
  });

  /** The provider's dev pages import a web font; nothing leaves loopback. */
  async function loopbackOnly(page: Page): Promise<void> {
    await page.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
  }

  /** From the console's sign-in page: the provider's login form, then its consent. */
  async function loginAtProvider(page: Page, login: string, screenshot?: string): Promise<void> {
    await page.getByRole('link', { name: 'Sign in with your identity provider' }).click();
    await page.getByPlaceholder('Enter any login').fill(login);
    await page.getByPlaceholder('and password').fill('anything');
    if (screenshot) await page.screenshot({ path: screenshotPath(screenshot) });
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
  }

  async function signInAtProvider(page: Page, login: string): Promise<void> {
    await page.goto(`${t.url}/console/`);
    await loginAtProvider(page, login, 'oidc-01-provider-login');
  }

  /** `{ self { id } }` with a cookie, as a copied cookie would be replayed. */
  async function selfWith(cookie: { name: string; value: string }): Promise<number> {
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mariner-csrf': '1', cookie: `${cookie.name}=${cookie.value}` },
      body: JSON.stringify({ query: '{ self { id } }' }),
    });
    await response.arrayBuffer();
    return response.status;
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

  it(
    'the session outlives its ID token by refreshing it; when the provider ends it, the console says so and signs back in to the same page',
    { timeout: 180_000 },
    async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await context.newPage();
      await loopbackOnly(page);
      const pageErrors: string[] = [];
      page.on('pageerror', (error) => pageErrors.push(error.message));
      const sessionCookie = async () => (await context.cookies(t.url)).find((c) => c.name === 'mariner_console');

      await signInAtProvider(page, 'admin@example.com');
      await page.getByRole('heading', { name: 'Models' }).waitFor({ timeout: 20_000 });
      await page.getByRole('link', { name: 'API keys' }).click();
      await page.getByRole('table', { name: 'API keys' }).waitFor();
      expect(new URL(page.url()).hash).toBe('#/keys');
      const first = (await sessionCookie())!;

      // Before the ID token expires, the console renews it: the cookie is set again (still HttpOnly, SameSite=Strict).
      await expect.poll(async () => (await sessionCookie())?.value, { timeout: 60_000 }).not.toBe(first.value);
      expect(await sessionCookie()).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
      // The first cookie's ID token expires (a copy of it stops working) while the page, renewed, goes on working.
      await expect.poll(() => selfWith(first), { timeout: 60_000, interval: 1000 }).toBe(401);
      expect(await selfWith((await sessionCookie())!)).toBe(200);
      await page.getByRole('link', { name: 'Models', exact: true }).click();
      await page.getByRole('heading', { name: 'Models' }).waitFor();
      await page.getByRole('link', { name: 'API keys' }).click();
      await page.getByRole('table', { name: 'API keys' }).waitFor();
      expect(await page.getByText('Your session expired').count()).toBe(0);

      // The provider ends the session (an administrator revoked it): the next renewal is refused, and the console says so
      // on its sign-in, keeping the page the person was on.
      idp.endSessions();
      await page.getByText('Your session expired — sign in again').waitFor({ timeout: 60_000 });
      expect(new URL(page.url()).hash).toBe('#/keys');
      expect(await sessionCookie()).toBeUndefined();
      await page.screenshot({ path: screenshotPath('oidc-04-session-expired') });

      // Signing in again comes back to that page.
      await loginAtProvider(page, 'admin@example.com');
      await page.getByRole('table', { name: 'API keys' }).waitFor({ timeout: 20_000 });
      expect(new URL(page.url()).hash).toBe('#/keys');
      expect(await page.getByText('Your session expired').count()).toBe(0);
      await page.screenshot({ path: screenshotPath('oidc-05-back-on-the-page') });
      expect(pageErrors).toEqual([]);
      await context.close();
    },
  );

  it("an API key's session ends when the key is deleted: the console says so and signs back in to the same page", { timeout: 90_000 }, async () => {
    const other = await projectWithKey(t, 'console-expiring');
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${t.url}/console/#/keys`);
    await page.getByLabel('API key').fill(other.key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('table', { name: 'API keys' }).waitFor({ timeout: 20_000 });

    // The key is deleted elsewhere; the next thing the person does is refused, and the console says why.
    const { apiKeys } = await t.gqlOk<{ apiKeys: { items: { id: string }[] } }>('{ apiKeys { items { id } } }', {}, { token: other.key });
    await t.gqlOk('mutation($id: ID!) { deleteApiKey(id: $id) { deleted } }', { id: apiKeys.items[0]!.id }, { token: other.key });
    await page.getByLabel("New key's name").fill('after-the-end');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByText('Your session expired — sign in again').waitFor({ timeout: 30_000 });
    expect(new URL(page.url()).hash).toBe('#/keys');

    await page.getByLabel('API key').fill(t.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('table', { name: 'API keys' }).waitFor({ timeout: 20_000 });
    expect(new URL(page.url()).hash).toBe('#/keys');
    expect(await page.getByText('Your session expired').count()).toBe(0);
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
    const start = await fetch(`${t.url}/console/oidc/login?return=${encodeURIComponent('#/keys')}`, { redirect: 'manual' });
    expect(start.status).toBe(302);
    const authorize = new URL(start.headers.get('location')!);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    // The provider offers refresh tokens: the sign-in asks for one.
    expect(authorize.searchParams.get('scope')?.split(' ')).toContain('offline_access');
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
    // Back to sign-in, which keeps the page to return to.
    expect(madeUp.headers.get('location')).toBe(`/console/#/sign-in?oidc-error=token&return=${encodeURIComponent('#/keys')}`);
    expect(madeUp.headers.getSetCookie().some((c) => c.startsWith('mariner_console='))).toBe(false);

    // Only a console page is a place to return to: anything else is dropped, never a redirect elsewhere.
    for (const elsewhere of ['https://elsewhere.example/', '//elsewhere.example', '#/../../x', '#/keys?x=<script>']) {
      const started = await fetch(`${t.url}/console/oidc/login?return=${encodeURIComponent(elsewhere)}`, { redirect: 'manual' });
      const flow = started.headers.getSetCookie().find((c) => c.startsWith('mariner_oidc='))!;
      const state = new URL(started.headers.get('location')!).searchParams.get('state');
      const answered = await fetch(`${t.url}/console/oidc/callback?code=made-up&state=${state}`, {
        redirect: 'manual',
        headers: { cookie: flow.split(';')[0]! },
      });
      expect(answered.headers.get('location')).toBe('/console/#/sign-in?oidc-error=token');
    }

    // A refresh needs the console's own page (CSRF) and a session; without one it says the session expired.
    const crossSite = await fetch(`${t.url}/console/session/refresh`, {
      method: 'POST',
      headers: { origin: 'http://elsewhere.example', 'x-mariner-csrf': '1' },
    });
    expect(crossSite.status).toBe(403);
    const noSession = await fetch(`${t.url}/console/session/refresh`, { method: 'POST', headers: { 'x-mariner-csrf': '1' } });
    expect(noSession.status).toBe(401);
    expect(((await noSession.json()) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');
  });
});
