import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { Kind, type OperationDefinitionNode } from 'graphql';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isErrorCode } from '../lib/errors.js';
import { sendJson } from '../lib/http.js';
import type { Logger } from '../lib/logging.js';
import type { ComponentObservers, InferenceSample, RuntimeSample, TunnelCounts } from '../lib/componentObservers.js';

/**
 * The Prometheus metrics of one `mariner serve` component, on its operations port (/metrics): the hooks
 * its components report through (lib/componentObservers.ts), and the registry they fill. One registry
 * per component rather than prom-client's global one, so components started side by side in one process
 * (the tests) do not mix their series.
 */
export interface ComponentMetrics extends ComponentObservers {
  registry: Registry;
  /** mariner_tunnel_connections: agent tunnels open to this process (the sessions component). */
  observeTunnels(tunnels: TunnelCounts): void;
  /** mariner_gateway_upstream_subscriptions: upstream subscriptions the gateway holds, each shared by its subscribers. */
  observeSubscriptions(count: () => number): void;
  /**
   * An Apollo plugin counting and timing GraphQL operations: mariner_graphql_requests_total and
   * mariner_graphql_request_duration_seconds, labelled by `subgraph` (`gateway` for the gateway's
   * own), operation type and name, and result (`ok` or the first error's code).
   */
  requestPlugin(subgraph: string): ApolloServerPlugin<BaseContext>;
  /** mariner_http_requests_in_flight: requests being answered on the component's ports (graceful stops wait for them). */
  observeInFlight(count: () => number): void;
  /**
   * Inference per model, from each request's usage record: mariner_inference_requests_total{model,status},
   * mariner_inference_time_to_first_token_seconds{model}, mariner_inference_request_duration_seconds{model},
   * mariner_inference_tokens_total{model,type} (prompt, completion). The inference component.
   */
  inferenceObserver(): (record: InferenceSample) => void;
  /** mariner_jobs: jobs by kind and status, read from the database when scraped (the jobs component). */
  observeJobs(counts: () => Promise<{ kind: string; status: string; count: number }[]>): void;
  /**
   * Inference runtimes as their agents last reported them, read when scraped (the inference component):
   * mariner_runtime_replicas{cluster,model,state} (desired, ready), mariner_runtime_requests_in_flight{cluster,model}
   * and, for autoscaled ones, mariner_runtime_average_in_flight{cluster,model} (the autoscaler's metric).
   */
  observeRuntimes(read: () => Promise<readonly RuntimeSample[]>): void;
}

/** Answers a scrape: the registry's metrics in Prometheus text format (500 when collecting them failed). */
export function sendMetrics(registry: Registry, res: ServerResponse, logger: Logger): void {
  registry.metrics().then(
    (text) => {
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(text);
    },
    (error: unknown) => {
      logger.error({ err: error }, 'metrics collection failed');
      sendJson(res, 500, { error: 'metrics collection failed' });
    },
  );
}

/** Whether a request comes from this machine (`mariner up` answers /metrics to those only: the series name every tenant's models and clusters). */
export function fromLoopback(req: IncomingMessage): boolean {
  const address = req.socket.remoteAddress ?? '';
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** Operation names are the client's choice: beyond this many distinct ones, they count as `other`. */
const MAX_OPERATION_NAMES = 200;

export function createComponentMetrics(component: string): ComponentMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry, prefix: 'mariner_' });
  const labelNames = ['subgraph', 'type', 'operation', 'result'] as const;
  let requests: Counter<(typeof labelNames)[number]> | undefined;
  let durations: Histogram<(typeof labelNames)[number]> | undefined;
  const operationNames = new Set<string>();
  const operationLabel = (name: string | null | undefined): string => {
    if (!name) return 'anonymous';
    if (operationNames.has(name)) return name;
    if (operationNames.size >= MAX_OPERATION_NAMES) return 'other';
    operationNames.add(name);
    return name;
  };
  return {
    registry,
    observeTunnels(tunnels) {
      // The registry announces changes per cluster; the gauge keeps each cluster's count.
      const byCluster = new Map<string, number>();
      const gauge = new Gauge({ name: 'mariner_tunnel_connections', help: 'Agent tunnels open to this process', registers: [registry] });
      gauge.set(0);
      tunnels.onChange((clusterId) => {
        const count = tunnels.tunnels(clusterId).length;
        if (count === 0) byCluster.delete(clusterId);
        else byCluster.set(clusterId, count);
        gauge.set([...byCluster.values()].reduce((sum, n) => sum + n, 0));
      });
    },
    requestPlugin(subgraph) {
      requests ??= new Counter({ name: 'mariner_graphql_requests_total', help: 'GraphQL operations served', labelNames, registers: [registry] });
      durations ??= new Histogram({
        name: 'mariner_graphql_request_duration_seconds',
        help: 'Time to answer a GraphQL operation',
        labelNames,
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers: [registry],
      });
      const counter = requests;
      const histogram = durations;
      return {
        async requestDidStart() {
          const started = process.hrtime.bigint();
          return {
            async willSendResponse({ response, operation, operationName, request, document }) {
              const errors = response.body.kind === 'single' ? response.body.singleResult.errors : undefined;
              const code = errors?.[0]?.extensions?.['code'];
              // An operation that failed validation was never resolved: name it from the parsed document.
              const written = document?.definitions.find((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
              const labels = {
                subgraph,
                type: operation?.operation ?? written?.operation ?? 'unknown',
                operation: operationLabel(operationName ?? request.operationName ?? written?.name?.value),
                result: !errors?.length ? 'ok' : isErrorCode(code) ? code : 'INTERNAL',
              };
              counter.inc(labels);
              histogram.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
            },
          };
        },
      };
    },
    inferenceObserver() {
      const requestsTotal = new Counter({
        name: 'mariner_inference_requests_total',
        help: 'Inference requests by model and HTTP status',
        labelNames: ['model', 'status'] as const,
        registers: [registry],
      });
      const ttft = new Histogram({
        name: 'mariner_inference_time_to_first_token_seconds',
        help: 'Time from the request to the first token (streaming) or the answer',
        labelNames: ['model'] as const,
        buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
        registers: [registry],
      });
      const duration = new Histogram({
        name: 'mariner_inference_request_duration_seconds',
        help: 'Time to answer an inference request in full',
        labelNames: ['model'] as const,
        buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
        registers: [registry],
      });
      const tokens = new Counter({
        name: 'mariner_inference_tokens_total',
        help: 'Tokens by model: prompt and completion',
        labelNames: ['model', 'type'] as const,
        registers: [registry],
      });
      // Models are the tenants' to name: past this many, they count as `other` (bounded series).
      const models = new Set<string>();
      const modelLabel = (id: string) => (models.has(id) || (models.size < MAX_OPERATION_NAMES && models.add(id)) ? id : 'other');
      return (record) => {
        const model = modelLabel(record.model_id);
        requestsTotal.inc({ model, status: String(record.status_code) });
        if (record.time_to_first_token_ms !== null) ttft.observe({ model }, record.time_to_first_token_ms / 1000);
        duration.observe({ model }, record.latency_ms / 1000);
        if (record.prompt_tokens > 0) tokens.inc({ model, type: 'prompt' }, record.prompt_tokens);
        if (record.completion_tokens > 0) tokens.inc({ model, type: 'completion' }, record.completion_tokens);
      };
    },
    observeJobs(counts) {
      new Gauge({
        name: 'mariner_jobs',
        help: 'Jobs by kind and status (every project)',
        labelNames: ['kind', 'status'] as const,
        registers: [registry],
        async collect() {
          this.reset();
          for (const { kind, status, count } of await counts()) this.set({ kind, status }, count);
        },
      });
    },
    observeRuntimes(read) {
      // One read per scrape, shared by the three gauges (a scrape collects every metric at once).
      let pending: Promise<readonly RuntimeSample[]> | undefined;
      const runtimes = () => {
        pending ??= read().finally(() => (pending = undefined));
        return pending;
      };
      new Gauge({
        name: 'mariner_runtime_replicas',
        help: 'Replicas of each inference runtime: desired (what its agent or autoscaler wants) and ready',
        labelNames: ['cluster', 'model', 'state'] as const,
        registers: [registry],
        async collect() {
          this.reset();
          for (const r of await runtimes()) {
            this.set({ cluster: r.cluster_id, model: r.model_id, state: 'desired' }, r.desired_replicas);
            this.set({ cluster: r.cluster_id, model: r.model_id, state: 'ready' }, r.ready_replicas);
          }
        },
      });
      new Gauge({
        name: 'mariner_runtime_requests_in_flight',
        help: 'Requests in flight on each inference runtime, as its agent last reported',
        labelNames: ['cluster', 'model'] as const,
        registers: [registry],
        async collect() {
          this.reset();
          for (const r of await runtimes()) this.set({ cluster: r.cluster_id, model: r.model_id }, r.in_flight_requests);
        },
      });
      new Gauge({
        name: 'mariner_runtime_average_in_flight',
        help: "Requests in flight averaged over the autoscaler's window (autoscaled runtimes only)",
        labelNames: ['cluster', 'model'] as const,
        registers: [registry],
        async collect() {
          this.reset();
          for (const r of await runtimes()) if (r.autoscaling) this.set({ cluster: r.cluster_id, model: r.model_id }, r.autoscaling.averageInFlight);
        },
      });
    },
    observeInFlight(count) {
      new Gauge({
        name: 'mariner_http_requests_in_flight',
        help: "HTTP requests being answered on this component's ports",
        registers: [registry],
        collect() {
          this.set(count());
        },
      });
    },
    observeSubscriptions(count) {
      new Gauge({
        name: 'mariner_gateway_upstream_subscriptions',
        help: 'Upstream subgraph subscriptions the gateway holds open (each shared by identical subscribers)',
        registers: [registry],
        collect() {
          this.set(count());
        },
      });
    },
  };
}
