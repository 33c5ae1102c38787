import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { CliError } from './errors.js';

/**
 * `mariner login --oidc`: the OAuth 2.0 authorization code flow with PKCE (RFC 7636) and a loopback
 * redirect (RFC 8252 §7.3, http://127.0.0.1:<free port>/callback), as a native app does it. The result is
 * the ID token: its audience is the client id, which is the audience the platform checks
 * (MARINER_OIDC_AUDIENCE), and its `exp` is when the login must be repeated.
 */

export interface OidcTokens {
  token: string;
  expiresAt: Date;
}

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  device_authorization_endpoint?: string;
}

const base64url = (bytes: Buffer) => bytes.toString('base64url');

async function discover(issuer: string): Promise<Discovery> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new CliError(`cannot reach the identity provider at ${url}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new CliError(`the identity provider's discovery at ${url} answered ${response.status}`);
  const metadata = (await response.json()) as Partial<Discovery>;
  if (typeof metadata.authorization_endpoint !== 'string' || typeof metadata.token_endpoint !== 'string') {
    throw new CliError(`the identity provider's discovery at ${url} names no authorization and token endpoints`);
  }
  return metadata as Discovery;
}

/** Opens `url` with xdg-open (or open on macOS) when the machine has it; a headless machine just prints it. */
export function openBrowser(url: string): boolean {
  const opener = process.platform === 'darwin' ? 'open' : 'xdg-open';
  const found = (process.env['PATH'] ?? '').split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, opener)));
  if (!found) return false;
  const child = spawn(opener, [url], { stdio: 'ignore', detached: true });
  child.on('error', () => undefined);
  child.unref();
  return true;
}

/** The `exp` of a JWT (not verified here: the platform verifies the token on every request). */
function expiryOf(jwt: string): Date {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    if (typeof payload.exp === 'number') return new Date(payload.exp * 1000);
  } catch {
    // fall through
  }
  throw new CliError('the identity provider returned an ID token without an expiry');
}

async function idTokenFrom(response: Response): Promise<OidcTokens> {
  const tokens = (await response.json().catch(() => ({}))) as { id_token?: string; error?: string; error_description?: string };
  if (!response.ok || !tokens.id_token) {
    throw new CliError(
      `login failed: the identity provider's token endpoint answered ${response.status} ${tokens.error ?? ''} ${tokens.error_description ?? ''}`.trim(),
    );
  }
  return { token: tokens.id_token, expiresAt: expiryOf(tokens.id_token) };
}

/**
 * `mariner login --oidc --device`: the device authorization grant (RFC 8628) for a machine without a
 * browser: it prints a URL and a code to enter on any other device, then polls the token endpoint.
 */
export async function deviceLogin(options: { issuer: string; clientId: string }): Promise<OidcTokens> {
  const metadata = await discover(options.issuer);
  if (!metadata.device_authorization_endpoint) {
    throw new CliError(`the identity provider ${options.issuer} does not offer the device flow: log in with --oidc (a browser) or an API key`);
  }
  const started = await fetch(metadata.device_authorization_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: options.clientId, scope: 'openid email' }),
  });
  const device = (await started.json().catch(() => ({}))) as {
    device_code?: string;
    user_code?: string;
    verification_uri?: string;
    verification_uri_complete?: string;
    interval?: number;
    expires_in?: number;
    error?: string;
    error_description?: string;
  };
  if (!started.ok || !device.device_code || !device.verification_uri) {
    throw new CliError(`login failed: the device authorization answered ${started.status} ${device.error ?? ''} ${device.error_description ?? ''}`.trim());
  }
  process.stderr.write(
    `On any device, open ${device.verification_uri} and enter the code ${device.user_code}` +
      `${device.verification_uri_complete ? `\n(or open ${device.verification_uri_complete})` : ''}\nWaiting for the sign-in...\n`,
  );
  let interval = (device.interval ?? 5) * 1000;
  const deadline = Date.now() + (device.expires_in ?? 600) * 1000;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, interval));
    const response = await fetch(metadata.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: device.device_code, client_id: options.clientId }),
    });
    if (response.status === 400) {
      const { error } = (await response
        .clone()
        .json()
        .catch(() => ({}))) as { error?: string };
      if (error === 'authorization_pending') continue;
      if (error === 'slow_down') {
        interval += 5000;
        continue;
      }
      if (error === 'access_denied') throw new CliError('login failed: the sign-in was refused at the identity provider');
      if (error === 'expired_token') break;
    }
    return idTokenFrom(response);
  }
  throw new CliError('login timed out: the device code expired before anyone signed in');
}

export async function pkceLogin(options: { issuer: string; clientId: string; browser: boolean; timeoutMs?: number }): Promise<OidcTokens> {
  const metadata = await discover(options.issuer);
  const verifier = base64url(randomBytes(32));
  const challenge = base64url(createHash('sha256').update(verifier).digest());
  const state = base64url(randomBytes(16));
  const nonce = base64url(randomBytes(16));

  let settle!: (result: { code: string } | { error: string }) => void;
  const answered = new Promise<{ code: string } | { error: string }>((resolve) => (settle = resolve));
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    // A callback without this login's state is someone else's (or a forged) redirect: it settles nothing.
    if (url.searchParams.get('state') !== state) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('This is not the sign-in mariner started.\n');
      return;
    }
    const code = url.searchParams.get('code');
    const error = url.searchParams.get('error');
    res.writeHead(code ? 200 : 400, { 'content-type': 'text/html; charset=utf-8' });
    res.end(code ? '<p>Signed in to mariner: you may close this window.</p>' : '<p>Sign-in failed: see the terminal.</p>');
    settle(
      code ? { code } : { error: `${error ?? 'no code'}${url.searchParams.get('error_description') ? `: ${url.searchParams.get('error_description')}` : ''}` },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
  try {
    const authorize = new URL(metadata.authorization_endpoint);
    for (const [k, v] of Object.entries({
      response_type: 'code',
      client_id: options.clientId,
      redirect_uri: redirectUri,
      scope: 'openid email',
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }))
      authorize.searchParams.set(k, v);
    process.stderr.write(`Open this URL in a browser to sign in:\n  ${authorize.href}\n`);
    if (options.browser) openBrowser(authorize.href);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CliError('login timed out: nobody completed the sign-in in the browser')), options.timeoutMs ?? 300_000);
    });
    const result = await Promise.race([answered, timeout]).finally(() => clearTimeout(timer));
    if ('error' in result) throw new CliError(`login failed at the identity provider: ${result.error}`);
    const response = await fetch(metadata.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: result.code,
        redirect_uri: redirectUri,
        client_id: options.clientId,
        code_verifier: verifier,
      }),
    });
    return await idTokenFrom(response);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}
