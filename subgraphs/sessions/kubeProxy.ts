import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { requestIdOf } from '../../lib/http.js';
import { isId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logging.js';
import { agentRoutes } from '../../lib/agentContract.js';
import { kubernetesStatus, UPGRADE_HEADER, UPGRADE_HEADERS_HEADER, UPGRADE_METHOD_HEADER, UPGRADE_METHODS } from '../../lib/tunnel.js';
import { refusedKubeRequest } from './kubeAllowList.js';
import type { SessionAudit } from './sessionAudit.js';
import { credentialOf, MISSING_CREDENTIAL, SessionsError, type SessionAuthorizer } from './sessionAuth.js';
import { answerUpgrade, checkedRequestPath, forwardableHeaders, KUBE_REQUEST_HEADERS, relayUpgrade, responseHeaders } from './tunnelRelay.js';
import { NoTunnelError, type AgentTransport } from './tunnelRegistry.js';

/** The user-facing route: `/v1/sessions/<clusterId>/<Kubernetes API path>` (LLMariner session manager). */
export const SESSIONS_PREFIX = '/v1/sessions/';

export interface KubeProxyOptions {
  registry: AgentTransport;
  /** The gateway's decisions (rbac `authorize`), reused briefly (sessionAuth.ts). */
  authorizer: SessionAuthorizer;
  logger: Logger;
  /** Whether exec, attach and port-forward are forwarded (MARINER_SESSIONS_EXEC; kubeAllowList.ts). */
  allowExec?: boolean | undefined;
  /** Records the admitted requests that write or open a stream (exec, attach, port-forward) in the audit log (sessionAudit.ts). */
  audit?: SessionAudit | undefined;
}

/** What a Kubernetes API path touches (reference §8: cluster-scoped vs namespaced). */
export type KubePathKind = { kind: 'discovery' } | { kind: 'namespaced'; namespace: string } | { kind: 'cluster' };

/**
 * Classifies a Kubernetes API path. Discovery (`/api`, `/apis/<group>/<version>`, `/version`,
 * `/openapi/...`) is what any client reads first; namespaced paths name their namespace; anything
 * else (nodes, namespaces themselves, cluster-wide lists) is cluster-scoped.
 */
export function classifyKubePath(path: string, method: string): KubePathKind | null {
  const segments = path.split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent);
  const [root] = segments;
  if (root === 'version' || root === 'openapi') return { kind: 'discovery' };
  if (root === 'api') {
    if (segments.length <= 2) return { kind: 'discovery' };
    if (segments[2] === 'namespaces' && segments.length >= 5) return { kind: 'namespaced', namespace: segments[3]! };
    // Reading one's own namespace object is namespaced; changing or deleting it is not.
    if (segments[2] === 'namespaces' && segments.length === 4 && (method === 'GET' || method === 'HEAD')) {
      return { kind: 'namespaced', namespace: segments[3]! };
    }
    return { kind: 'cluster' };
  }
  if (root === 'apis') {
    if (segments.length <= 3) return { kind: 'discovery' };
    if (segments[3] === 'namespaces' && segments.length >= 6) return { kind: 'namespaced', namespace: segments[4]! };
    return { kind: 'cluster' };
  }
  return null;
}

/**
 * `/v1/sessions/<clusterId>/...`: users' Kubernetes API requests, forwarded through the cluster's
 * agent tunnel (reference §8). Cluster-scoped paths need `api.k8s.clusterscope.<read|write>`;
 * namespaced paths need `api.fine_tuning.jobs.<read|write>` and a namespace assigned to the caller's
 * project on that cluster; discovery needs any assignment on the cluster. Then only the resources and
 * verbs of the allow-list pass (kubeAllowList.ts: never Secrets; exec only when turned on). The caller's
 * credential never reaches the cluster: the agent uses its own.
 */
export function createKubeProxy(options: KubeProxyOptions) {
  const { registry, authorizer, logger } = options;
  const allowExec = options.allowExec ?? false;
  /**
   * Authorizes a request and returns the tunnel path to call: the method judged is the one the agent
   * runs (`method`, which the caller cannot name otherwise: no `x-mariner-*` header crosses), on the
   * path checked here, which is the one forwarded. Throws SessionsError.
   */
  async function admit(req: IncomingMessage, method: string, upgrade: boolean, requestId: string): Promise<{ clusterId: string; path: string }> {
    const credential = credentialOf(req.headers);
    if (!credential) throw new SessionsError(401, MISSING_CREDENTIAL);
    let checked: ReturnType<typeof checkedRequestPath>;
    try {
      checked = checkedRequestPath(req.url ?? '/');
    } catch (error) {
      // A path that does not decode (or would traverse) says nothing to a caller until it authenticates.
      await authorizer.decide(credential, 'api.fine_tuning.jobs', 'READ', requestId);
      throw error;
    }
    const [first, second, clusterId = ''] = checked.segments;
    if (`/${first}/${second}/` !== SESSIONS_PREFIX) throw new SessionsError(404, 'use /v1/sessions/<cluster id>/api/...');
    // The path after the cluster id, as sent (its segments checked).
    const kubePath = `/${checked.path.split('/').slice(4).join('/')}`;
    if (!isId('cluster', clusterId)) throw new SessionsError(404, `"${clusterId.slice(0, 80)}" is not a cluster id: use /v1/sessions/<cluster id>/api/...`);
    const kind = classifyKubePath(kubePath, method);
    if (!kind) throw new SessionsError(404, `${kubePath.slice(0, 200)} is not a Kubernetes API path (expected /api, /apis, /version or /openapi)`);
    const capability = !upgrade && (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') ? 'READ' : 'WRITE';
    const resource = kind.kind === 'cluster' ? 'api.k8s.clusterscope' : 'api.fine_tuning.jobs';
    const decision = await authorizer.decide(credential, resource, capability, requestId);
    const namespaces = await authorizer.namespacesOn(decision, clusterId, `${resource}.${capability.toLowerCase()}`, {
      clusterScoped: kind.kind === 'cluster',
    });
    if (kind.kind === 'namespaced' && !namespaces.includes(kind.namespace)) {
      throw new SessionsError(403, `Forbidden: namespace "${kind.namespace}" of cluster ${clusterId} is not assigned to your project`);
    }
    if (kind.kind === 'discovery' && namespaces.length === 0) throw new SessionsError(403, `Forbidden: cluster ${clusterId} is not assigned to your project`);
    if (upgrade && !UPGRADE_METHODS.includes(method))
      throw new SessionsError(400, `An upgrade (exec, attach, port-forward) is a GET or a POST, not a ${method.slice(0, 20)}`);
    const refused = refusedKubeRequest(kubePath + checked.query, method, { allowExec });
    if (refused) throw new SessionsError(403, refused);
    if (upgrade || capability === 'WRITE') {
      options.audit?.({
        requestId,
        userId: decision.userId,
        organizationId: decision.organizationId,
        projectId: decision.projectId,
        clientAddress: req.socket.remoteAddress ?? null,
        clusterId,
        method,
        path: kubePath,
        upgrade,
      });
    }
    return { clusterId, path: agentRoutes.kubernetes(`${kubePath}${checked.query}`) };
  }

  function fail(res: ServerResponse, error: unknown, requestId: string): void {
    const status = error instanceof SessionsError ? error.status : error instanceof NoTunnelError ? 503 : 502;
    if (status === 502) logger.error({ err: error, requestId }, 'sessions proxy failed');
    const message = error instanceof SessionsError || error instanceof NoTunnelError ? error.message : `The cluster tunnel failed (request id ${requestId})`;
    if (res.headersSent) return void res.destroy();
    const body = JSON.stringify(kubernetesStatus(status, message));
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': requestId, ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}) });
    res.end(body);
  }

  function failUpgrade(socket: Duplex, error: unknown, requestId: string): void {
    const status = error instanceof SessionsError ? error.status : 503;
    const message = error instanceof SessionsError || error instanceof NoTunnelError ? error.message : `The cluster tunnel failed (request id ${requestId})`;
    if (!(error instanceof SessionsError || error instanceof NoTunnelError)) logger.error({ err: error, requestId }, 'sessions upgrade failed');
    const refusal = kubernetesStatus(status, message);
    answerUpgrade(socket, status, refusal.reason, 'application/json', JSON.stringify(refusal), { 'X-Request-Id': requestId });
  }

  return {
    handles(pathname: string): boolean {
      return pathname.startsWith(SESSIONS_PREFIX);
    },

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const requestId = requestIdOf(req);
      const method = (req.method ?? 'GET').toUpperCase();
      let stream: ClientHttp2Stream;
      try {
        const { clusterId, path } = await admit(req, method, false, requestId);
        const headers: OutgoingHttpHeaders = {
          ...forwardableHeaders(req.headers, { allow: KUBE_REQUEST_HEADERS, upgrade: false }),
          ':method': method,
          ':path': path,
          'x-request-id': requestId,
        };
        stream = registry.request(clusterId, headers);
      } catch (error) {
        req.resume();
        return fail(res, error, requestId);
      }
      req.pipe(stream);
      stream.on('response', (headers) => {
        res.writeHead(Number(headers[':status'] ?? 502), { ...responseHeaders(headers), 'x-request-id': requestId });
        // Log follows and watches stream: send the headers now, then each chunk as it comes.
        res.flushHeaders();
        stream.pipe(res);
      });
      stream.on('error', (error) => fail(res, error, requestId));
      // The client went away: cancel the work on the agent (a `logs -f` must not run on forever).
      res.on('close', () => {
        if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
      });
    },

    async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
      const requestId = requestIdOf(req);
      const method = (req.method ?? 'GET').toUpperCase();
      socket.on('error', () => undefined);
      let stream: ClientHttp2Stream;
      try {
        const { clusterId, path } = await admit(req, method, true, requestId);
        stream = registry.request(clusterId, {
          ':method': 'POST',
          ':path': path,
          'x-request-id': requestId,
          [UPGRADE_HEADER]: '1',
          [UPGRADE_METHOD_HEADER]: method,
          // The allow-listed headers only: nothing the caller sends names a method or a credential here.
          [UPGRADE_HEADERS_HEADER]: JSON.stringify(forwardableHeaders(req.headers, { allow: KUBE_REQUEST_HEADERS, upgrade: true })),
        });
      } catch (error) {
        return failUpgrade(socket, error, requestId);
      }
      stream.on('error', (error) => (socket.writable ? failUpgrade(socket, error, requestId) : socket.destroy()));
      relayUpgrade(stream, socket, head);
    },
  };
}

export type KubeProxy = ReturnType<typeof createKubeProxy>;
