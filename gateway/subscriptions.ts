import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { buildOperationContext, executeQueryPlan, type ServiceMap } from '@apollo/gateway';
import { operationFromDocument, Supergraph } from '@apollo/federation-internals';
import { QueryPlanner, type FetchNode, type PlanNode, type QueryPlan } from '@apollo/query-planner';
import {
  getOperationAST,
  GraphQLError,
  parse,
  print,
  specifiedRules,
  validate,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type ValidationRule,
} from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import objectHash from 'object-hash';
import { WebSocket, WebSocketServer } from 'ws';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import { INTERNAL_TOKEN_HEADER, type InternalTokens } from '../lib/identity.js';
import type { Logger } from '../lib/logging.js';
import { maskError } from '../lib/subgraphServer.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import { PER_REQUEST_SUBSCRIPTIONS, REPLAYED_SUBSCRIPTIONS, STATE_SUBSCRIPTIONS, type SubgraphName } from '../schema/subgraphs.js';
import type { Authenticator, Credentials } from './authentication.js';
import { authorizeOperation } from './authorizeOperation.js';
import type { GatewayContext } from './context.js';
import { InternalDataSource } from './dataSource.js';
import { serializeEvent, Subscriber, type SerializedEvent, type SubscriberConnection } from './fanOut.js';

export interface SubscriptionServerOptions {
  supergraphSdl: string;
  subgraphUrls: Record<SubgraphName, string>;
  tokens: InternalTokens;
  authenticator: Authenticator;
  policy: PolicyMap;
  /** graphql-armor's rules (depth, aliases, cost, directives), as on HTTP. */
  validationRules: readonly ValidationRule[];
  maxTokens: number;
  /** Queries and mutations sent over the WebSocket run through the HTTP path's executor. */
  executeOperation(args: { document: DocumentNode; variables: Record<string, unknown>; operationName: string | undefined; context: GatewayContext }): Promise<ExecutionResult>;
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

/** Per-connection state: who connected (graphql-ws `onConnect`), what they have open, their timers. */
interface ConnectionState {
  credentials: Credentials;
  requestId: string;
  /** Whose quota the connection's operations count against. */
  owner: string;
  /** graphql-ws's operations of the connection, by id: kept current by graphql-ws itself (a complete removes at once). */
  operations: Record<string, unknown>;
  timers: NodeJS.Timeout[];
}

/** graphql-ws close codes (its protocol's 4401 Unauthorized), with a reason a client can show. */
const CLOSE_UNAUTHORIZED = 4401;

/** How a late joiner of a shared subscription catches up (schema/subgraphs.ts). */
type FeedKind = 'state' | 'replayed' | 'changes';

/** One upstream subscription and its hydration, shared by every subscriber with the same key. */
interface SharedSubscription {
  subscribers: Set<Subscriber>;
  kind: FeedKind;
  /** What a late joiner is handed first: the latest event (state), or every event so far (replayed); serialised already. */
  history: SerializedEvent[];
  /** False once a replayed feed's history outgrew the bound: late joiners then get their own upstream. */
  historyComplete: boolean;
  stop(): void;
}

function header(headers: Record<string, unknown>, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name && typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return undefined;
}

/**
 * Federated subscriptions over graphql-ws on `/graphql` (DESIGN §3; prototypes §A), which stock
 * @apollo/gateway cannot do. The operation is planned with the gateway's query planner; the plan's
 * primary fetch opens a graphql-ws subscription to the owning subgraph (internal token in the
 * connection parameters); each event's remaining fields are resolved by the gateway's own executor
 * running the plan's rest. Subscribers with the same operation, variables and authorization scope share
 * one upstream subscription and one hydration per event. Apollo plugins do not run here, so
 * authentication (onConnect), limits and RBAC (onSubscribe) and masking are called explicitly.
 */
export function createSubscriptionServer(options: SubscriptionServerOptions) {
  const { logger } = options;
  const supergraph = Supergraph.build(options.supergraphSdl);
  const apiSchema = supergraph.apiSchema();
  const apiGraphQL: GraphQLSchema = apiSchema.toGraphQLJSSchema();
  const supergraphGraphQL: GraphQLSchema = supergraph.schema.toGraphQLJSSchema();
  const planner = new QueryPlanner(supergraph);
  const plans = new Map<string, QueryPlan>();
  const dataSources = Object.fromEntries(
    Object.entries(options.subgraphUrls).map(([name, url]) => [name, new InternalDataSource(name, url, options.tokens)]),
  ) as ServiceMap;
  /** The upstream that new subscribers of a key join; `upstreams` holds every one still running. */
  const shared = new Map<string, SharedSubscription>();
  const upstreams = new Set<SharedSubscription>();
  const upstreamClients = new Set<Client>();
  const connections = new WeakMap<object, ConnectionState>();
  const maxQueued = options.maxQueuedEvents ?? 1000;
  const maxPerConnection = options.maxSubscriptionsPerConnection ?? 100;
  const maxPerUser = options.maxSubscriptionsPerUser ?? 1000;
  const connectionsByOwner = new Map<string, Set<ConnectionState>>();
  /** Where a subscription's `next` messages go (gateway/fanOut.ts): its connection's socket and operation id, by its context. */
  const deliveries = new WeakMap<GatewayContext, { connection: SubscriberConnection; id: string; operations: Record<string, unknown> }>();
  /** The TCP stream under each WebSocket (the upgrade's), which the fan-out corks per tick. */
  const streams = new WeakMap<WebSocket, Duplex>();
  /** Operations open for an owner across its connections (graphql-ws counts the one being subscribed already). */
  const openFor = (owner: string) => [...(connectionsByOwner.get(owner) ?? [])].reduce((sum, c) => sum + Object.keys(c.operations).length, 0);

  /** The credential ends: at its expiry, or when a periodic check finds it revoked. */
  function watchCredential(connection: ConnectionState, socket: WebSocket, token: string | undefined, headers: IncomingMessage['headers']): void {
    const close = (reason: string) => {
      if (socket.readyState === WebSocket.OPEN) socket.close(CLOSE_UNAUTHORIZED, reason.slice(0, 120));
    };
    const expiresAt = connection.credentials.expiresAt;
    if (expiresAt) connection.timers.push(setTimeout(() => close('Token expired: reconnect with a fresh token'), Math.max(0, expiresAt.getTime() - Date.now())));
    if (token === undefined) return;
    const interval = setInterval(() => {
      options.authenticator.authenticate(token, headers, connection.requestId).catch((error: unknown) => {
        if (error instanceof MarinerError && error.code === ErrorCode.UNAUTHENTICATED) close(`Credential no longer valid: ${error.message}`);
      });
    }, options.revalidateIntervalMs ?? 60_000);
    connection.timers.push(interval);
    for (const timer of connection.timers) timer.unref();
  }
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 * 1024 });

  function planFor(document: DocumentNode, operationName: string | undefined): QueryPlan {
    const key = `${operationName ?? ''}\n${print(document)}`;
    let plan = plans.get(key);
    if (!plan) {
      plan = planner.buildQueryPlan(operationFromDocument(apiSchema, document, { operationName }));
      if (plans.size > 1000) plans.clear();
      plans.set(key, plan);
    }
    return plan;
  }

  /** Requests with the same operation, variables and authorization scope see the same data. */
  function scopeOf(context: GatewayContext): unknown {
    const project = context.identity?.project;
    if (project) return { tenant: context.identity!.principal.tenantId, ...project };
    if (context.worker) return { worker: context.worker };
    return context.identity ? { user: context.identity.principal.userId, noProject: true } : 'anonymous';
  }

  function masked(result: { data?: unknown; errors?: readonly GraphQLError[] | readonly GraphQLFormattedError[] }): ExecutionResult {
    if (!result.errors?.length) return result as ExecutionResult;
    // graphql-ws serialises errors with toJSON: hand it GraphQLErrors, carrying only what masking kept.
    const errors = result.errors.map((error) => {
      const kept = error instanceof GraphQLError ? maskError(error.toJSON(), error, logger) : maskError(error, error, logger);
      return new GraphQLError(kept.message, { ...(kept.path ? { path: kept.path } : {}), ...(kept.extensions ? { extensions: kept.extensions } : {}) });
    });
    return { ...(result.data !== undefined ? { data: result.data as ExecutionResult['data'] } : {}), errors };
  }

  /** Starts the upstream subscription of a plan and fans its hydrated events out to the subscribers. */
  function startShared(key: string, kind: FeedKind, plan: { primary: FetchNode; rest?: PlanNode }, args: ExecutionArgs, context: GatewayContext): SharedSubscription {
    const { primary, rest } = plan;
    const variables = (args.variableValues ?? {}) as Record<string, unknown>;
    const primaryVariables = Object.fromEntries((primary.variableUsages ?? []).filter((name) => name in variables).map((name) => [name, variables[name]]));
    const url = options.subgraphUrls[primary.serviceName as SubgraphName].replace(/^http/, 'ws');
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      lazy: true,
      retryAttempts: 0,
      connectionParams: async () => ({
        [INTERNAL_TOKEN_HEADER]: await options.tokens.mint(primary.serviceName, context.requestId, context.identity, false, context.worker),
      }),
    });
    upstreamClients.add(client);
    const upstream = client.iterate({ query: primary.operation, variables: primaryVariables, ...(primary.operationName ? { operationName: primary.operationName } : {}) });
    const operationContext = buildOperationContext({ schema: supergraphGraphQL, operationDocument: args.document, operationName: args.operationName ?? undefined });
    const node: PlanNode = rest ? { kind: 'Sequence', nodes: [primary, rest] } : primary;
    // Printed once: every event's hydration hands the same operation text to the executor.
    const query = print(args.document);
    let stopped = false;
    const subscription: SharedSubscription = {
      subscribers: new Set(),
      kind,
      history: [],
      historyComplete: true,
      stop: () => {
        if (stopped) return;
        stopped = true;
        // A newer upstream may have taken the key (late joiners of a long feed): leave it to its subscribers.
        if (shared.get(key) === subscription) shared.delete(key);
        upstreams.delete(subscription);
        void upstream.return?.();
        void client.dispose();
        upstreamClients.delete(client);
      },
    };

    async function hydrate(event: ExecutionResult): Promise<ExecutionResult> {
      // The primary fetch is answered from the event; the rest runs as the gateway runs any plan.
      const serviceMap: ServiceMap = {
        ...dataSources,
        [primary.serviceName]: {
          process: async (request) =>
            request.request.query === primary.operation
              ? ({ data: event.data ?? null, ...(event.errors ? { errors: event.errors } : {}) } as never)
              : dataSources[primary.serviceName]!.process(request),
        },
      };
      // Fresh internal tokens per event: a subscription outlives a token's lifetime.
      const eventContext: GatewayContext = { ...context, internalTokens: new Map(), _shield: { cache: {} } };
      const result = await executeQueryPlan(
        { kind: 'QueryPlan', node },
        serviceMap,
        {
          request: { query, variables, ...(args.operationName ? { operationName: args.operationName } : {}) },
          context: eventContext,
          metrics: {},
          logger,
          cache: undefined,
          overallCachePolicy: undefined,
        } as never,
        operationContext,
        supergraphGraphQL,
        apiSchema,
      );
      return masked(result as { data?: unknown; errors?: readonly GraphQLError[] });
    }

    void (async () => {
      try {
        for await (const event of upstream) {
          if (subscription.subscribers.size === 0) break;
          const upstreamEvent = event as ExecutionResult;
          // An event that is only errors (the subgraph refused) has nothing to hydrate.
          const result = upstreamEvent.errors?.length && !upstreamEvent.data ? masked(upstreamEvent) : await hydrate(upstreamEvent);
          // Serialised once, whatever the number of subscribers (gateway/fanOut.ts).
          const serialized = serializeEvent(result);
          for (const subscriber of subscription.subscribers) subscriber.push(serialized);
          // Kept for late joiners, in the same turn as the fan-out: a joiner gets each event once.
          if (kind === 'state') subscription.history = [serialized];
          else if (kind === 'replayed' && subscription.historyComplete) {
            if (subscription.history.length < maxQueued) subscription.history.push(serialized);
            else {
              subscription.history = [];
              subscription.historyComplete = false;
            }
          }
        }
      } catch (error) {
        const reason = error instanceof Error ? error.message : Array.isArray(error) ? JSON.stringify(error) : String(error);
        // graphql-ws rejects with the subgraph's GraphQL errors when the subscription is refused there.
        const refused = Array.isArray(error) && error.length > 0 ? (error as GraphQLFormattedError[]) : null;
        if (!refused) logger.warn({ err: reason, service: primary.serviceName }, 'upstream subscription failed');
        const failure = masked({
          errors: refused ?? [new GraphQLError('The subscription source failed; subscribe again', { extensions: { code: ErrorCode.INTERNAL } })],
        });
        const serialized = serializeEvent(failure);
        for (const subscriber of subscription.subscribers) subscriber.push(serialized);
      } finally {
        for (const subscriber of subscription.subscribers) subscriber.end();
        subscription.stop();
      }
    })();
    return subscription;
  }

  function subscribe(args: ExecutionArgs): AsyncIterableIterator<ExecutionResult> {
    const context = args.contextValue as GatewayContext;
    const delivery = deliveries.get(context)!;
    // The client completed the operation while it was being authorized: nothing to join.
    if (!(delivery.id in delivery.operations)) return (async function* () {})();
    const plan = planFor(args.document, args.operationName ?? undefined);
    if (plan.node?.kind !== 'Subscription') throw new Error('not a subscription plan');
    const operation = getOperationAST(args.document, args.operationName ?? undefined);
    const fields = operation?.selectionSet.selections.flatMap((s) => (s.kind === 'Field' ? [s.name.value] : [])) ?? [];
    const perRequest = fields.some((name) => PER_REQUEST_SUBSCRIPTIONS.has(name));
    const kind: FeedKind = fields.some((name) => REPLAYED_SUBSCRIPTIONS.has(name)) ? 'replayed' : fields.some((name) => STATE_SUBSCRIPTIONS.has(name)) ? 'state' : 'changes';
    const key = objectHash({
      query: print(args.document),
      operationName: args.operationName ?? null,
      variables: args.variableValues ?? {},
      scope: scopeOf(context),
      // A streaming completion answers one request: its own upstream, never shared.
      ...(perRequest ? { request: crypto.randomUUID() } : {}),
    });
    let subscription = shared.get(key);
    // A replayed feed whose history was not all kept cannot catch a late joiner up. A new upstream
    // replays it (the subgraph sends a replay in few, large events) and takes the key: the late joiners
    // that follow share it, while the old one goes on for its own subscribers.
    if (subscription && !subscription.historyComplete) subscription = undefined;
    if (!subscription) {
      subscription = startShared(key, kind, plan.node, args, context);
      shared.set(key, subscription);
      upstreams.add(subscription);
    }
    const own = subscription;
    const subscriber: Subscriber = new Subscriber(delivery.connection, delivery.id, maxQueued, () => {
      own.subscribers.delete(subscriber);
      if (own.subscribers.size === 0) own.stop();
    });
    for (const event of own.history) subscriber.push(event);
    own.subscribers.add(subscriber);
    return subscriber;
  }

  useServer(
    {
      onConnect: async (ctx) => {
        const request = ctx.extra.request as IncomingMessage;
        const params = (ctx.connectionParams ?? {}) as Record<string, unknown>;
        const headers = { ...request.headers } as Record<string, unknown>;
        for (const name of ['openai-organization', 'openai-project']) {
          const value = header(params, name);
          if (value) headers[name] = value;
        }
        const authorization = header(params, 'authorization') ?? header(request.headers as Record<string, unknown>, 'authorization');
        const token = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization)?.[1] : undefined;
        const requestId = header(params, 'x-request-id') ?? header(request.headers as Record<string, unknown>, 'x-request-id') ?? crypto.randomUUID();
        try {
          const credentials = await options.authenticator.authenticate(token, headers as IncomingMessage['headers'], requestId);
          const owner = credentials.identity
            ? `user:${credentials.identity.principal.tenantId}:${credentials.identity.principal.userId}`
            : credentials.worker
              ? `cluster:${credentials.worker.clusterId}`
              : 'anonymous';
          const connection: ConnectionState = { credentials, requestId, owner, operations: ctx.subscriptions, timers: [] };
          connections.set(ctx.extra, connection);
          const owned = connectionsByOwner.get(owner) ?? new Set();
          owned.add(connection);
          connectionsByOwner.set(owner, owned);
          watchCredential(connection, ctx.extra.socket, token, headers as IncomingMessage['headers']);
          return true;
        } catch (error) {
          if (error instanceof MarinerError && error.code === ErrorCode.UNAUTHENTICATED) {
            ctx.extra.socket.close(4401, error.message.slice(0, 120));
            return false;
          }
          logger.error({ err: error, requestId }, 'subscription authentication failed');
          ctx.extra.socket.close(4500, `Internal error (request id ${requestId})`);
          return false;
        }
      },
      onSubscribe: async (ctx, id, payload) => {
        const connection = connections.get(ctx.extra)!;
        // graphql-ws has entered this operation already: the limits compare counts that include it.
        if (Object.keys(connection.operations).length > maxPerConnection) {
          return [new MarinerError(ErrorCode.RATE_LIMITED, `At most ${maxPerConnection} operations may be open on one connection: complete one first`)];
        }
        if (openFor(connection.owner) > maxPerUser) {
          return [new MarinerError(ErrorCode.RATE_LIMITED, `At most ${maxPerUser} operations may be open for one user: complete one first`)];
        }
        let document: DocumentNode;
        try {
          document = parse(payload.query, { maxTokens: options.maxTokens });
        } catch (error) {
          return [new MarinerError(ErrorCode.BAD_USER_INPUT, (error as Error).message)];
        }
        const errors = validate(apiGraphQL, document, [...specifiedRules, ...options.validationRules]);
        if (errors.length) return errors.map((e) => new MarinerError(ErrorCode.BAD_USER_INPUT, e.message));
        const operation = getOperationAST(document, payload.operationName ?? undefined);
        if (!operation) return [new MarinerError(ErrorCode.BAD_USER_INPUT, 'Unknown or ambiguous operation name')];
        const context: GatewayContext = {
          requestId: `${connection.requestId}:${id}`,
          identity: connection.credentials.identity,
          worker: connection.credentials.worker,
          system: false,
          internalTokens: new Map(),
          _shield: { cache: {} },
        };
        const socket = ctx.extra.socket;
        deliveries.set(context, { connection: { socket, stream: streams.get(socket) }, id, operations: connection.operations });
        try {
          await authorizeOperation({ schema: apiGraphQL, document, operationName: payload.operationName, variables: payload.variables, policy: options.policy, context });
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
        return { schema: apiGraphQL, document, operationName: payload.operationName ?? null, variableValues: payload.variables ?? {}, contextValue: context };
      },
      onClose: (ctx) => {
        const connection = connections.get(ctx.extra);
        if (!connection) return;
        for (const timer of connection.timers) clearTimeout(timer);
        const owned = connectionsByOwner.get(connection.owner);
        owned?.delete(connection);
        if (owned?.size === 0) connectionsByOwner.delete(connection.owner);
      },
      connectionInitWaitTimeout: options.connectionInitWaitTimeoutMs ?? 3_000,
      // A subscription's `next` messages do not come through graphql-ws: the iterator yields nothing
      // and the fan-out writes them on the socket, each event serialised once (gateway/fanOut.ts).
      subscribe: (args) => subscribe(args),
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
    sharedCount: () => upstreams.size,
    async close(): Promise<void> {
      for (const client of wss.clients) client.close(1001, 'server shutting down');
      for (const subscription of [...upstreams]) subscription.stop();
      await Promise.all([...upstreamClients].map((c) => c.dispose()));
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

export type SubscriptionServer = ReturnType<typeof createSubscriptionServer>;
