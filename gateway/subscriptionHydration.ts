/**
 * Hydration of a subscription's events (prototypes §A): an upstream event answers only the plan's
 * primary fetch; the fields other subgraphs own are resolved by the gateway's own executor running the
 * plan's rest (`executeQueryPlan` over a synthetic `Sequence[primary, rest]`, the primary answered from
 * the event). One hydration per event serves every subscriber of a shared subscription.
 */
import { buildOperationContext, executeQueryPlan, type ServiceMap } from '@apollo/gateway';
import type { Schema } from '@apollo/federation-internals';
import type { PlanNode } from '@apollo/query-planner';
import { print, type ExecutionArgs, type ExecutionResult, type GraphQLError, type GraphQLSchema } from 'graphql';
import type { Logger } from '../lib/logging.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import type { GatewayContext } from './context.js';
import type { InternalTokenCache } from './internalTokenCache.js';
import { InternalDataSource } from './dataSource.js';
import { maskResult } from './subscriptionMasking.js';
import type { SubscriptionPlan } from './subscriptionPlans.js';

export interface SubscriptionHydrationOptions {
  subgraphUrls: Record<SubgraphName, string>;
  /** The gateway's internal tokens for subgraph calls (one cache for all its paths). */
  tokens: InternalTokenCache;
  /** The supergraph as graphql-js sees it (the executor's schema), and the API schema. */
  supergraphSchema: GraphQLSchema;
  apiSchema: Schema;
  logger: Logger;
}

/** Hydrates one event of the subscription it was made for: the event's full, masked result. */
export type Hydrate = (event: ExecutionResult) => Promise<ExecutionResult>;

export function createSubscriptionHydration(options: SubscriptionHydrationOptions) {
  const { supergraphSchema, apiSchema, logger } = options;
  const dataSources = Object.fromEntries(
    Object.entries(options.subgraphUrls).map(([name, url]) => [name, new InternalDataSource(name, url, options.tokens)]),
  ) as ServiceMap;

  /** The hydration of one subscription's events: its plan, operation and subscriber context. */
  return function hydrationOf({ primary, rest }: SubscriptionPlan, args: ExecutionArgs, context: GatewayContext): Hydrate {
    const variables = (args.variableValues ?? {}) as Record<string, unknown>;
    const operationContext = buildOperationContext({
      schema: supergraphSchema,
      operationDocument: args.document,
      operationName: args.operationName ?? undefined,
    });
    const node: PlanNode = rest ? { kind: 'Sequence', nodes: [primary, rest] } : primary;
    // Printed once: every event's hydration hands the same operation text to the executor.
    const query = print(args.document);

    return async function hydrate(event) {
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
        supergraphSchema,
        apiSchema,
      );
      return maskResult(result as { data?: unknown; errors?: readonly GraphQLError[] }, logger);
    };
  };
}

export type SubscriptionHydration = ReturnType<typeof createSubscriptionHydration>;
