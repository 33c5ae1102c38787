/**
 * Federated subscriptions over graphql-ws on `/graphql` (DESIGN §3; prototypes §A), which stock
 * @apollo/gateway cannot do. Apollo plugins do not run here, so each step is its own module, wired
 * into graphql-ws's hooks below:
 * - `onConnect`: authentication, and the credential watched while the connection lasts
 *   (subscriptionConnection.ts);
 * - `onSubscribe`: the limits on open operations (subscriptionLimits.ts), then parsing, validation and
 *   RBAC (subscriptionOperation.ts);
 * - `subscribe`: the operation is planned (subscriptionPlans.ts) and joins the upstream subscription
 *   of its key (sharedSubscriptions.ts), which runs one graphql-ws client to the owning subgraph
 *   (upstreamSubscription.ts), hydrates each event once with the plan's rest (subscriptionHydration.ts),
 *   masks it (subscriptionMasking.ts) and fans it out serialised once (fanOut.ts).
 * Queries and mutations sent over the WebSocket run through the HTTP path's executor.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Supergraph } from '@apollo/federation-internals';
import type { DocumentNode, ExecutionResult, GraphQLSchema, ValidationRule } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocket, WebSocketServer } from 'ws';
import type { InternalTokens } from '../lib/identity.js';
import type { Logger } from '../lib/logging.js';
import { maskError } from '../lib/subgraphServer.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import type { Authenticator } from './authentication.js';
import type { GatewayContext } from './context.js';
import { createSharedSubscriptions, type Delivery } from './sharedSubscriptions.js';
import { createConnectionAuthentication, type ConnectionState } from './subscriptionConnection.js';
import type { InternalTokenCache } from './internalTokenCache.js';
import { createSubscriptionHydration } from './subscriptionHydration.js';
import { createSubscriptionLimits } from './subscriptionLimits.js';
import { createOperationCheck } from './subscriptionOperation.js';
import { createSubscriptionPlanner } from './subscriptionPlans.js';
import { createUpstreamSubscriptions } from './upstreamSubscription.js';

export interface SubscriptionServerOptions {
  /**
   * The supergraph the gateway's query planner uses (gateway/index.ts hands over the one ApolloGateway
   * built, so it is parsed, its API schema derived and its subgraphs extracted once per process).
   */
  supergraph: Supergraph;
  /** The API schema as graphql-js, when the caller has it already (ApolloGateway's `schema`); else built from the supergraph. */
  apiGraphQLSchema?: GraphQLSchema;
  subgraphUrls: Record<SubgraphName, string>;
  tokens: InternalTokens;
  /** The internal tokens of the gateway's subgraph calls, shared with its HTTP path (internalTokenCache.ts). */
  tokenCache: InternalTokenCache;
  authenticator: Authenticator;
  policy: PolicyMap;
  /** graphql-armor's rules (depth, aliases, cost, directives), as on HTTP. */
  validationRules: readonly ValidationRule[];
  maxTokens: number;
  /** Queries and mutations sent over the WebSocket run through the HTTP path's executor. */
  executeOperation(args: {
    document: DocumentNode;
    variables: Record<string, unknown>;
    operationName: string | undefined;
    context: GatewayContext;
  }): Promise<ExecutionResult>;
  logger: Logger;
  /** A subscriber more than this many events behind is dropped (it would hold memory forever). */
  maxQueuedEvents?: number;
  /** Operations open at once on one connection, and for one user (or cluster) across this replica's connections. */
  maxSubscriptionsPerConnection?: number;
  maxSubscriptionsPerUser?: number;
  /** How often a connection's credential is checked again (a revoked API key, an unregistered cluster): then it closes with 4401. */
  revalidateIntervalMs?: number;
  /** A connection that sends no connection_init within this is closed with 4408 (graphql-ws). */
  connectionInitWaitTimeoutMs?: number;
}

/** The options' defaults, in one place. */
function settingsOf(options: SubscriptionServerOptions) {
  return {
    maxQueuedEvents: options.maxQueuedEvents ?? 1000,
    maxSubscriptionsPerConnection: options.maxSubscriptionsPerConnection ?? 100,
    maxSubscriptionsPerUser: options.maxSubscriptionsPerUser ?? 1000,
    revalidateIntervalMs: options.revalidateIntervalMs ?? 60_000,
    connectionInitWaitTimeoutMs: options.connectionInitWaitTimeoutMs ?? 3_000,
  };
}

export function createSubscriptionServer(options: SubscriptionServerOptions) {
  const { logger } = options;
  const settings = settingsOf(options);
  const { supergraph } = options;
  const apiSchema = supergraph.apiSchema();
  const apiGraphQL: GraphQLSchema = options.apiGraphQLSchema ?? apiSchema.toGraphQLJSSchema();

  const authentication = createConnectionAuthentication({ authenticator: options.authenticator, logger, revalidateIntervalMs: settings.revalidateIntervalMs });
  const limits = createSubscriptionLimits({ maxPerConnection: settings.maxSubscriptionsPerConnection, maxPerUser: settings.maxSubscriptionsPerUser });
  const checkOperation = createOperationCheck({
    schema: apiGraphQL,
    validationRules: options.validationRules,
    maxTokens: options.maxTokens,
    policy: options.policy,
  });
  const upstreams = createUpstreamSubscriptions({ subgraphUrls: options.subgraphUrls, tokens: options.tokens, logger, maxHistory: settings.maxQueuedEvents });
  const subscriptions = createSharedSubscriptions({
    planner: createSubscriptionPlanner(supergraph, apiSchema),
    hydration: createSubscriptionHydration({
      subgraphUrls: options.subgraphUrls,
      tokens: options.tokenCache,
      supergraphSchema: supergraph.schema.toGraphQLJSSchema(),
      apiSchema,
      logger,
    }),
    upstreams,
    maxQueued: settings.maxQueuedEvents,
  });

  const connections = new WeakMap<object, ConnectionState>();
  /** Where each subscription's `next` messages go, by its context (gateway/fanOut.ts). */
  const deliveries = new WeakMap<GatewayContext, Delivery>();
  /** The TCP stream under each WebSocket (the upgrade's), which the fan-out corks per tick. */
  const streams = new WeakMap<WebSocket, Duplex>();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 * 1024 });

  useServer(
    {
      onConnect: async (ctx) => {
        const connection = await authentication.connect(ctx.extra.request as IncomingMessage, ctx.connectionParams, ctx.extra.socket, ctx.subscriptions);
        if (!connection) return false;
        connections.set(ctx.extra, connection);
        limits.add(connection);
        return true;
      },
      onSubscribe: async (ctx, id, payload) => {
        const connection = connections.get(ctx.extra)!;
        const refusal = limits.refusal(connection);
        if (refusal) return [refusal];
        const checked = await checkOperation(connection, id, payload);
        if (!('document' in checked)) return [...checked];
        const { document, context } = checked;
        const socket = ctx.extra.socket;
        deliveries.set(context, { connection: { socket, stream: streams.get(socket) }, id, operations: connection.operations });
        return { schema: apiGraphQL, document, operationName: payload.operationName ?? null, variableValues: payload.variables ?? {}, contextValue: context };
      },
      onClose: (ctx) => {
        const connection = connections.get(ctx.extra);
        if (!connection) return;
        authentication.disconnect(connection);
        limits.remove(connection);
      },
      connectionInitWaitTimeout: settings.connectionInitWaitTimeoutMs,
      // A subscription's `next` messages do not come through graphql-ws: the iterator yields nothing
      // and the fan-out writes them on the socket, each event serialised once (gateway/fanOut.ts).
      subscribe: (args) => subscriptions.join(args, deliveries.get(args.contextValue as GatewayContext)!),
      execute: async (args) =>
        options.executeOperation({
          document: args.document,
          variables: (args.variableValues ?? {}) as Record<string, unknown>,
          operationName: args.operationName ?? undefined,
          context: args.contextValue as GatewayContext,
        }),
      onError: (_ctx, _id, _payload, errors) => errors.map((error) => maskError(error.toJSON(), error, logger)),
    },
    wss,
  );

  return {
    /** An HTTP upgrade on `/graphql`: a graphql-ws client. */
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      if (req.headers['sec-websocket-protocol']?.split(',').every((p) => p.trim() !== 'graphql-transport-ws')) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nUse the graphql-transport-ws subprotocol (graphql-ws)\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        streams.set(ws, socket);
        wss.emit('connection', ws, req);
      });
    },
    /** Open shared upstream subscriptions (for tests and metrics). */
    sharedCount: () => upstreams.count(),
    async close(): Promise<void> {
      for (const client of wss.clients) client.close(1001, 'server shutting down');
      await upstreams.close();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

export type SubscriptionServer = ReturnType<typeof createSubscriptionServer>;
