import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { print, type ExecutionResult } from 'graphql';
import { Supergraph } from '@apollo/federation-internals';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import type { ApiCallSink } from '../lib/apiCallRecord.js';
import type { MarinerConfig } from '../lib/config.js';
import { ErrorCode, httpStatusFor, MarinerError } from '../lib/errors.js';
import { bearerToken, BodyTooLargeError, requestIdOf, parseJsonBody, readBody, sendApolloResponse, sendGraphQLError, toHeaderMap } from '../lib/http.js';
import type { InternalTokens } from '../lib/identity.js';
import type { InferencePlane, InferencePlaneServer } from '../lib/inferencePlane.js';
import type { Logger } from '../lib/logging.js';
import type { PubSub } from '../lib/pubsub.js';
import { maskError } from '../lib/subgraphServer.js';
import { policy } from '../schema/rbac/policy.js';
import { supergraphSdl, type SubgraphName } from '../schema/subgraphs.js';
import type { RoleScopeTable } from '../schema/rbac/roleScopes.js';
import { AuditRecorder, auditSubgraphSink, clientAddressOf, createAuditPlugin } from './audit.js';
import { createAuthenticator, createPrincipalChangesPlugin } from './authentication.js';
import type { GatewayContext } from './context.js';
import { InternalDataSource } from './dataSource.js';
import { InternalTokenCache } from './internalTokenCache.js';
import { createConsoleServer } from './console.js';
import { explorerHtml } from './explorer.js';
import { createInferencePlane } from './inferencePlane.js';
import { createOidcVerifier, type OidcVerifier } from './oidc.js';
import { createErrorLoggingPlugin, createRbacPlugin, createSubscriptionOverHttpPlugin } from './plugins.js';
import { createSubscriptionServer } from './subscriptions.js';
import { ApiCallRecorder, ApiUsage, inferenceSubgraphSink, type RestUsage } from './usage.js';

export { authorizeOperation } from './authorizeOperation.js';
export type { GatewayContext } from './context.js';

export interface GatewayOptions {
  config: MarinerConfig;
  /** Where each subgraph runs (the supergraph holds placeholders). */
  subgraphUrls: Record<SubgraphName, string>;
  tokens: InternalTokens;
  logger: Logger;
  roleScopes: RoleScopeTable;
  /** Defaults to a verifier for config.oidc.issuer, or none when no issuer is configured. */
  oidc?: OidcVerifier | null;
  /** The inference component's data plane when it runs in this process; null or absent: reached over HTTP. */
  inferencePlane?: InferencePlaneServer | null;
  /** The inference component's store of API call records when it runs in this process; null or absent: written over HTTP. */
  apiCallSink?: ApiCallSink | null;
  /** More Apollo plugins, e.g. request metrics (`mariner serve`); subscriptions do not run through them. */
  plugins?: ApolloServerPlugin<GatewayContext>[];
  /** Events across replicas: with it, principals are cached and dropped when the users subgraph announces a change. */
  pubsub?: PubSub;
  /** The platform's secret, which the web console's session cookie is sealed under (gateway/console.ts); without it the console's sign-in is off. */
  consoleSecret?: string;
}

export interface Gateway {
  /** Serves `/graphql` (POST, GET for queries, and the explorer page for browsers). */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** An HTTP upgrade on `/graphql`: subscriptions (and any operation) over graphql-ws. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** The web console: `/console...` (its page, assets and sign-in) and `/` (a redirect there for browsers). */
  handleConsole(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** The console's session cookie as the bearer of a REST call it makes (`/v1/files`); false when refused (answered). */
  consoleCookieAsBearer(req: IncomingMessage, res: ServerResponse): boolean;
  /** Upstream subscriptions open now, each shared by its subscribers. */
  sharedSubscriptions(): number;
  /** OpenAI inference without GraphQL on the way, under the same authentication and policy (the REST layer's hot path). */
  inference: InferencePlane;
  /** The usage records of REST calls (gateway/usage.ts: one record per REST call, taken by the REST layer). */
  usage: RestUsage;
  stop(): Promise<void>;
}

/**
 * Keeps the Supergraph that ApolloGateway builds from the SDL, for the subscription server: the
 * supergraph is then parsed, its API schema derived and its subgraphs extracted once per process, not
 * once for each (about a third of the gateway's start). ApolloGateway does not expose it, so this wraps
 * its createSchemaFromSupergraphSdl, a private method: should a version of @apollo/gateway lose it, the
 * caller builds its own Supergraph (slower to start, the same behaviour).
 */
function keepSupergraph(gateway: ApolloGateway): () => Supergraph | undefined {
  let kept: Supergraph | undefined;
  const internals = gateway as unknown as { createSchemaFromSupergraphSdl?: (sdl: string) => { supergraph: Supergraph } };
  const build = internals.createSchemaFromSupergraphSdl?.bind(gateway);
  if (build) {
    internals.createSchemaFromSupergraphSdl = (sdl) => {
      const result = build(sdl);
      kept = result.supergraph;
      return result;
    };
  }
  return () => kept;
}

/** The federated gateway: authentication, RBAC, limits and error masking over the supergraph. */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { config, logger } = options;
  // @apollo/gateway sends usage metrics to Apollo, probing cloud metadata endpoints first, unless
  // this is set. A self-hosted platform does not call out; an operator may set it to false.
  process.env['APOLLO_TELEMETRY_DISABLED'] ??= 'true';
  // One cache of internal tokens for every subgraph call the gateway makes: GraphQL, subscriptions' hydration, inference.
  const tokenCache = new InternalTokenCache(options.tokens);
  const sdl = supergraphSdl();
  const gateway = new ApolloGateway({
    supergraphSdl: sdl,
    // The committed supergraph is what schema/compose.ts composed and validated (`npm run check` fails
    // when it is stale); validating it again at every start cost a quarter of the gateway's start.
    validateSupergraph: false,
    buildService: ({ name }) => {
      const url = options.subgraphUrls[name as SubgraphName];
      if (!url) throw new Error(`no URL for subgraph ${name}`);
      return new InternalDataSource(name, url, tokenCache);
    },
    logger,
  });
  // The audit log: one entry per mutation, written in batches to the audit subgraph (gateway/audit.ts).
  const audit = new AuditRecorder({ sink: auditSubgraphSink(options.subgraphUrls.audit, options.tokens), logger });
  // Usage records of every API call, batched to the inference component (gateway/usage.ts): into its
  // store when it runs in this process, else to its subgraph.
  const usageRecorder = new ApiCallRecorder({
    sink: options.apiCallSink ?? inferenceSubgraphSink(options.subgraphUrls.inference, options.tokens),
    logger,
    flushIntervalMs: config.inference.usageFlushIntervalMs,
  });
  const usage = new ApiUsage(usageRecorder);
  const armor = new ApolloArmor({
    maxDepth: { n: config.limits.maxDepth },
    maxAliases: { n: config.limits.maxAliases },
    // The token limit is the parser's own (parseOptions below): armor's maxTokens plugin re-parses in
    // parsingDidStart, outside Apollo's syntax-error handling, so every syntax error became HTTP 500.
    maxTokens: { enabled: false },
    costLimit: { maxCost: config.limits.maxCost },
    maxDirectives: { n: config.limits.maxDirectives },
    blockFieldSuggestion: { enabled: config.environment === 'production' },
  }).protect();
  const apollo = new ApolloServer<GatewayContext>({
    gateway,
    introspection: config.introspection,
    csrfPrevention: true,
    allowBatchedHttpRequests: false,
    // bin/mariner owns the process's signals and stops components in order.
    stopOnTerminationSignals: false,
    includeStacktraceInErrorResponses: false,
    parseOptions: { maxLexicalTokens: config.limits.maxTokens },
    validationRules: armor.validationRules,
    plugins: [
      ...(armor.plugins as never[]),
      createRbacPlugin(policy),
      createPrincipalChangesPlugin(() => authenticator),
      createSubscriptionOverHttpPlugin(),
      createErrorLoggingPlugin(logger),
      createAuditPlugin(audit),
      usage.plugin(),
      ApolloServerPluginLandingPageDisabled(),
      ...(options.plugins ?? []),
    ],
    formatError: (formatted, error) => maskError(formatted, error, logger),
    logger,
  });
  const keptSupergraph = keepSupergraph(gateway);
  await apollo.start();

  const oidc =
    options.oidc !== undefined
      ? options.oidc
      : config.oidc.issuer
        ? createOidcVerifier({ issuer: config.oidc.issuer, audience: config.oidc.audience ?? '', emailClaim: config.oidc.emailClaim })
        : null;
  const authenticator = createAuthenticator({
    usersUrl: options.subgraphUrls.users,
    clustersUrl: options.subgraphUrls.clusters,
    tokens: options.tokens,
    roleScopes: options.roleScopes,
    oidc,
    ...(options.pubsub ? { invalidations: options.pubsub } : {}),
  });

  const consoleServer = createConsoleServer({
    secret: options.consoleSecret ?? randomBytes(32).toString('hex'),
    authenticator,
    logger,
    ...(options.pubsub ? { pubsub: options.pubsub } : {}),
    // The browser's OIDC sign-in (gateway/oidcLogin.ts): Mariner's client id at the issuer is the audience.
    ...(oidc && config.oidc.issuer && config.oidc.audience
      ? { oidc: { issuer: config.oidc.issuer, clientId: config.oidc.audience, clientSecret: config.oidc.clientSecret, verifier: oidc } }
      : {}),
  });

  const inference = createInferencePlane({
    authenticator,
    policy,
    tokens: tokenCache,
    inferenceUrl: options.subgraphUrls.inference,
    local: options.inferencePlane ?? null,
    logger,
    onAdmitted: (requestId, identity, modelId) => usage.attribute(requestId, identity, modelId),
  });

  const subscriptions = createSubscriptionServer({
    supergraph: keptSupergraph() ?? Supergraph.build(sdl, { validateSupergraph: false }),
    ...(gateway.schema ? { apiGraphQLSchema: gateway.schema } : {}),
    subgraphUrls: options.subgraphUrls,
    tokens: options.tokens,
    tokenCache,
    authenticator,
    policy,
    validationRules: armor.validationRules as never,
    maxTokens: config.limits.maxTokens,
    maxQueuedEvents: config.subscriptions.maxQueuedEvents,
    maxSubscriptionsPerConnection: config.subscriptions.maxPerConnection,
    maxSubscriptionsPerUser: config.subscriptions.maxPerUser,
    revalidateIntervalMs: config.subscriptions.revalidateIntervalMs,
    connectionInitWaitTimeoutMs: config.subscriptions.initTimeoutMs,
    logger,
    executeOperation: async ({ document, variables, operationName, context }) => {
      const response = await apollo.executeOperation(
        { query: print(document), variables, ...(operationName ? { operationName } : {}) },
        { contextValue: context },
      );
      if (response.body.kind !== 'single') throw new Error('incremental delivery is not supported over WebSocket');
      return response.body.singleResult as ExecutionResult;
    },
  });

  function fail(res: ServerResponse, code: ErrorCode, message: string, requestId: string, status = httpStatusFor(code)): void {
    const headers: Record<string, string> = { 'x-request-id': requestId };
    if (code === ErrorCode.UNAUTHENTICATED) headers['www-authenticate'] = 'Bearer';
    sendGraphQLError(res, code, message, headers, status);
  }

  return {
    async handle(req, res) {
      const requestId = requestIdOf(req);
      const url = new URL(req.url ?? '/graphql', 'http://gateway');
      const started = performance.now();
      // A request refused before Apollo runs it is still an API call with a usage record.
      const refuse = (code: ErrorCode, message: string, status = httpStatusFor(code)) => {
        usage.graphqlRefused({ requestId, method: req.method ?? 'GET', peerAddress: req.socket.remoteAddress }, code, status, performance.now() - started);
        fail(res, code, message, requestId, status);
      };
      try {
        if (req.method === 'GET' && !url.searchParams.has('query') && (req.headers.accept ?? '').includes('text/html')) {
          if (!config.introspection) return fail(res, ErrorCode.NOT_FOUND, 'The explorer is off (MARINER_INTROSPECTION=false)', requestId);
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
          res.end(explorerHtml({ endpoint: url.pathname }));
          return;
        }
        if (req.headers.authorization !== undefined && bearerToken(req) === undefined) {
          return refuse(ErrorCode.UNAUTHENTICATED, 'Authorization header must be "Bearer <API key or OIDC token>"');
        }
        const text = req.method === 'POST' ? await readBody(req, config.limits.maxBodyBytes) : '';
        const body = parseJsonBody(res, text);
        if (body === undefined) return;
        // The web console's session cookie, where there is no Authorization header (CSRF-checked: gateway/console.ts).
        const token = bearerToken(req) ?? consoleServer.credentialOf(req, 'http');
        const { identity, worker } = await authenticator.authenticate(token, req.headers, requestId);
        const context: GatewayContext = {
          requestId,
          identity,
          worker,
          system: false,
          clientAddress: clientAddressOf(req),
          internalTokens: new Map(),
          _shield: { cache: {} },
        };
        usage.markIfForwarded(context, req.socket.remoteAddress);
        const response = await apollo.executeHTTPGraphQLRequest({
          httpGraphQLRequest: { method: req.method ?? 'GET', headers: toHeaderMap(req), search: url.search, body },
          context: async () => context,
        });
        await sendApolloResponse(res, response);
      } catch (error) {
        if (error instanceof BodyTooLargeError) return refuse(ErrorCode.BAD_USER_INPUT, error.message, 413);
        if (error instanceof MarinerError) return refuse(error.code, error.message);
        logger.error({ err: error, requestId }, 'gateway request failed');
        if (!res.headersSent) refuse(ErrorCode.INTERNAL, `Internal error (request id ${requestId})`);
        else res.end();
      }
    },
    handleUpgrade(req, socket, head) {
      let consoleKey: string | undefined;
      try {
        consoleKey = consoleServer.credentialOf(req, 'websocket');
      } catch (error) {
        const status = (error as MarinerError).code === ErrorCode.FORBIDDEN ? '403 Forbidden' : '401 Unauthorized';
        return void socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      }
      // A console connection authenticates as its upgrade request's Authorization header would.
      if (consoleKey !== undefined) req.headers.authorization = `Bearer ${consoleKey}`;
      subscriptions.handleUpgrade(req, socket, head);
    },
    handleConsole: (req, res) => consoleServer.handle(req, res),
    consoleCookieAsBearer: (req, res) => consoleServer.cookieAsBearer(req, res),
    sharedSubscriptions: () => subscriptions.sharedCount(),
    inference,
    usage,
    async stop() {
      consoleServer.close();
      inference.close();
      await subscriptions.close();
      await apollo.stop();
      // After the last request: its entry is in the queue. The audit subgraph stops after the gateway.
      await audit.stop();
      // Likewise the usage records: the inference component stops after the gateway.
      await usageRecorder.stop();
    },
  };
}
