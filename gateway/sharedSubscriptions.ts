/**
 * Which subscribers share an upstream subscription (DESIGN §3: 10,000 followers of one job must not
 * cost 10,000 upstreams or hydrations). Subscribers with the same operation, variables and
 * authorization scope (tenant, organization, project, role and scopes; or the worker) share one, so a
 * subscription's payload must not depend on anything finer than that scope (such as the user). A late
 * joiner is caught up from the shared history as its feed's kind says (schema/subgraphs.ts); a
 * streaming completion (per-request) always gets its own.
 */
import { getOperationAST, print, type ExecutionArgs, type ExecutionResult } from 'graphql';
import objectHash from 'object-hash';
import { PER_REQUEST_SUBSCRIPTIONS, REPLAYED_SUBSCRIPTIONS, STATE_SUBSCRIPTIONS } from '../schema/subgraphs.js';
import type { GatewayContext } from './context.js';
import { Subscriber, type SubscriberConnection } from './fanOut.js';
import type { SubscriptionHydration } from './subscriptionHydration.js';
import type { SubscriptionPlanner } from './subscriptionPlans.js';
import type { FeedKind, SharedSubscription, UpstreamSubscriptions } from './upstreamSubscription.js';

/** Where a subscription's `next` messages go (gateway/fanOut.ts): its connection's socket and its operation id. */
export interface Delivery {
  connection: SubscriberConnection;
  id: string;
  /** graphql-ws's open operations of the connection: one no longer there was completed by the client. */
  operations: Record<string, unknown>;
}

export interface SharedSubscriptionsOptions {
  planner: SubscriptionPlanner;
  hydration: SubscriptionHydration;
  upstreams: UpstreamSubscriptions;
  /** A subscriber more than this many events behind is dropped. */
  maxQueued: number;
}

/** Requests with the same operation, variables and authorization scope see the same data. */
function scopeOf(context: GatewayContext): unknown {
  const project = context.identity?.project;
  if (project) return { tenant: context.identity!.principal.tenantId, ...project };
  if (context.worker) return { worker: context.worker };
  return context.identity ? { user: context.identity.principal.userId, noProject: true } : 'anonymous';
}

export function createSharedSubscriptions({ planner, hydration, upstreams, maxQueued }: SharedSubscriptionsOptions) {
  /** The upstream that new subscribers of a key join (older ones of the key may still run for their own subscribers). */
  const shared = new Map<string, SharedSubscription>();

  return {
    /**
     * A subscriber joins the upstream of its key, or starts it: the iterator graphql-ws runs the
     * operation with, which yields nothing (the fan-out writes the `next` messages) and ends with it.
     */
    join(args: ExecutionArgs, delivery: Delivery): AsyncIterableIterator<ExecutionResult> {
      const context = args.contextValue as GatewayContext;
      // The client completed the operation while it was being authorized: nothing to join.
      if (!(delivery.id in delivery.operations)) return (async function* () {})();
      const plan = planner.subscriptionPlan(args.document, args.operationName ?? undefined);
      const operation = getOperationAST(args.document, args.operationName ?? undefined);
      const fields = operation?.selectionSet.selections.flatMap((s) => (s.kind === 'Field' ? [s.name.value] : [])) ?? [];
      const perRequest = fields.some((name) => PER_REQUEST_SUBSCRIPTIONS.has(name));
      const kind: FeedKind = fields.some((name) => REPLAYED_SUBSCRIPTIONS.has(name))
        ? 'replayed'
        : fields.some((name) => STATE_SUBSCRIPTIONS.has(name))
          ? 'state'
          : 'changes';
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
        subscription = upstreams.start({
          kind,
          primary: plan.primary,
          args,
          context,
          hydrate: hydration(plan, args, context),
          // A newer upstream may have taken the key (late joiners of a long feed): leave it to its subscribers.
          onStop: (stopped) => {
            if (shared.get(key) === stopped) shared.delete(key);
          },
        });
        shared.set(key, subscription);
      }
      const own = subscription;
      const subscriber: Subscriber = new Subscriber(delivery.connection, delivery.id, maxQueued, () => {
        own.subscribers.delete(subscriber);
        if (own.subscribers.size === 0) own.stop();
      });
      for (const event of own.history) subscriber.push(event);
      own.subscribers.add(subscriber);
      return subscriber;
    },
  };
}

export type SharedSubscriptions = ReturnType<typeof createSharedSubscriptions>;
