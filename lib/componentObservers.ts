import type { ApolloServerPlugin, BaseContext } from '@apollo/server';

/**
 * What a host measures of the components it runs: `mariner serve` exposes Prometheus metrics on its
 * operations port (bin/metrics.ts); `mariner up` measures nothing (NO_OBSERVERS). A component reports
 * through these hooks and never knows which it got.
 */
export interface ComponentObservers {
  /** An Apollo plugin counting and timing the operations of one subgraph (or `gateway`); undefined: none. */
  requestPlugin(subgraph: string): ApolloServerPlugin<BaseContext> | undefined;
  /** Agent tunnels open to this process (the sessions component). */
  observeTunnels(tunnels: TunnelCounts): void;
  /** Upstream subscriptions the gateway holds open, each shared by its subscribers. */
  observeSubscriptions(count: () => number): void;
  /** Sees every inference request's usage record as it is made; undefined: nobody looks. */
  inferenceObserver(): ((record: InferenceSample) => void) | undefined;
  /** Jobs by kind and status, read when measured. */
  observeJobs(counts: () => Promise<{ kind: string; status: string; count: number }[]>): void;
  /** Inference runtimes as their agents last reported them, read when measured. */
  observeRuntimes(read: () => Promise<readonly RuntimeSample[]>): void;
}

/** The tunnel registry as a gauge reads it: told of each cluster's change, asked for its tunnels. */
export interface TunnelCounts {
  onChange(listener: (clusterId: string) => void): unknown;
  tunnels(clusterId: string): readonly unknown[];
}

/** One inference request, from its usage record. */
export interface InferenceSample {
  model_id: string;
  status_code: number;
  prompt_tokens: number;
  completion_tokens: number;
  time_to_first_token_ms: number | null;
  latency_ms: number;
}

/** One runtime, as the inference subgraph stores its agent's report. */
export interface RuntimeSample {
  cluster_id: string;
  model_id: string;
  desired_replicas: number;
  ready_replicas: number;
  in_flight_requests: number;
  autoscaling: { averageInFlight: number } | null;
}

/** `mariner up`: nothing is measured (no operations port to read it from). */
export const NO_OBSERVERS: ComponentObservers = {
  requestPlugin: () => undefined,
  observeTunnels: () => undefined,
  observeSubscriptions: () => undefined,
  inferenceObserver: () => undefined,
  observeJobs: () => undefined,
  observeRuntimes: () => undefined,
};
