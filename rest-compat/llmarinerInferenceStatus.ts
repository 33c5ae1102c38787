import type { IncomingMessage } from 'node:http';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import type { RouteContext } from './router.js';

/**
 * LLMariner `GET /v1/inference/status` (inference-manager api/v1 inference_server_management.proto,
 * `InferenceStatus`): per cluster (its id and name), its engines and the models they serve, with
 * in-flight counts, the GPUs the model's runtime asks for, and the active LoRA adapters loaded onto
 * each base model's runtime; and the in-flight count per model.
 *
 * An engine here is a cluster's agent: its instance id (`agentId`) when its tunnel is on this replica
 * and the caller may see clusters (`api.clusters.read`), else `agent@<cluster name>`.
 */

const INFERENCE_STATUS = `query InferenceStatus { inferenceStatus { runtimes { clusterId modelId desiredReplicas readyReplicas inFlightRequests statusMessage } } }`;

interface RuntimeStatus {
  clusterId: string;
  modelId: string;
  desiredReplicas: number;
  readyReplicas: number;
  inFlightRequests: number;
  statusMessage: string;
}

interface ModelRuntimeConfig {
  id: string;
  activationStatus: string;
  adapter: { kind: string; baseModelId: string } | null;
  config: { runtime: { gpu: number } };
}

interface ClusterNames {
  name: string;
  agentIds: string[];
}

/** The runtime settings of the models the project sees (every page: a project has few models). */
async function modelConfigs(gateway: GatewayClient, req: IncomingMessage, ctx: RouteContext): Promise<Map<string, ModelRuntimeConfig>> {
  const byId = new Map<string, ModelRuntimeConfig>();
  let after: string | null = null;
  for (;;) {
    const { models }: { models: { items: ModelRuntimeConfig[]; hasMore: boolean } } = await gateway.request(
      req,
      ctx.requestId,
      `query InferenceStatusModels($after: String) { models(includeLoading: true, after: $after, limit: 100) { items { id activationStatus adapter { kind baseModelId } config { runtime { gpu } } } hasMore } }`,
      { after },
    );
    for (const model of models.items) byId.set(model.id, model);
    if (!models.hasMore || models.items.length === 0) return byId;
    after = models.items.at(-1)!.id;
  }
}

/**
 * Cluster names and connected agents: from `clusters` for callers with `api.clusters.read`, else the
 * names of the clusters the project's jobs may use (`jobClusters`); a cluster in neither keeps its id.
 */
async function clusterNames(gateway: GatewayClient, req: IncomingMessage, ctx: RouteContext): Promise<Map<string, ClusterNames>> {
  const byId = new Map<string, ClusterNames>();
  try {
    let after: string | null = null;
    for (;;) {
      const { clusters }: { clusters: { items: { id: string; name: string; tunnels: { agentId: string }[] }[]; hasMore: boolean } } = await gateway.request(
        req,
        ctx.requestId,
        `query InferenceStatusClusters($after: String) { clusters(after: $after, limit: 100) { items { id name tunnels { agentId } } hasMore } }`,
        { after },
      );
      for (const c of clusters.items) byId.set(c.id, { name: c.name, agentIds: c.tunnels.map((t) => t.agentId) });
      if (!clusters.hasMore || clusters.items.length === 0) return byId;
      after = clusters.items.at(-1)!.id;
    }
  } catch (error) {
    if (!(error instanceof RestError) || error.status !== 403) throw error;
  }
  try {
    const { jobClusters } = await gateway.request<{ jobClusters: { id: string; name: string }[] }>(
      req,
      ctx.requestId,
      `query InferenceStatusJobClusters { jobClusters { id name } }`,
    );
    for (const c of jobClusters) byId.set(c.id, { name: c.name, agentIds: [] });
  } catch (error) {
    if (!(error instanceof RestError) || error.status !== 403) throw error;
  }
  return byId;
}

export async function inferenceStatus(gateway: GatewayClient, req: IncomingMessage, ctx: RouteContext) {
  const { inferenceStatus: status } = await gateway.request<{ inferenceStatus: { runtimes: RuntimeStatus[] } }>(req, ctx.requestId, INFERENCE_STATUS);
  const [models, clusters] = await Promise.all([modelConfigs(gateway, req, ctx), clusterNames(gateway, req, ctx)]);
  const byCluster = new Map<string, RuntimeStatus[]>();
  for (const runtime of status.runtimes) byCluster.set(runtime.clusterId, [...(byCluster.get(runtime.clusterId) ?? []), runtime]);
  const inProgress: Record<string, number> = {};
  for (const runtime of status.runtimes) inProgress[runtime.modelId] = (inProgress[runtime.modelId] ?? 0) + runtime.inFlightRequests;

  // Active LoRA adapters by base model: they get no runtime of their own but are loaded onto their
  // base model's replicas as requests come (LLMariner's dynamically loaded LoRA).
  const adaptersOf = new Map<string, string[]>();
  for (const model of models.values()) {
    if (!model.adapter || model.activationStatus !== 'ACTIVE') continue;
    adaptersOf.set(model.adapter.baseModelId, [...(adaptersOf.get(model.adapter.baseModelId) ?? []), model.id]);
  }

  const modelStatuses = (m: RuntimeStatus) => {
    const statusDetails = { num_ready_pods: m.readyReplicas, num_total_pods: m.desiredReplicas, status_message: m.statusMessage };
    return [
      {
        id: m.modelId,
        is_ready: m.readyReplicas > 0,
        in_progress_task_count: m.inFlightRequests,
        // The runtime's GPU request: the model's runtime config, per replica it asks for.
        gpu_allocated: (models.get(m.modelId)?.config.runtime.gpu ?? 0) * m.desiredReplicas,
        is_dynamically_loaded_lora: false,
        status_details: statusDetails,
      },
      // An adapter holds no GPU of its own; its requests are counted on its base model's runtime.
      ...(adaptersOf.get(m.modelId) ?? []).sort().map((id) => ({
        id,
        is_ready: m.readyReplicas > 0,
        in_progress_task_count: 0,
        gpu_allocated: 0,
        is_dynamically_loaded_lora: true,
        status_details: statusDetails,
      })),
    ];
  };

  return {
    cluster_statuses: [...byCluster].map(([clusterId, runtimes]) => {
      const cluster = clusters.get(clusterId);
      const name = cluster?.name ?? clusterId;
      const engineIds = cluster?.agentIds.length ? cluster.agentIds : [`agent@${name}`];
      const served = runtimes.flatMap(modelStatuses);
      return {
        id: clusterId,
        name,
        // Each agent of a cluster serves the same runtimes (LLMariner: "each engine in the same cluster reports the same information").
        engine_statuses: engineIds.map((engineId) => ({
          engine_id: engineId,
          ready: runtimes.some((m) => m.readyReplicas > 0),
          models: served,
          cluster_id: clusterId,
        })),
        model_count: served.length,
        in_progress_task_count: runtimes.reduce((n, m) => n + m.inFlightRequests, 0),
        gpu_allocated: served.reduce((n, m) => n + m.gpu_allocated, 0),
      };
    }),
    task_status: { in_progress_task_counts: inProgress },
  };
}
