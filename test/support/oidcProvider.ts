import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';

/**
 * A real OpenID provider (oidc-provider) on loopback, so the gateway's OIDC
 * verification is tested against genuine discovery, JWKS and token responses
 * rather than against tokens we mint ourselves.
 */

export interface TestOidcProvider {
  /** e.g. http://127.0.0.1:PORT */
  issuer: string;
  /** Client-credentials access token (JWT, signed by the provider's JWKS) for a user email. */
  tokenFor(email: string, options?: { audience?: string }): Promise<string>;
  /** Correctly signed by the provider's key, right iss/aud, expiring `seconds` from now. */
  shortLivedTokenFor(email: string, seconds: number): Promise<string>;
  /** Correctly signed by the provider's key, right iss/aud, but expired ten minutes ago. */
  expiredTokenFor(email: string): Promise<string>;
  /** Right iss/aud/kid, but signed by a key the provider does not publish. */
  foreignTokenFor(email: string): Promise<string>;
  close(): Promise<void>;
}

/** The slice of oidc-provider's API used here; v9 ships no type declarations. */
type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;
interface ProviderInstance {
  callback(): RequestListener;
}
type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;
/** oidc-provider passes its Koa context; only header access is needed. */
interface KoaContext {
  get(header: string): string;
}

/**
 * The client-credentials token request has no end user and oidc-provider 9
 * drops any token-endpoint parameter its grant does not declare (`extraParams`
 * only applies to the authorization endpoint), so the email travels in a
 * request header that `extraTokenClaims` reads back.
 */
const EMAIL_HEADER = 'x-test-email';

/**
 * Resource indicators must be absolute URIs (RFC 8707), but audiences such as
 * "mariner" are plain strings; plain audiences are wrapped in a URN and
 * unwrapped again when the provider asks what the resource server is.
 */
const AUDIENCE_URN_PREFIX = 'urn:mariner-test:audience:';

function resourceFor(audience: string): string {
  return URL.canParse(audience) && !audience.includes('#') ? audience : `${AUDIENCE_URN_PREFIX}${encodeURIComponent(audience)}`;
}

function audienceOf(resource: string): string {
  return resource.startsWith(AUDIENCE_URN_PREFIX) ? decodeURIComponent(resource.slice(AUDIENCE_URN_PREFIX.length)) : resource;
}

/**
 * A plain Map store. oidc-provider's built-in one works the same but warns on
 * every start; nothing here outlives the test process anyway. `clear()` forgets
 * everything: every session, grant and refresh token the provider gave.
 */
function mapAdapter() {
  const store = new Map<string, Record<string, unknown>>();
  return class MapAdapter {
    static clear(): void {
      store.clear();
    }
    constructor(private readonly model: string) {}
    private key(id: string): string {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: Record<string, unknown>): Promise<void> {
      store.set(this.key(id), payload);
    }
    async find(id: string): Promise<Record<string, unknown> | undefined> {
      return store.get(this.key(id));
    }
    async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      return [...store.values()].find((payload) => payload.uid === uid);
    }
    async findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
      return [...store.values()].find((payload) => payload.userCode === userCode);
    }
    async consume(id: string): Promise<void> {
      const payload = store.get(this.key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string): Promise<void> {
      store.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      for (const [key, payload] of store) if (payload.grantId === grantId) store.delete(key);
    }
  };
}

async function loadProvider(): Promise<ProviderConstructor> {
  // A non-literal specifier keeps TypeScript from demanding declarations the
  // package does not have; at runtime it is the ordinary ESM default export.
  const specifier: string = 'oidc-provider';
  const module = (await import(specifier)) as { default: ProviderConstructor };
  return module.default;
}

function listen(server: ReturnType<typeof createServer>): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export async function startTestOidcProvider(options: { audience?: string } = {}): Promise<TestOidcProvider> {
  const defaultAudience = options.audience ?? 'mariner';
  const kid = randomUUID();
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };

  // The issuer has to contain the port, so bind first and attach the provider after.
  const server = createServer();
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}`;

  const clientId = 'mariner-test-client';
  const clientSecret = randomBytes(32).toString('base64url');

  const Provider = await loadProvider();
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    adapter: mapAdapter(),
    jwks: { keys: [signingJwk] },
    // Explicit so the provider does not warn about using its default.
    ttl: { ClientCredentials: 600 },
    // Only cookie signing uses these; set so the provider does not run keyless.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      // No interactive login in tests; this also avoids its dev-only warning.
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resourceFor(defaultAudience),
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resourceIndicator: string) => ({
          scope: 'api',
          audience: audienceOf(resourceIndicator),
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: async (ctx: KoaContext) => {
      const email = ctx.get(EMAIL_HEADER);
      // An empty email yields a token without the claim, for negative tests.
      return email ? { email } : undefined;
    },
  });
  server.on('request', provider.callback());

  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as {
    token_endpoint: string;
  };

  async function signed(email: string, key: CryptoKey, expiresAt: number): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ email })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
      .setIssuer(issuer)
      .setAudience(defaultAudience)
      .setSubject(clientId)
      .setIssuedAt(Math.min(now, expiresAt - 60))
      .setExpirationTime(expiresAt)
      .setJti(randomUUID())
      .sign(key);
  }

  return {
    issuer,

    async tokenFor(email, tokenOptions = {}) {
      const response = await fetch(discovery.token_endpoint, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
          ...(email ? { [EMAIL_HEADER]: email } : {}),
        },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          resource: resourceFor(tokenOptions.audience ?? defaultAudience),
          scope: 'api',
        }),
      });
      const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!response.ok || !body.access_token) {
        throw new Error(`token request failed: ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`);
      }
      return body.access_token;
    },

    async shortLivedTokenFor(email, seconds) {
      return signed(email, privateKey, Math.floor(Date.now() / 1000) + seconds);
    },

    async expiredTokenFor(email) {
      // Well past the verifier's clock tolerance.
      return signed(email, privateKey, Math.floor(Date.now() / 1000) - 600);
    },

    async foreignTokenFor(email) {
      const { privateKey: foreignKey } = await generateKeyPair('RS256');
      return signed(email, foreignKey, Math.floor(Date.now() / 1000) + 600);
    },

    async close() {
      // fetch keeps connections alive; without this close() would wait for them to idle out.
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}

/**
 * A provider people sign in to in a browser (authorization code + PKCE): oidc-provider's own login and consent
 * pages (any login, any password; the login is the account's email), one public client, ID tokens carrying the
 * email as Dex's do. Refresh tokens for `offline_access` when the client may use them.
 */
export interface TestLoginProvider {
  /** e.g. http://127.0.0.1:PORT */
  issuer: string;
  /** Starts answering, for a client that the platform at `redirectUri` is. */
  serve(client: { clientId: string; redirectUri: string; idTokenSeconds?: number; refresh?: boolean }): Promise<void>;
  /** Ends every session, grant and refresh token at the provider (an administrator revoking them): the person signs in again. */
  endSessions(): void;
  close(): Promise<void>;
}

/** Binds first (the issuer contains the port, the platform's configuration the issuer), serves once told its client. */
export async function listenTestLoginProvider(): Promise<TestLoginProvider> {
  const server = createServer();
  const issuer = `http://127.0.0.1:${await listen(server)}`;
  const Adapter = mapAdapter();
  return {
    issuer,
    async serve({ clientId, redirectUri, idTokenSeconds = 600, refresh = false }) {
      const Provider = await loadProvider();
      const { privateKey } = await generateKeyPair('RS256', { extractable: true });
      const provider = new Provider(issuer, {
        // A public client: PKCE instead of a secret, as a browser sign-in is set up at Dex.
        clients: [
          {
            client_id: clientId,
            token_endpoint_auth_method: 'none',
            grant_types: refresh ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
            response_types: ['code'],
            redirect_uris: [redirectUri],
          },
        ],
        adapter: Adapter,
        jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] },
        cookies: { keys: [randomBytes(32).toString('base64url')] },
        ttl: { Interaction: 600, Session: 600, Grant: 600, AccessToken: 600, IdToken: idTokenSeconds, RefreshToken: 600 },
        // Whoever types a login is that account; its email is the login.
        findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub, email: sub, email_verified: true }) }),
        claims: { openid: ['sub'], email: ['email', 'email_verified'] },
        // The ID token carries the email (as Dex's does) rather than only the userinfo endpoint.
        conformIdTokenClaims: false,
        features: { devInteractions: { enabled: true } },
      });
      server.on('request', provider.callback());
    },
    endSessions() {
      Adapter.clear();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
