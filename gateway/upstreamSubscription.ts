/**
 * One upstream subscription and the subscribers it feeds: a graphql-ws client to the subgraph that owns
 * the plan's primary fetch (the internal token in its connection parameters), each event hydrated once
 * (gateway/subscriptionHydration.ts), serialised once and pushed to every subscriber (gateway/fanOut.ts),
 * and kept for late joiners as the feed's kind says. Which subscribers share one is
 * gateway/sharedSubscriptions.ts's business.
 */
import type { FetchNode } from '@apollo/query-planner';
import { GraphQLError, type ExecutionArgs, type ExecutionResult, type GraphQLFormattedError } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { WebSocket } from 'ws';
import { ErrorCode } from '../lib/errors.js';
import { INTERNAL_TOKEN_HEADER, type InternalTokens } from '../lib/identity.js';
import type { Logger } from '../lib/logging.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import type { GatewayContext } from './context.js';
import { serializeEvent, type SerializedEvent, type Subscriber } from './fanOut.js';
import type { Hydrate } from './subscriptionHydration.js';
import { maskResult } from './subscriptionMasking.js';

/** How a late joiner of a shared subscription catches up (schema/subgraphs.ts). */
export type FeedKind = 'state' | 'replayed' | 'changes';

/** One upstream subscription and its hydration, shared by every subscriber with the same key. */
export interface SharedSubscription {
  subscribers: Set<Subscriber>;
  kind: FeedKind;
  /** What a late joiner is handed first: the latest event (state), or every event so far (replayed); serialised already. */
  history: SerializedEvent[];
  /** False once a replayed feed's history outgrew the bound: late joiners then get their own upstream. */
  historyComplete: boolean;
  stop(): void;
}

export interface UpstreamSubscriptionsOptions {
  subgraphUrls: Record<SubgraphName, string>;
  tokens: InternalTokens;
  logger: Logger;
  /** The most events a replayed feed keeps for late joiners. */
  maxHistory: number;
}

/** What an upstream subscribes to: the plan's primary fetch, for the operation and subscriber it was planned for. */
export interface UpstreamRequest {
  kind: FeedKind;
  primary: FetchNode;
  args: ExecutionArgs;
  context: GatewayContext;
  /** Resolves the rest of the plan for each event with data (gateway/subscriptionHydration.ts). */
  hydrate: Hydrate;
  /** Called once, when the upstream stops. */
  onStop: (subscription: SharedSubscription) => void;
}

export function createUpstreamSubscriptions(options: UpstreamSubscriptionsOptions) {
  const { logger, maxHistory } = options;
  /** Every upstream still running. */
  const running = new Set<SharedSubscription>();
  const clients = new Set<Client>();

  /** Starts the upstream subscription of a plan and fans its hydrated events out to the subscribers. */
  function start({ kind, primary, args, context, hydrate, onStop }: UpstreamRequest): SharedSubscription {
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
    clients.add(client);
    const upstream = client.iterate({
      query: primary.operation,
      variables: primaryVariables,
      ...(primary.operationName ? { operationName: primary.operationName } : {}),
    });
    let stopped = false;
    const subscription: SharedSubscription = {
      subscribers: new Set(),
      kind,
      history: [],
      historyComplete: true,
      stop: () => {
        if (stopped) return;
        stopped = true;
        onStop(subscription);
        running.delete(subscription);
        void upstream.return?.();
        void client.dispose();
        clients.delete(client);
      },
    };

    void (async () => {
      try {
        for await (const event of upstream) {
          if (subscription.subscribers.size === 0) break;
          const upstreamEvent = event as ExecutionResult;
          // An event that is only errors (the subgraph refused) has nothing to hydrate.
          const result = upstreamEvent.errors?.length && !upstreamEvent.data ? maskResult(upstreamEvent, logger) : await hydrate(upstreamEvent);
          // Serialised once, whatever the number of subscribers (gateway/fanOut.ts).
          const serialized = serializeEvent(result);
          // A state feed's event that says what the last one said (a report changed only fields the
          // subscribers did not select, or only its time) is no news: not sent.
          if (kind === 'state' && subscription.history[0]?.tail.equals(serialized.tail)) continue;
          for (const subscriber of subscription.subscribers) subscriber.push(serialized);
          // Kept for late joiners, in the same turn as the fan-out: a joiner gets each event once.
          if (kind === 'state') subscription.history = [serialized];
          else if (kind === 'replayed' && subscription.historyComplete) {
            if (subscription.history.length < maxHistory) subscription.history.push(serialized);
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
        const failure = maskResult(
          { errors: refused ?? [new GraphQLError('The subscription source failed; subscribe again', { extensions: { code: ErrorCode.INTERNAL } })] },
          logger,
        );
        const serialized = serializeEvent(failure);
        for (const subscriber of subscription.subscribers) subscriber.push(serialized);
      } finally {
        for (const subscriber of subscription.subscribers) subscriber.end();
        subscription.stop();
      }
    })();
    running.add(subscription);
    return subscription;
  }

  return {
    start,
    /** Upstream subscriptions running (for tests and metrics). */
    count: () => running.size,
    /** Stops every upstream; their subscribers end. */
    async close(): Promise<void> {
      for (const subscription of [...running]) subscription.stop();
      await Promise.all([...clients].map(async (c) => c.dispose()));
    },
  };
}

export type UpstreamSubscriptions = ReturnType<typeof createUpstreamSubscriptions>;
