import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { ApolloServerPlugin } from '@apollo/server';
import { Kind, print } from 'graphql';
import { unauthenticated } from '../lib/errors.js';
import { headerValue } from '../lib/http.js';
import type { Identity, InternalTokens, Principal, Worker } from '../lib/identity.js';
import { asSystem, createInternalClient } from '../lib/internalClient.js';
import { PRINCIPALS_CHANNEL, type PubSub } from '../lib/pubsub.js';
import { resolveProject } from '../schema/rbac/projectResolution.js';
import type { RoleScopeTable } from '../schema/rbac/roleScopes.js';
import { subgraphTypeDefs } from '../schema/subgraphs.js';
import type { GatewayContext } from './context.js';
import { WorkerByRegistrationKeyDocument } from './generated/clustersOperations.js';
import { PrincipalByApiKeyDocument, PrincipalByEmailDocument } from './generated/usersOperations.js';
import { looksLikeJwt, OidcTokenError, type OidcVerifier } from './oidc.js';

export interface AuthenticatorOptions {
  /** Where the users subgraph runs; principals are looked up there with a system token. */
  usersUrl: string;
  /** Where the clusters subgraph runs; registration keys are looked up there with a system token. */
  clustersUrl: string;
  tokens: InternalTokens;
  roleScopes: RoleScopeTable;
  oidc: OidcVerifier | null;
  /**
   * The announcements of principal changes (lib/pubsub.ts PRINCIPALS_CHANNEL, made by the users
   * subgraph). With them the authenticator caches principals; without, it looks one up per request.
   */
  invalidations?: PrincipalInvalidations;
  /** The principal cache's bounds; defaults in PRINCIPAL_CACHE_DEFAULTS. */
  cache?: Partial<PrincipalCacheLimits>;
}

/** What the principal cache needs of the bus: the announcements, and word of events it may have missed. */
export type PrincipalInvalidations = Pick<PubSub, 'subscribe' | 'onReset'>;

export interface PrincipalCacheLimits {
  /** Credentials held at most; the least recently used goes first. */
  maxEntries: number;
  /** How long a principal is served from the cache at most, announcements or not. */
  ttlMs: number;
}

export const PRINCIPAL_CACHE_DEFAULTS: PrincipalCacheLimits = { maxEntries: 10_000, ttlMs: 60_000 };

/** Who a request comes from: a user (API key or OIDC token), a cluster agent (registration key), or nobody. */
export interface Credentials {
  identity: Identity | null;
  worker: Worker | null;
  /** When the credential stops being valid (OIDC tokens); API and registration keys last until revoked. */
  expiresAt?: Date;
}

export interface Authenticator {
  /** Both null for an anonymous request; throws UNAUTHENTICATED for a credential that is not valid. */
  authenticate(token: string | undefined, headers: IncomingHttpHeaders, requestId: string): Promise<Credentials>;
  /**
   * This replica forwarded a change to principals of `tenantId` (empty: of every tenant): the ones it
   * caches are dropped at once, so the caller's next request here sees the change even before the
   * announcement comes back over LISTEN/NOTIFY (createPrincipalChangesPlugin).
   */
  principalsChanged(tenantId: string): void;
}

/** Cluster registration keys (LLMariner `clusterkey-...`). */
export const REGISTRATION_KEY_PREFIX = 'clusterkey-';

/**
 * The gateway's principal lookup for an API key, as text (for the benchmark, which builds the same
 * identity); the operations are in operations/users.graphql and operations/clusters.graphql.
 */
export const BY_API_KEY = print(PrincipalByApiKeyDocument);

/**
 * Authentication (DESIGN §4): API keys (`sk-...`) are looked up by hash in the users subgraph;
 * anything shaped like a JWT is verified against the OIDC issuer and its email mapped to a user;
 * cluster registration keys (`clusterkey-...`) are looked up by hash in the clusters subgraph and
 * authenticate a worker (LLMariner AuthorizeWorker), which may call the worker API only. The project
 * context comes from the key, else the OpenAI-Organization / OpenAI-Project headers, else the
 * user's default project, on every request.
 *
 * With `invalidations`, the principals of API keys (by the key's SHA-256: the secret itself is kept
 * nowhere) and of OIDC users (by email, once the token verified: a token's signature and expiry are
 * checked on every request) are cached, which saves the users subgraph call on most requests. It is
 * safe because the users subgraph announces every change to a principal after it commits
 * (subgraphs/users/principalChanges.ts), and each replica's cache drops the tenant's entries when it
 * hears it: a deleted key or a removed member stops working on every replica once the NOTIFY is
 * delivered, and on the replica that forwarded the change before its answer is sent
 * (createPrincipalChangesPlugin: the caller reads its own writes). Where that path may have failed the cache steps aside: nothing is cached until the
 * subscription is in place, everything is dropped and nothing cached while the bus says events may be
 * missed (a lost LISTEN connection, `onReset`), and a lookup that overlapped an announcement is not
 * kept (it may have read the state before the change). The TTL is the backstop for what no signal
 * reveals (a NOTIFY that failed to be sent, a listening connection that hangs without ending).
 * Unknown keys and failed lookups are never cached; registration keys are not cached at all.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const cache = options.invalidations ? createPrincipalCache(options.invalidations, { ...PRINCIPAL_CACHE_DEFAULTS, ...options.cache }) : null;
  const users = createInternalClient({ subgraph: 'users', url: options.usersUrl, tokens: options.tokens });
  const clusters = createInternalClient({ subgraph: 'clusters', url: options.clustersUrl, tokens: options.tokens });
  /**
   * A credential lookup the subgraph could not answer is the platform's failure, not the caller's:
   * whatever the subgraph said, it surfaces as an internal error (logged with the request id).
   */
  async function lookup<T>(call: Promise<T>): Promise<T> {
    try {
      return await call;
    } catch (error) {
      throw new Error(`credential lookup failed: ${(error as Error).message}`, { cause: error });
    }
  }

  return {
    principalsChanged: (tenantId) => cache?.drop(tenantId),
    async authenticate(token, headers, requestId) {
      if (token === undefined) return { identity: null, worker: null };
      let principal: Principal | null;
      if (token.startsWith(REGISTRATION_KEY_PREFIX)) {
        const { worker } = await lookup(clusters.request(asSystem(requestId), WorkerByRegistrationKeyDocument, { key: token }));
        if (!worker) throw unauthenticated('Invalid registration key: the cluster is not registered (or was unregistered)');
        return { identity: null, worker };
      } else if (token.startsWith('sk-')) {
        const find = async () => (await lookup(users.request(asSystem(requestId), PrincipalByApiKeyDocument, { secret: token }))).principal;
        principal = cache ? await cache.principal(`key:${sha256(token)}`, find) : await find();
        if (!principal) throw unauthenticated('Invalid API key');
      } else if (looksLikeJwt(token)) {
        if (!options.oidc) throw unauthenticated('OIDC tokens are not accepted: no issuer is configured');
        let email: string;
        let expiresAt: Date;
        try {
          ({ email, expiresAt } = await options.oidc.verify(token));
        } catch (error) {
          if (error instanceof OidcTokenError) throw unauthenticated(`Invalid token: ${error.message}`);
          throw error;
        }
        const find = async () => (await lookup(users.request(asSystem(requestId), PrincipalByEmailDocument, { email }))).principal;
        principal = cache ? await cache.principal(`email:${email}`, find) : await find();
        if (!principal) throw unauthenticated(`No Mariner user for ${email}: ask an organization owner to add you`);
        return { ...identityOf(principal, headers), expiresAt };
      } else {
        throw unauthenticated('Unrecognised credential: expected an API key (sk-...), an OIDC token or a cluster registration key');
      }
      return identityOf(principal, headers);
    },
  };

  /** The principal in the project its key or the OpenAI-Organization/-Project headers select (DESIGN §4). */
  function identityOf(principal: Principal, headers: IncomingHttpHeaders): Credentials {
    const resolution = resolveProject(
      principal,
      { organizationId: headerValue(headers, 'openai-organization'), projectId: headerValue(headers, 'openai-project') },
      options.roleScopes,
    );
    const identity: Identity = resolution.ok ? { principal, project: resolution.context } : { principal, project: null, projectRefusal: resolution.reason };
    return { identity, worker: null };
  }
}

/**
 * Read-your-writes for the principal cache: a mutation of the users subgraph forwarded by this gateway
 * drops the caller's tenant's cached principals before its answer is sent. The announcement over
 * LISTEN/NOTIFY is sent when the change commits and usually arrives first, but nothing orders it
 * before the caller's next request (a loaded replica may read its socket late); this does, on the
 * replica the caller used. Apollo plugins also run for operations sent over graphql-ws. A mutation
 * of other subgraphs (most of them: completions, jobs, files) changes no principal and drops nothing.
 */
export function createPrincipalChangesPlugin(authenticator: () => Pick<Authenticator, 'principalsChanged'>): ApolloServerPlugin<GatewayContext> {
  const usersMutations = new Set<string>();
  for (const definition of subgraphTypeDefs('users').definitions) {
    const isMutation =
      (definition.kind === Kind.OBJECT_TYPE_DEFINITION || definition.kind === Kind.OBJECT_TYPE_EXTENSION) && definition.name.value === 'Mutation';
    if (isMutation) for (const field of definition.fields ?? []) usersMutations.add(field.name.value);
  }
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ operation, contextValue }) {
          if (operation?.operation !== 'mutation') return;
          // A fragment at the root may hold any field: counted as a change.
          const changes = operation.selectionSet.selections.some((s) => s.kind !== Kind.FIELD || usersMutations.has(s.name.value));
          if (changes) authenticator().principalsChanged(contextValue.identity?.principal.tenantId ?? '');
        },
      };
    },
  };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

/**
 * Principals by credential, for createAuthenticator (whose comment says why it is safe). Lookups run
 * uncached until the subscription to PRINCIPALS_CHANNEL is in place, and from a reset's `lost` until
 * its `listening`. Each announcement, reset and subscription moves `generation` on; a lookup is kept
 * only if none came while it ran.
 */
function createPrincipalCache(invalidations: PrincipalInvalidations, limits: PrincipalCacheLimits) {
  /** In least recently used order: a hit moves its entry to the end. */
  const entries = new Map<string, { principal: Principal; until: number }>();
  let generation = 0;
  let subscribed = false;
  let missingEvents = false;
  const active = () => subscribed && !missingEvents;

  /** Drops the tenant's principals (an empty tenant: all) and keeps no lookup that overlapped. */
  const drop = (tenantId: string) => {
    generation++;
    for (const [key, entry] of entries) if (!tenantId || entry.principal.tenantId === tenantId) entries.delete(key);
  };

  invalidations.onReset((state) => {
    generation++;
    entries.clear();
    missingEvents = state === 'lost';
  });
  void invalidations.subscribe(PRINCIPALS_CHANNEL, drop).then(
    () => {
      generation++;
      subscribed = true;
    },
    // Without the subscription, nothing is ever cached: every request looks its principal up.
    () => undefined,
  );

  return {
    drop,
    /** The principal `key` names: from the cache, else `find` (kept when it found one). */
    async principal(key: string, find: () => Promise<Principal | null>): Promise<Principal | null> {
      if (!active()) return find();
      const hit = entries.get(key);
      if (hit && hit.until > Date.now()) {
        entries.delete(key);
        entries.set(key, hit);
        return hit.principal;
      }
      if (hit) entries.delete(key);
      const started = generation;
      const principal = await find();
      if (principal && active() && generation === started) {
        // Shared by the requests that hit it: frozen, so that none can change it for the others.
        entries.set(key, { principal: deepFreeze(principal), until: Date.now() + limits.ttlMs });
        if (entries.size > limits.maxEntries) entries.delete(entries.keys().next().value!);
      }
      return principal;
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
