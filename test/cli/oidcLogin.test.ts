import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { until } from '../support/until.js';
import { cliHome, ROOT, runCli, TSX, type CliResult } from './cliProcess.js';

const CLIENT_ID = 'mariner-cli';

type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => { callback(): (req: IncomingMessage, res: ServerResponse) => void };

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

/**
 * The person's browser, as plain HTTP: follows redirects keeping the provider's cookies, and submits the
 * provider's login form (any login, any password) and consent form, until the provider redirects to the
 * CLI's loopback callback, which it then opens too. Returns the callback's answer.
 */
async function signInAsBrowser(authorizeUrl: string, login: string): Promise<{ status: number; body: string }> {
  const cookies = new Map<string, string>();
  let url = authorizeUrl;
  let method = 'GET';
  let body: URLSearchParams | undefined;
  for (let hop = 0; hop < 20; hop++) {
    const response = await fetch(url, {
      method,
      redirect: 'manual',
      headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
      ...(body ? { body } : {}),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [k, ...v] = pair!.split('=');
      cookies.set(k!.trim(), v.join('='));
    }
    const text = await response.text();
    if (new URL(url).pathname === '/callback') return { status: response.status, body: text };
    const location = response.headers.get('location');
    if (location) {
      url = new URL(location, url).href;
      method = 'GET';
      body = undefined;
      continue;
    }
    const form = /<form[^>]*>[\s\S]*?<\/form>/.exec(text)?.[0];
    const action = form && /action="([^"]+)"/.exec(form)?.[1];
    // A page without a form is where the provider leaves the person (the device flow's "you may close this").
    if (!form || !action) return { status: response.status, body: text };
    const fields = new URLSearchParams();
    for (const input of form.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
      const name = /name="([^"]+)"/.exec(input[0])?.[1];
      if (name) fields.set(name, /value="([^"]*)"/.exec(input[0])?.[1] ?? '');
    }
    if (fields.get('prompt') === 'login') {
      fields.set('login', login);
      fields.set('password', 'anything');
    }
    url = new URL(action, url).href;
    method = 'POST';
    body = fields;
  }
  throw new Error('too many redirects');
}

/**
 * Issue 19: `mariner login --oidc` against a real OpenID provider (oidc-provider 9) with a public client:
 * the CLI prints the URL, the person signs in at the provider in a browser (here plain HTTP requests on its
 * login and consent forms), the provider redirects to the CLI's loopback callback, and the CLI keeps the ID
 * token like a key (owner-only file) with its expiry.
 */
describe('mariner login --oidc', () => {
  let t: TestPlatform;
  let idp: ReturnType<typeof createServer>;
  let issuer: string;
  let home: string;
  let env: NodeJS.ProcessEnv;
  const cli = (args: string[]): Promise<CliResult> => runCli(env, args, { cwd: home });

  beforeAll(async () => {
    idp = createServer();
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`;
    t = await startTestPlatform({ config: { oidc: { issuer, audience: CLIENT_ID, emailClaim: 'email' } } });
    const specifier: string = 'oidc-provider';
    const Provider = ((await import(specifier)) as { default: ProviderConstructor }).default;
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const provider = new Provider(issuer, {
      // A native public client (RFC 8252): PKCE, no secret, a loopback redirect on any port.
      clients: [
        {
          client_id: CLIENT_ID,
          application_type: 'native',
          token_endpoint_auth_method: 'none',
          grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
          response_types: ['code'],
          redirect_uris: ['http://127.0.0.1/callback'],
        },
      ],
      adapter: mapAdapter(),
      jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] },
      cookies: { keys: [randomBytes(32).toString('base64url')] },
      ttl: { Interaction: 600, Session: 600, Grant: 600, AccessToken: 600, IdToken: 600 },
      findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub, email: sub, email_verified: true }) }),
      claims: { openid: ['sub'], email: ['email', 'email_verified'] },
      conformIdTokenClaims: false,
      features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true } },
    });
    idp.on('request', provider.callback());
    ({ home, env } = cliHome());
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    idp?.closeAllConnections();
    idp?.close();
  });

  /** Starts `mariner login --oidc ...`, waits for the URL it prints, signs in there as `login`. */
  async function loginThroughBrowser(login: string, extra: string[] = []) {
    const child = spawn(
      process.execPath,
      ['--import', TSX, path.join(ROOT, 'bin/mariner.ts'), 'login', '--url', t.url, '--oidc', '--issuer', issuer, '--client-id', CLIENT_ID, ...extra],
      { cwd: home, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await until(() => /https?:\/\/\S+\/auth\?\S+/.test(stderr), 'the sign-in URL', 30_000);
    const authorize = new URL(/(https?:\/\/\S+\/auth\?\S+)/.exec(stderr)![1]!);
    const callback = await signInAsBrowser(authorize.href, login);
    return { authorize, callback, code: await exited, stdout: () => stdout, stderr: () => stderr };
  }

  it('signs in with PKCE and a loopback redirect, keeps the token owner-only with its expiry, and whoami is the person', async () => {
    const login = await loginThroughBrowser('admin@example.com', ['-o', 'json']);
    expect(login.authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(login.authorize.searchParams.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    expect(login.callback).toMatchObject({ status: 200, body: expect.stringContaining('you may close this window') });
    expect(login.code, login.stderr()).toBe(0);
    const out = JSON.parse(login.stdout());
    expect(out).toMatchObject({ url: t.url, user: 'admin@example.com', expiresAt: expect.any(String) });
    expect(Date.parse(out.expiresAt)).toBeGreaterThan(Date.now());
    const file = path.join(home, '.config', 'mariner', 'config.yaml');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const [context] = YAML.parse(readFileSync(file, 'utf8')).contexts;
    expect(context).toMatchObject({ url: t.url, 'token-expires-at': out.expiresAt, 'oidc-issuer': issuer, 'oidc-client-id': CLIENT_ID });
    expect(context['api-key'].split('.')).toHaveLength(3);
    const who = await cli(['whoami', '-o', 'json']);
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout)).toMatchObject({ user: 'admin@example.com', serviceAccount: false });
    expect((await cli(['models', 'list', '-o', 'json'])).code).toBe(0);
  }, 60_000);

  it('a person who is not a Mariner user is refused and nothing is saved', async () => {
    const file = path.join(home, '.config', 'mariner', 'config.yaml');
    const before = readFileSync(file, 'utf8');
    const login = await loginThroughBrowser('stranger@example.com', ['--name', 'stranger']);
    expect(login.code).toBe(1);
    expect(login.stderr()).toContain('login failed');
    expect(readFileSync(file, 'utf8')).toBe(before);
  }, 60_000);

  it('an expired token says to log in again; --oidc without a client id is a usage error', async () => {
    const file = path.join(home, '.config', 'mariner', 'config.yaml');
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.contexts[0]['token-expires-at'] = new Date(Date.now() - 60_000).toISOString();
    writeFileSync(file, YAML.stringify(config), { mode: 0o600 });
    const expired = await cli(['models', 'list']);
    expect(expired.code).toBe(1);
    expect(expired.stderr).toContain('expired');
    expect(expired.stderr).toContain('mariner login --oidc');

    // (A context of an earlier OIDC login reuses its issuer and client id; a new one has neither.)
    const usage = await cli(['login', '--url', t.url, '--name', 'fresh', '--oidc', '--issuer', issuer]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--client-id');
  }, 60_000);

  it('--device: the code shown is entered at the provider on another device, and the CLI logs in as that person', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        TSX,
        path.join(ROOT, 'bin/mariner.ts'),
        'login',
        '--url',
        t.url,
        '--name',
        'headless',
        '--oidc',
        '--device',
        '--issuer',
        issuer,
        '--client-id',
        CLIENT_ID,
      ],
      { cwd: home, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await until(() => /\(or open (\S+)\)/.test(stderr), 'the device code', 30_000);
    expect(stderr).toMatch(/enter the code \S+/);
    const complete = /\(or open (\S+)\)/.exec(stderr)![1]!;
    const page = await signInAsBrowser(complete, 'admin@example.com');
    expect(page.status).toBe(200);
    expect(await exited, stderr).toBe(0);
    expect(stdout).toContain('Logged in to');
    expect(stdout).toContain('admin@example.com');
    const who = await cli(['whoami', '--context', 'headless', '-o', 'json']);
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout)).toMatchObject({ user: 'admin@example.com' });
  }, 60_000);
});
