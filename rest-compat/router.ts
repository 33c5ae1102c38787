import type { IncomingMessage, ServerResponse } from 'node:http';

export interface RouteContext {
  url: URL;
  params: Record<string, string>;
  requestId: string;
  /** Headers every response carries (x-request-id). */
  headers: Record<string, string>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => Promise<void>;

export interface Route {
  method: string;
  /** `/v1/files/:id`: `:name` matches one path segment; a last `*name` matches the rest (slashes too). */
  path: string;
  handler: Handler;
}

interface CompiledRoute extends Route {
  pattern: RegExp;
  names: string[];
}

/** A small method + path router; path parameters are URL-decoded. */
export function createRouter(routes: readonly Route[]) {
  const compiled: CompiledRoute[] = routes.map((route) => {
    const names: string[] = [];
    const source = route.path
      .split('/')
      .map((segment) => {
        if (segment.startsWith('*')) {
          names.push(segment.slice(1));
          return '(.+)';
        }
        if (!segment.startsWith(':')) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        names.push(segment.slice(1));
        return '([^/]+)';
      })
      .join('/');
    return { ...route, pattern: new RegExp(`^${source}$`), names };
  });
  return {
    /** The route's handler, its path parameters, and its path as declared (`/v1/files/:id`: usage records name it). */
    match(method: string, pathname: string): { handler: Handler; params: Record<string, string>; path: string } | null {
      for (const route of compiled) {
        if (route.method !== method) continue;
        const m = route.pattern.exec(pathname);
        if (!m) continue;
        const params: Record<string, string> = {};
        route.names.forEach((name, i) => {
          params[name] = decodeURIComponent(m[i + 1]!);
        });
        return { handler: route.handler, params, path: route.path };
      }
      return null;
    },
  };
}
