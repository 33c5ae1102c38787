/**
 * Query plans of subscriptions, from the gateway's own query planner (@apollo/query-planner over the
 * supergraph), cached by operation text: the same operation subscribed by many clients is planned once.
 * A subscription's plan is a `Subscription` node: the primary fetch, which opens the subscription on
 * the owning subgraph, and the rest, run for every event (gateway/subscriptionHydration.ts).
 */
import { operationFromDocument, type Schema, type Supergraph } from '@apollo/federation-internals';
import { QueryPlanner, type FetchNode, type PlanNode, type QueryPlan } from '@apollo/query-planner';
import { print, type DocumentNode } from 'graphql';

/** The plan of a subscription: its primary fetch, and what each event still needs. */
export interface SubscriptionPlan {
  primary: FetchNode;
  rest?: PlanNode;
}

/** Past this many plans the cache starts again (operations are few; a flood of distinct ones must not hold memory). */
const MAX_CACHED_PLANS = 1000;

export function createSubscriptionPlanner(supergraph: Supergraph, apiSchema: Schema) {
  const planner = new QueryPlanner(supergraph);
  const plans = new Map<string, QueryPlan>();

  function planFor(document: DocumentNode, operationName: string | undefined): QueryPlan {
    const key = `${operationName ?? ''}\n${print(document)}`;
    let plan = plans.get(key);
    if (!plan) {
      plan = planner.buildQueryPlan(operationFromDocument(apiSchema, document, { operationName }));
      if (plans.size > MAX_CACHED_PLANS) plans.clear();
      plans.set(key, plan);
    }
    return plan;
  }

  return {
    /** The plan of a subscription operation; throws when the operation is not one. */
    subscriptionPlan(document: DocumentNode, operationName: string | undefined): SubscriptionPlan {
      const plan = planFor(document, operationName);
      if (plan.node?.kind !== 'Subscription') throw new Error('not a subscription plan');
      return plan.node;
    },
  };
}

export type SubscriptionPlanner = ReturnType<typeof createSubscriptionPlanner>;
