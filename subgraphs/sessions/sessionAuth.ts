import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { ErrorCode, httpStatusFor, MarinerError } from '../../lib/errors.js';
import { graphqlRequest } from '../../lib/graphqlClient.js';
import { headerValue } from '../../lib/http.js';
import { servesOrganization, type ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import type { AgentTransport } from './tunnelRegistry.js';

/**
 * Who may use `/v1/sessions/<cluster>/...` (reference §8, session-manager auth/authenticator.go): the
 * caller's credential is checked by the gateway (rbac `authorize`, the same decision every GraphQL
 * call gets), the decision is reused briefly, and the cluster must be one of the caller's tenant with
 * the namespace assigned to the caller's project there. Shared by the Kubernetes API proxy
 * (kubeProxy.ts) and the notebook proxy (notebookProxy.ts).
 */

/** A refusal of the sessions proxies, with the HTTP status it answers. */
export class SessionsError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const CODE_FOR_STATUS: Record<number, ErrorCode> = {
  400: ErrorCode.BAD_USER_INPUT,
  401: ErrorCode.UNAUTHENTICATED,
  403: ErrorCode.FORBIDDEN,
  404: ErrorCode.NOT_FOUND,
  405: ErrorCode.BAD_USER_INPUT,
  409: ErrorCode.CONFLICT,
  503: ErrorCode.UNAVAILABLE,
};

/** The JSON body of a refusal of the notebook routes and the sign-in tickets' route: `{"error": {"message", "code"}}`. */
export const sessionsErrorBody = (status: number, message: string) =>
  JSON.stringify({ error: { message, code: CODE_FOR_STATUS[status] ?? ErrorCode.INTERNAL } });

/** What a request authenticates with: a bearer credential and, optionally, the project it picks. */
export interface SessionCredential {
  /** The `Authorization` header value (`Bearer <API key or OIDC token>`). */
  authorization: string;
  organizationId: string | null;
  projectId: string | null;
}

export interface Decision {
  authorized: boolean;
  reason: string | null;
  /** Who asked (for the audit log: sessionAudit.ts). */
  userId: string;
  tenantId: string;
  organizationId: string | null;
  projectId: string | null;
  /** The decision's organization is the default one, the platform's own. */
  platformOrganization: boolean;
  project: { assignments: { clusterId: string | null; namespace: string }[] } | null;
}

export type Capability = 'READ' | 'WRITE';

const AUTHORIZE = `query SessionAuthorize($resource: String!, $capability: Capability!, $organizationId: ID, $projectId: ID) {
  authorize(resource: $resource, capability: $capability, organizationId: $organizationId, projectId: $projectId) {
    authorized reason userId tenantId organizationId projectId platformOrganization project { assignments { clusterId namespace } }
  }
}`;

export const MISSING_CREDENTIAL = 'Authentication required: send Authorization: Bearer <API key or OIDC token>';

/** The credential of a request's headers (`Authorization`, `OpenAI-Organization`, `OpenAI-Project`), if any. */
export function credentialOf(headers: IncomingHttpHeaders): SessionCredential | null {
  const authorization = headerValue(headers, 'authorization');
  if (!authorization) return null;
  return { authorization, organizationId: headerValue(headers, 'openai-organization') ?? null, projectId: headerValue(headers, 'openai-project') ?? null };
}

export interface SessionAuthorizer {
  /** The gateway's decision for a credential, reused for `authCacheMs`. Throws SessionsError (401 and such). */
  decide(credential: SessionCredential, resource: string, capability: Capability, requestId: string): Promise<Decision>;
  /**
   * Checks a decision against a cluster: its agent must be connected, of the caller's tenant and one the
   * caller's organization may use (README "Security model"; any other cluster answers exactly like one
   * with no agent: nothing leaks), the capability granted. Cluster-scoped access (nodes, every
   * namespace) is for the cluster's own organization only, or — on a platform cluster — the platform's
   * (default) organization: a platform cluster shared with others holds their namespaces too.
   * Returns the namespaces assigned to the caller's project on that cluster.
   */
  namespacesOn(decision: Decision, clusterId: string, what: string, options?: { clusterScoped?: boolean }): Promise<string[]>;
}

export function createSessionAuthorizer(options: {
  registry: AgentTransport;
  graphqlUrl: () => string;
  authCacheMs: number;
  /** Which organizations each cluster serves (lib/clusterAccess.ts). */
  clusters: ClusterAccessDirectory;
}): SessionAuthorizer {
  const cache = new Map<string, { expires: number; decision: Decision }>();
  return {
    async decide(credential, resource, capability, requestId) {
      const { authorization, organizationId, projectId } = credential;
      const key = createHash('sha256').update([authorization, organizationId, projectId, resource, capability].join('\n')).digest('hex');
      const cached = cache.get(key);
      if (cached && cached.expires > Date.now()) return cached.decision;
      let decision: Decision;
      try {
        ({ authorize: decision } = await graphqlRequest<{ authorize: Decision }>(
          options.graphqlUrl(),
          AUTHORIZE,
          { resource, capability, organizationId, projectId },
          { authorization, 'x-request-id': requestId },
        ));
      } catch (error) {
        if (error instanceof MarinerError) throw new SessionsError(httpStatusFor(error.code), error.message);
        throw error;
      }
      if (options.authCacheMs > 0) {
        if (cache.size > 10_000) cache.clear();
        cache.set(key, { expires: Date.now() + options.authCacheMs, decision });
      }
      return decision;
    },

    async namespacesOn(decision, clusterId, what, scope = {}) {
      const worker = options.registry.workerOf(clusterId);
      const noAgent = new SessionsError(503, `No agent of cluster ${clusterId} is connected`);
      if (!worker || worker.tenantId !== decision.tenantId) throw noAgent;
      if (!decision.authorized) throw new SessionsError(403, `Forbidden: ${decision.reason ?? `missing ${what}`}`);
      const access = decision.organizationId === null ? undefined : (await options.clusters.clusters(decision.tenantId, [clusterId])).get(clusterId);
      if (!access || !servesOrganization(access, decision.organizationId!)) throw noAgent;
      if (scope.clusterScoped && !(access.organizationId === decision.organizationId || (access.organizationId === null && decision.platformOrganization))) {
        throw new SessionsError(403, `Forbidden: cluster ${clusterId} is shared by several organizations; cluster-wide access is for the platform's operators`);
      }
      return (decision.project?.assignments ?? []).filter((a) => a.clusterId === null || a.clusterId === clusterId).map((a) => a.namespace);
    },
  };
}
