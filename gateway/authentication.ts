import type { IncomingHttpHeaders } from 'node:http';
import { print } from 'graphql';
import { unauthenticated } from '../lib/errors.js';
import { headerValue } from '../lib/http.js';
import type { Identity, InternalTokens, Principal, Worker } from '../lib/identity.js';
import { asSystem, createInternalClient } from '../lib/internalClient.js';
import { resolveProject } from '../schema/rbac/projectResolution.js';
import type { RoleScopeTable } from '../schema/rbac/roleScopes.js';
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
}

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
 * authenticate a worker (LLMariner AuthorizeWorker), which may call the worker API only.
 * Nothing is cached, so a deleted key or a removed member stops working at once. The project
 * context comes from the key, else the OpenAI-Organization / OpenAI-Project headers, else the
 * user's default project.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
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
    async authenticate(token, headers, requestId) {
      if (token === undefined) return { identity: null, worker: null };
      let principal: Principal | null;
      if (token.startsWith(REGISTRATION_KEY_PREFIX)) {
        const { worker } = await lookup(clusters.request(asSystem(requestId), WorkerByRegistrationKeyDocument, { key: token }));
        if (!worker) throw unauthenticated('Invalid registration key: the cluster is not registered (or was unregistered)');
        return { identity: null, worker };
      } else if (token.startsWith('sk-')) {
        ({ principal } = await lookup(users.request(asSystem(requestId), PrincipalByApiKeyDocument, { secret: token })));
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
        ({ principal } = await lookup(users.request(asSystem(requestId), PrincipalByEmailDocument, { email })));
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
