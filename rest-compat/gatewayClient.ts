import type { IncomingMessage } from 'node:http';
import { restErrorFromGraphQL, RestError } from './errors.js';
import type { RouteContext } from './router.js';

/** The headers a REST call forwards to the gateway: credentials and project selection. */
export const FORWARDED_HEADERS = ['authorization', 'openai-organization', 'openai-project'] as const;

export interface GatewayClient {
  /** Runs a GraphQL operation on the gateway as the REST caller; GraphQL errors become RestErrors. */
  request<T>(req: IncomingMessage, requestId: string, query: string, variables?: Record<string, unknown>): Promise<T>;
}

/**
 * rest-compat reaches the platform only through the gateway, so authentication, project headers and
 * RBAC are the gateway's (DESIGN §3).
 */
export function createGatewayClient(graphqlUrl: () => string): GatewayClient {
  return {
    async request<T>(req: IncomingMessage, requestId: string, query: string, variables: Record<string, unknown> = {}) {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId };
      // The audit log's client address (gateway/audit.ts clientAddressOf believes it from loopback only).
      if (req.socket.remoteAddress) headers['x-mariner-client-address'] = req.socket.remoteAddress;
      for (const name of FORWARDED_HEADERS) {
        const value = req.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      const response = await fetch(graphqlUrl(), { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
      let body: { data?: T | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
      try {
        body = (await response.json()) as typeof body;
      } catch {
        throw new RestError(502, `The gateway answered ${response.status} without JSON`, 'server_error');
      }
      const [error] = body.errors ?? [];
      if (error) throw restErrorFromGraphQL(error);
      if (!body.data) throw new RestError(502, 'The gateway answered without data', 'server_error');
      return body.data;
    },
  };
}

/** A gateway call as a route makes it: as the route's caller, with the route's request id. */
export type RouteGraphQL = <T>(req: IncomingMessage, ctx: RouteContext, query: string, variables?: Record<string, unknown>) => Promise<T>;

export function routeGraphQL(gateway: GatewayClient): RouteGraphQL {
  return <T>(req: IncomingMessage, ctx: RouteContext, query: string, variables?: Record<string, unknown>) =>
    gateway.request<T>(req, ctx.requestId, query, variables);
}
