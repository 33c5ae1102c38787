import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import http2, { type ClientHttp2Stream, type IncomingHttpHeaders as H2Headers, type OutgoingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { ErrorCode, httpStatusFor, MarinerError } from '../../lib/errors.js';
import { graphqlRequest } from '../../lib/graphqlClient.js';
import { headerValue, requestIdOf } from '../../lib/http.js';
import { isId } from '../../lib/ids.js';
import type { Logger } from '../../lib/logging.js';
import {
  HOP_BY_HOP,
  K8S_PREFIX,
  kubernetesStatus,
  UPGRADE_HEADER,
  UPGRADE_HEADERS_HEADER,
  UPGRADE_METHOD_HEADER,
  UPGRADE_RESPONSE_HEADER,
} from '../../lib/tunnel.js';
import { NoTunnelError, type TunnelRegistry } from './tunnelRegistry.js';

/** The user-facing route: `/v1/sessions/<clusterId>/<Kubernetes API path>` (LLMariner session manager). */
export const SESSIONS_PREFIX = '/v1/sessions/';

export interface KubeProxyOptions {
  registry: TunnelRegistry;
  /** The gateway, which authenticates the caller and decides (rbac `authorize`). */
  graphqlUrl: () => string;
  /** How long an authorization decision is reused for the same credential, project and scope. */
  authCacheMs: number;
  logger: Logger;
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

interface Decision {
  authorized: boolean;
  reason: string | null;
  tenantId: string;
  project: { assignments: { clusterId: string | null; namespace: string }[] } | null;
}

const AUTHORIZE = `query SessionAuthorize($resource: String!, $capability: Capability!, $organizationId: ID, $projectId: ID) {
  authorize(resource: $resource, capability: $capability, organizationId: $organizationId, projectId: $projectId) {
    authorized reason tenantId project { assignments { clusterId namespace } }
  }
}`;

class ProxyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Request headers that may travel to the cluster: never the caller's credentials or project selection. */
function forwardableHeaders(headers: IncomingHttpHeaders, keepUpgrade: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    // The caller's credentials stay here; Impersonate-* would borrow the agent's powers.
    if (name === 'authorization' || name === 'cookie' || name.startsWith('openai-') || name.startsWith('impersonate-')) continue;
    if (HOP_BY_HOP.has(name) && !(keepUpgrade && (name === 'upgrade' || name === 'connection'))) continue;
    out[name] = value;
  }
  return out;
}

/** Response headers from the agent, minus HTTP/2 pseudo headers and hop-by-hop ones. */
function responseHeaders(headers: H2Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name) || name === UPGRADE_RESPONSE_HEADER) continue;
    out[name] = value as string | string[];
  }
  return out;
}

/**
 * `/v1/sessions/<clusterId>/...`: users' Kubernetes API requests, forwarded through the cluster's
 * agent tunnel (reference §8). Cluster-scoped paths need `api.k8s.clusterscope.<read|write>`;
 * namespaced paths need `api.fine_tuning.jobs.<read|write>` and a namespace assigned to the caller's
 * project on that cluster; discovery needs any assignment on the cluster. The caller's credential
 * never reaches the cluster: the agent uses its own.
 */
export function createKubeProxy(options: KubeProxyOptions) {
  const { registry, logger } = options;
  const cache = new Map<string, { expires: number; decision: Decision }>();

  async function authorizeCall(headers: IncomingHttpHeaders, resource: string, capability: 'READ' | 'WRITE', requestId: string): Promise<Decision> {
    const authorization = headerValue(headers, 'authorization');
    if (!authorization) throw new ProxyError(401, 'Authentication required: send Authorization: Bearer <API key or OIDC token>');
    const organizationId = headerValue(headers, 'openai-organization') ?? null;
    const projectId = headerValue(headers, 'openai-project') ?? null;
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
      if (error instanceof MarinerError) throw new ProxyError(httpStatusFor(error.code), error.message);
      throw error;
    }
    if (options.authCacheMs > 0) {
      if (cache.size > 10_000) cache.clear();
      cache.set(key, { expires: Date.now() + options.authCacheMs, decision });
    }
    return decision;
  }

  /** Authorizes a request and returns the tunnel path to call. Throws ProxyError. */
  async function admit(req: IncomingMessage, upgrade: boolean, requestId: string): Promise<{ clusterId: string; path: string }> {
    const url = new URL(req.url ?? '/', 'http://mariner');
    const rest = url.pathname.slice(SESSIONS_PREFIX.length);
    const slash = rest.indexOf('/');
    const clusterId = slash === -1 ? rest : rest.slice(0, slash);
    const kubePath = slash === -1 ? '/' : rest.slice(slash);
    if (!isId('cluster', clusterId)) throw new ProxyError(404, `"${clusterId.slice(0, 80)}" is not a cluster id: use /v1/sessions/<cluster id>/api/...`);
    const method = (req.method ?? 'GET').toUpperCase();
    const kind = classifyKubePath(kubePath, method);
    if (!kind) throw new ProxyError(404, `${kubePath.slice(0, 200)} is not a Kubernetes API path (expected /api, /apis, /version or /openapi)`);
    const capability = !upgrade && (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') ? 'READ' : 'WRITE';
    const resource = kind.kind === 'cluster' ? 'api.k8s.clusterscope' : 'api.fine_tuning.jobs';
    const decision = await authorizeCall(req.headers, resource, capability, requestId);
    const worker = registry.workerOf(clusterId);
    // Another tenant's cluster answers exactly like a cluster with no agent: nothing leaks.
    if (!worker || worker.tenantId !== decision.tenantId) throw new ProxyError(503, `No agent of cluster ${clusterId} is connected`);
    if (!decision.authorized) throw new ProxyError(403, `Forbidden: ${decision.reason ?? `missing ${resource}.${capability.toLowerCase()}`}`);
    const assignments = (decision.project?.assignments ?? []).filter((a) => a.clusterId === null || a.clusterId === clusterId);
    if (kind.kind === 'namespaced' && !assignments.some((a) => a.namespace === kind.namespace)) {
      throw new ProxyError(403, `Forbidden: namespace "${kind.namespace}" of cluster ${clusterId} is not assigned to your project`);
    }
    if (kind.kind === 'discovery' && assignments.length === 0) throw new ProxyError(403, `Forbidden: cluster ${clusterId} is not assigned to your project`);
    return { clusterId, path: `${K8S_PREFIX}${kubePath}${url.search}` };
  }

  function fail(res: ServerResponse, error: unknown, requestId: string): void {
    const status = error instanceof ProxyError ? error.status : error instanceof NoTunnelError ? 503 : 502;
    if (status === 502) logger.error({ err: error, requestId }, 'sessions proxy failed');
    const message = error instanceof ProxyError || error instanceof NoTunnelError ? error.message : `The cluster tunnel failed (request id ${requestId})`;
    if (res.headersSent) return void res.destroy();
    const body = JSON.stringify(kubernetesStatus(status, message));
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': requestId, ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}) });
    res.end(body);
  }

  function failUpgrade(socket: Duplex, error: unknown, requestId: string): void {
    const status = error instanceof ProxyError ? error.status : 503;
    const message = error instanceof Error ? error.message : 'upgrade failed';
    const refusal = kubernetesStatus(status, message);
    const body = JSON.stringify(refusal);
    socket.end(
      `HTTP/1.1 ${status} ${refusal.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
    );
  }

  return {
    handles(pathname: string): boolean {
      return pathname.startsWith(SESSIONS_PREFIX);
    },

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const requestId = requestIdOf(req);
      let stream: ClientHttp2Stream;
      try {
        const { clusterId, path } = await admit(req, false, requestId);
        const headers: OutgoingHttpHeaders = {
          ...forwardableHeaders(req.headers, false),
          ':method': req.method ?? 'GET',
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
      socket.on('error', () => undefined);
      let stream: ClientHttp2Stream;
      try {
        const { clusterId, path } = await admit(req, true, requestId);
        stream = registry.request(clusterId, {
          ':method': 'POST',
          ':path': path,
          'x-request-id': requestId,
          [UPGRADE_HEADER]: '1',
          [UPGRADE_METHOD_HEADER]: req.method ?? 'GET',
          [UPGRADE_HEADERS_HEADER]: JSON.stringify(forwardableHeaders(req.headers, true)),
        });
      } catch (error) {
        return failUpgrade(socket, error, requestId);
      }
      stream.on('error', (error) => (socket.writable ? failUpgrade(socket, error, requestId) : socket.destroy()));
      socket.on('close', () => {
        if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
      });
      stream.on('response', (headers) => {
        const upgraded = headers[UPGRADE_RESPONSE_HEADER];
        if (typeof upgraded !== 'string') {
          // The cluster refused to upgrade: relay its answer as a plain HTTP response.
          const status = Number(headers[':status'] ?? 502);
          const chunks: Buffer[] = [];
          stream.on('data', (chunk: Buffer) => chunks.push(chunk));
          stream.on('end', () => {
            const body = Buffer.concat(chunks);
            const type = String(headers['content-type'] ?? 'application/json');
            socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status} Upgrade Refused\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body]));
          });
          return;
        }
        const { statusCode, headers: upstream } = JSON.parse(upgraded) as { statusCode: number; headers: Record<string, string | string[]> };
        let head101 = `HTTP/1.1 ${statusCode} Switching Protocols\r\n`;
        for (const [name, value] of Object.entries(upstream)) {
          for (const v of Array.isArray(value) ? value : [value]) head101 += `${name}: ${v}\r\n`;
        }
        socket.write(`${head101}\r\n`);
        if (head.length > 0) stream.write(head);
        socket.pipe(stream);
        stream.pipe(socket);
        stream.on('close', () => socket.destroy());
      });
    },
  };
}

export type KubeProxy = ReturnType<typeof createKubeProxy>;
