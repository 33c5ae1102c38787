import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/resolverMap.js';
import { isObjectType, type DocumentNode, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { applyMiddleware } from 'graphql-middleware';
import { deny, shield, type IRule, type IRules } from 'graphql-shield';
import objectHash from 'object-hash';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { ErrorCode, forbidden, isErrorCode } from './errors.js';
import { BodyTooLargeError, forwardedRequestId, parseJsonBody, readBody, sendApolloResponse, sendGraphQLError, sendJson, toHeaderMap } from './http.js';
import { INTERNAL_TOKEN_HEADER, type InternalCaller, type InternalTokens } from './identity.js';
import type { Logger } from './logging.js';
import { trackRequests } from './requestTracker.js';

/** The context every subgraph resolver receives; subgraphs extend it with their loaders. */
export interface SubgraphContext {
  requestId: string;
  system: boolean;
  identity: InternalCaller['identity'];
  /** The cluster agent calling, for worker operations (null for users and the gateway). */
  worker: InternalCaller['worker'];
  _shield: { cache: Record<string, unknown> };
}

/**
 * What a subgraph enforces with graphql-shield: `Type -> field -> rule` ('*' for every field of a
 * type). The contract's RBAC policy map (schema/rbac/policy.ts `policyFor`) is one; lib needs only its
 * shape, so it does not depend on the contract.
 */
export type FieldPolicy = Record<string, Record<string, Pick<IRule, 'resolve'>>>;

export interface SubgraphDefinition<Ctx extends SubgraphContext> {
  name: string;
  typeDefs: DocumentNode;
  resolvers: GraphQLResolverMap<Ctx>;
  policy: FieldPolicy;
  /** Adds per-request state (DataLoaders) to the base context. */
  createContext(base: SubgraphContext): Ctx;
  /**
   * Plain HTTP routes beside /graphql, by path: a data plane for what GraphQL would only add cost to
   * (inference's streamed answers, passed through byte for byte). They take the same internal token
   * as /graphql; the handler gets the verified caller, authorizes with the same policy map, and writes
   * the whole response.
   */
  routes?: Record<string, SubgraphRoute>;
}

/** A plain HTTP route of a subgraph (SubgraphDefinition.routes). */
export type SubgraphRoute = (req: IncomingMessage, res: ServerResponse, caller: InternalCaller) => Promise<void>;

export interface SubgraphServerOptions {
  host: string;
  port: number;
  tokens: InternalTokens;
  logger: Logger;
  maxBodyBytes: number;
  /** More Apollo plugins, e.g. request metrics (`mariner serve`). */
  plugins?: ApolloServerPlugin<SubgraphContext>[];
}

export interface RunningSubgraph {
  name: string;
  url: string;
  /** Requests being answered now. */
  inFlight(): number;
  /** Stops accepting connections and waits for the requests in flight (graceful stop; close() after). */
  drain(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Serves one subgraph on its own port. Every request must carry an internal identity token minted
 * for this subgraph; without one it is refused before GraphQL runs. graphql-shield applies the
 * subgraph's part of the policy map with deny as fallback.
 */
export async function startSubgraph<Ctx extends SubgraphContext>(
  definition: SubgraphDefinition<Ctx>,
  options: SubgraphServerOptions,
): Promise<RunningSubgraph> {
  const logger = options.logger.child({ subgraph: definition.name });
  const subgraphSchema = buildSubgraphSchema({
    typeDefs: definition.typeDefs,
    resolvers: definition.resolvers as GraphQLResolverMap<unknown>,
  });
  const schema = applyMiddleware(
    subgraphSchema,
    // FieldPolicy holds shield rules; its type names only the part the gateway walk uses.
    shield(policyPresentIn(definition.policy, subgraphSchema) as unknown as IRules, {
      fallbackRule: deny,
      fallbackError: () => forbidden('Not authorized'),
      allowExternalErrors: true,
      hashFunction: objectHash,
    }),
  );
  const apollo = new ApolloServer<Ctx>({
    schema,
    introspection: false,
    includeStacktraceInErrorResponses: false,
    stopOnTerminationSignals: false,
    formatError: (formatted, error) => maskError(formatted, error, logger),
    plugins: [ApolloServerPluginInlineTraceDisabled(), ...((options.plugins ?? []) as ApolloServerPlugin<Ctx>[])],
  });
  await apollo.start();

  // The internal token carries the caller's memberships: allow headers larger than node's 16 KiB default.
  const server: Server = createServer({ maxHeaderSize: 256 * 1024 }, async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://subgraph');
      if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
      const route = definition.routes?.[url.pathname];
      if (url.pathname !== '/graphql' && !route) return sendJson(res, 404, { error: 'not found' });
      const token = req.headers[INTERNAL_TOKEN_HEADER];
      const caller = await options.tokens.verify(typeof token === 'string' ? token : undefined, definition.name);
      if (!caller) {
        return sendGraphQLError(res, ErrorCode.UNAUTHENTICATED, 'This subgraph only accepts calls from the gateway');
      }
      if (route) return await route(req, res, caller);
      const text = await readBody(req, options.maxBodyBytes);
      const body = parseJsonBody(res, text);
      if (body === undefined) return;
      const base: SubgraphContext = {
        requestId: forwardedRequestId(req, caller.requestId),
        system: caller.system,
        identity: caller.identity,
        worker: caller.worker,
        _shield: { cache: {} },
      };
      const response = await apollo.executeHTTPGraphQLRequest({
        httpGraphQLRequest: { method: req.method ?? 'POST', headers: toHeaderMap(req), search: url.search, body },
        context: async () => definition.createContext(base),
      });
      await sendApolloResponse(res, response);
    } catch (error) {
      if (error instanceof BodyTooLargeError) return sendGraphQLError(res, ErrorCode.BAD_USER_INPUT, error.message, {}, 413);
      logger.error({ err: error }, 'subgraph request failed');
      if (!res.headersSent) sendGraphQLError(res, ErrorCode.INTERNAL, 'Internal error');
      else res.end();
    }
  });
  const requests = trackRequests(server);
  // Subscriptions (graphql-ws on the same path): the gateway opens one upstream subscription per
  // shared operation (DESIGN §3), with the internal token in the connection parameters.
  let wss: WebSocketServer | undefined;
  if (subgraphSchema.getSubscriptionType()) {
    wss = new WebSocketServer({ server, path: '/graphql', perMessageDeflate: false });
    const callers = new WeakMap<object, InternalCaller>();
    useServer(
      {
        schema,
        onConnect: async (ctx) => {
          const token = ctx.connectionParams?.[INTERNAL_TOKEN_HEADER];
          const caller = await options.tokens.verify(typeof token === 'string' ? token : undefined, definition.name);
          if (!caller) return false;
          callers.set(ctx.extra, caller);
          return true;
        },
        context: (ctx) => {
          const caller = callers.get(ctx.extra)!;
          return definition.createContext({
            requestId: caller.requestId,
            system: caller.system,
            identity: caller.identity,
            worker: caller.worker,
            _shield: { cache: {} },
          });
        },
        onNext: (_ctx, _id, _payload, _args, result) =>
          result.errors?.length ? { ...result, errors: result.errors.map((error) => maskError(error.toJSON(), error, logger)) } : undefined,
        onError: (_ctx, _id, _payload, errors) => errors.map((error) => maskError(error.toJSON(), error, logger)),
      },
      wss,
    );
  }
  // Longer than the gateway's fetch keeps idle connections, so the gateway never reuses a closing one.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${options.host}:${port}/graphql`;
  logger.debug({ url }, 'subgraph listening');
  return {
    name: definition.name,
    url,
    inFlight: () => requests.inFlight(),
    drain: (timeoutMs) => requests.drain(timeoutMs),
    close: async () => {
      for (const client of wss?.clients ?? []) client.terminate();
      wss?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await apollo.stop();
    },
  };
}

/**
 * The part of the policy map that applies to this schema: shield refuses rules for fields a schema
 * lacks (a subgraph without entities has no `_entities`). Fields without a rule stay denied.
 */
function policyPresentIn(policy: FieldPolicy, schema: GraphQLSchema): FieldPolicy {
  const out: FieldPolicy = {};
  for (const [typeName, fields] of Object.entries(policy)) {
    const type = schema.getType(typeName);
    if (!isObjectType(type)) continue;
    const present = type.getFields();
    out[typeName] = Object.fromEntries(Object.entries(fields).filter(([field]) => field === '*' || present[field]));
  }
  return out;
}

/**
 * Errors with a code of the closed set pass through (they are meant for the user); anything else is
 * a bug or an outage: logged here, and masked so no internals reach the caller.
 */
export function maskError(formatted: GraphQLFormattedError, error: unknown, logger: Logger): GraphQLFormattedError {
  const code = formatted.extensions?.['code'];
  if (isErrorCode(code) && code !== ErrorCode.INTERNAL) {
    return { message: formatted.message, ...(formatted.path ? { path: formatted.path } : {}), extensions: pick(formatted.extensions) };
  }
  // graphql-js validation and parse errors, and Apollo's refusals of a malformed HTTP request
  // (BAD_REQUEST: CSRF prevention, batching off, a mutation over GET, no query; an unknown
  // operationName), are the caller's: keep them, with our code.
  if (
    code === 'GRAPHQL_VALIDATION_FAILED' ||
    code === 'GRAPHQL_PARSE_FAILED' ||
    code === 'BAD_USER_INPUT' ||
    code === 'BAD_REQUEST' ||
    code === 'OPERATION_RESOLUTION_FAILURE'
  ) {
    return { message: formatted.message, extensions: { code: ErrorCode.BAD_USER_INPUT } };
  }
  logger.error({ err: error, path: formatted.path }, 'unexpected error');
  return { message: 'Internal error', ...(formatted.path ? { path: formatted.path } : {}), extensions: { code: ErrorCode.INTERNAL } };
}

function pick(extensions: GraphQLFormattedError['extensions']): Record<string, unknown> {
  const out: Record<string, unknown> = { code: extensions?.['code'] };
  if (extensions?.['field']) out['field'] = extensions['field'];
  return out;
}
