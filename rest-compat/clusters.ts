import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { isJsonObject, readJsonBody } from './json.js';
import { strictBody, type BodyShape } from './strictBody.js';
import { listParams, toList } from './lists.js';
import type { Handler, Route } from './router.js';

/**
 * LLMariner's cluster-manager REST API (reference/llmariner.md §7; cluster-manager
 * api/v1/cluster_manager_server.proto): worker clusters, their registration keys and health, and the
 * GPU device-plugin configuration, as grpc-gateway JSON (snake_case proto names). Mariner's extras
 * (`is_default`, `created_at`, `connected`, `status`) sit beside LLMariner's fields. Every route needs
 * `api.clusters.read` or `api.clusters.write` (organization owners); the gateway checks it.
 */

// --- GraphQL ----------------------------------------------------------------------------------

const CLUSTER_FIELDS = `id name isDefault createdAt connected
  componentStatuses { name isHealthy message }
  status { gpuCapacity gpuAllocated stale updatedAt nodes { name ready gpuCapacity gpuAllocatable gpuProduct } }`;
const CONFIG_FIELDS = 'timeSlicingGpus updatedAt';

interface GraphQLCluster {
  id: string;
  name: string;
  isDefault: boolean;
  createdAt: string;
  connected: boolean;
  componentStatuses: { name: string; isHealthy: boolean; message: string }[];
  status: {
    gpuCapacity: number;
    gpuAllocated: number;
    stale: boolean;
    updatedAt: string;
    nodes: { name: string; ready: boolean; gpuCapacity: number; gpuAllocatable: number; gpuProduct: string | null }[];
  } | null;
}

interface GraphQLClusterConfig {
  timeSlicingGpus: number | null;
  updatedAt: string;
}

// --- Response objects -------------------------------------------------------------------------

/**
 * LLMariner Cluster (`object: "cluster"`, `component_statuses` keyed by component name); the
 * registration key only in the register answer, as LLMariner populates it only there.
 */
function toCluster(c: GraphQLCluster, registrationKey?: string) {
  return {
    id: c.id,
    object: 'cluster' as const,
    name: c.name,
    ...(registrationKey ? { registration_key: registrationKey } : {}),
    component_statuses: Object.fromEntries(c.componentStatuses.map((s) => [s.name, { is_healthy: s.isHealthy, message: s.message }])),
    is_default: c.isDefault,
    created_at: unixSeconds(c.createdAt),
    connected: c.connected,
    status: c.status && {
      gpu_capacity: c.status.gpuCapacity,
      gpu_allocated: c.status.gpuAllocated,
      stale: c.status.stale,
      updated_at: unixSeconds(c.status.updatedAt),
      nodes: c.status.nodes.map((n) => ({
        name: n.name,
        ready: n.ready,
        gpu_capacity: n.gpuCapacity,
        gpu_allocatable: n.gpuAllocatable,
        gpu_product: n.gpuProduct,
      })),
    },
  };
}

/** LLMariner ClusterConfig: `device_plugin_config.time_slicing.gpus`; no `time_slicing` when GPUs are not shared. */
function toClusterConfig(clusterId: string, c: GraphQLClusterConfig) {
  return {
    cluster_id: clusterId,
    device_plugin_config: { time_slicing: c.timeSlicingGpus === null ? null : { gpus: c.timeSlicingGpus } },
    updated_at: unixSeconds(c.updatedAt),
  };
}

// --- Request fields ---------------------------------------------------------------------------

const GPUS_PARAM = 'device_plugin_config.time_slicing.gpus';
/** LLMariner CreateClusterRequest. */
const REGISTER_BODY: BodyShape = { name: null };
/** LLMariner Create/UpdateClusterConfigRequest (the cluster id is the path's). */
const CONFIG_BODY: BodyShape = { device_plugin_config: { time_slicing: { gpus: null } } };
const INT32_MAX = 2 ** 31 - 1;

/**
 * `{device_plugin_config: {time_slicing: {gpus}}}` as the GraphQL ClusterConfigInput. An absent or null
 * `time_slicing` (or `gpus`) is no time-slicing; the range (1-64) is the subgraph's rule.
 */
function clusterConfigInput(raw: unknown): { timeSlicingGpus: number | null } {
  if (!isJsonObject(raw)) throw RestError.badRequest('device_plugin_config must be an object', 'device_plugin_config');
  const timeSlicing = raw['time_slicing'];
  if (timeSlicing === undefined || timeSlicing === null) return { timeSlicingGpus: null };
  if (!isJsonObject(timeSlicing)) throw RestError.badRequest('device_plugin_config.time_slicing must be an object', 'device_plugin_config.time_slicing');
  const gpus = timeSlicing['gpus'];
  if (gpus === undefined || gpus === null) return { timeSlicingGpus: null };
  // Checked here, not by GraphQL's Int coercion, so that the error names the REST field.
  if (typeof gpus !== 'number' || !Number.isInteger(gpus) || Math.abs(gpus) > INT32_MAX) {
    throw RestError.badRequest(`${GPUS_PARAM} must be an integer`, GPUS_PARAM);
  }
  return { timeSlicingGpus: gpus };
}

// --- Errors -----------------------------------------------------------------------------------

/**
 * Runs a gateway call for the cluster of the path. A path id that is not a cluster id names no
 * cluster: 404 rather than the subgraph's 400. Other GraphQL argument names become the REST fields.
 */
async function forClusterPath<T>(run: Promise<T>, clusterId: string): Promise<T> {
  try {
    return await run;
  } catch (error) {
    if (!(error instanceof RestError) || !error.param) throw error;
    if (error.param === 'id' || error.param === 'cluster_id') throw noSuchCluster(clusterId);
    if (error.param === 'time_slicing_gpus')
      throw new RestError(error.status, error.message.replace('input.timeSlicingGpus', GPUS_PARAM), error.type, GPUS_PARAM, error.code);
    throw error;
  }
}

const noSuchCluster = (id: string) => RestError.notFound(`No such cluster: ${id}`);

// --- Routes -----------------------------------------------------------------------------------

export interface ClusterRoutesOptions {
  gateway: GatewayClient;
}

/** The cluster-manager routes (LLMariner §7). */
export function clusterRoutes({ gateway }: ClusterRoutesOptions): Route[] {
  const gql = routeGraphQL(gateway);

  /** POST /v1/clusters: the answer is the only one that carries the registration key. */
  const register: Handler = async (req, res, ctx) => {
    const body = strictBody(await readJsonBody(req), REGISTER_BODY);
    const name = body['name'];
    if (name === undefined || name === null || name === '') throw RestError.badRequest('name is required', 'name');
    if (typeof name !== 'string') throw RestError.badRequest('name must be a string', 'name');
    const { registerCluster } = await gql<{ registerCluster: { registrationKey: string; cluster: GraphQLCluster } }>(
      req,
      ctx,
      `mutation RegisterCluster($input: RegisterClusterInput!) { registerCluster(input: $input) { registrationKey cluster { ${CLUSTER_FIELDS} } } }`,
      { input: { name } },
    );
    sendJson(res, 200, toCluster(registerCluster.cluster, registerCluster.registrationKey), ctx.headers);
  };

  /** GET /v1/clusters: oldest first, paged with `after` / `limit`. */
  const list: Handler = async (req, res, ctx) => {
    const { after, limit, order } = listParams(ctx.url, 'asc');
    if (order !== 'ASC') throw RestError.badRequest('This list is ordered oldest first only (order=asc)', 'order');
    const { clusters } = await gql<{ clusters: { items: GraphQLCluster[]; hasMore: boolean } }>(
      req,
      ctx,
      `query ListClusters($after: String, $limit: Int) { clusters(after: $after, limit: $limit) { items { ${CLUSTER_FIELDS} } hasMore } }`,
      { after, limit },
    );
    sendJson(
      res,
      200,
      toList(
        clusters.items.map((c) => toCluster(c)),
        clusters.hasMore,
      ),
      ctx.headers,
    );
  };

  /** GET /v1/clusters/{id}. */
  const retrieve: Handler = async (req, res, ctx) => {
    const id = ctx.params['id']!;
    const { cluster } = await forClusterPath(
      gql<{ cluster: GraphQLCluster | null }>(req, ctx, `query Cluster($id: ID!) { cluster(id: $id) { ${CLUSTER_FIELDS} } }`, { id }),
      id,
    );
    if (!cluster) throw noSuchCluster(id);
    sendJson(res, 200, toCluster(cluster), ctx.headers);
  };

  /** DELETE /v1/clusters/{id}: the registration key stops working at once; the default cluster stays. */
  const unregister: Handler = async (req, res, ctx) => {
    const id = ctx.params['id']!;
    await forClusterPath(gql(req, ctx, `mutation UnregisterCluster($id: ID!) { unregisterCluster(id: $id) { deleted } }`, { id }), id);
    sendJson(res, 200, { id, object: 'cluster', deleted: true }, ctx.headers);
  };

  /** POST /v1/clusters/{cluster_id}/config: 409 when the cluster has one already. */
  const createConfig: Handler = async (req, res, ctx) => {
    const clusterId = ctx.params['cluster_id']!;
    const body = strictBody(await readJsonBody(req), CONFIG_BODY);
    const input = clusterConfigInput(body['device_plugin_config'] ?? {});
    const { createClusterConfig } = await forClusterPath(
      gql<{ createClusterConfig: GraphQLClusterConfig }>(
        req,
        ctx,
        `mutation CreateClusterConfig($clusterId: ID!, $input: ClusterConfigInput!) { createClusterConfig(clusterId: $clusterId, input: $input) { ${CONFIG_FIELDS} } }`,
        { clusterId, input },
      ),
      clusterId,
    );
    sendJson(res, 200, toClusterConfig(clusterId, createClusterConfig), ctx.headers);
  };

  /** GET /v1/clusters/{cluster_id}/config: 404 when none is set. */
  const retrieveConfig: Handler = async (req, res, ctx) => {
    const clusterId = ctx.params['cluster_id']!;
    const { cluster } = await forClusterPath(
      gql<{ cluster: { config: GraphQLClusterConfig | null } | null }>(
        req,
        ctx,
        `query ClusterConfig($id: ID!) { cluster(id: $id) { config { ${CONFIG_FIELDS} } } }`,
        { id: clusterId },
      ),
      clusterId,
    );
    if (!cluster) throw noSuchCluster(clusterId);
    if (!cluster.config) throw RestError.notFound(`Cluster ${clusterId} has no configuration`);
    sendJson(res, 200, toClusterConfig(clusterId, cluster.config), ctx.headers);
  };

  /**
   * PATCH /v1/clusters/{cluster_id}/config: replaces the configuration (LLMariner's request has no
   * field mask); 404 when none is set.
   */
  const updateConfig: Handler = async (req, res, ctx) => {
    const clusterId = ctx.params['cluster_id']!;
    const body = strictBody(await readJsonBody(req), CONFIG_BODY);
    if (body['device_plugin_config'] === undefined) throw RestError.badRequest('Nothing to update: give device_plugin_config', 'device_plugin_config');
    const input = clusterConfigInput(body['device_plugin_config']);
    const { updateClusterConfig } = await forClusterPath(
      gql<{ updateClusterConfig: GraphQLClusterConfig }>(
        req,
        ctx,
        `mutation UpdateClusterConfig($clusterId: ID!, $input: ClusterConfigInput!) { updateClusterConfig(clusterId: $clusterId, input: $input) { ${CONFIG_FIELDS} } }`,
        { clusterId, input },
      ),
      clusterId,
    );
    sendJson(res, 200, toClusterConfig(clusterId, updateClusterConfig), ctx.headers);
  };

  /** DELETE /v1/clusters/{cluster_id}/config: answers `{}` (google.protobuf.Empty), as LLMariner does. */
  const deleteConfig: Handler = async (req, res, ctx) => {
    const clusterId = ctx.params['cluster_id']!;
    await forClusterPath(
      gql(req, ctx, `mutation DeleteClusterConfig($clusterId: ID!) { deleteClusterConfig(clusterId: $clusterId) { deleted } }`, { clusterId }),
      clusterId,
    );
    sendJson(res, 200, {}, ctx.headers);
  };

  return [
    { method: 'POST', path: '/v1/clusters', handler: register },
    { method: 'GET', path: '/v1/clusters', handler: list },
    { method: 'GET', path: '/v1/clusters/:id', handler: retrieve },
    { method: 'DELETE', path: '/v1/clusters/:id', handler: unregister },
    { method: 'POST', path: '/v1/clusters/:cluster_id/config', handler: createConfig },
    { method: 'GET', path: '/v1/clusters/:cluster_id/config', handler: retrieveConfig },
    { method: 'PATCH', path: '/v1/clusters/:cluster_id/config', handler: updateConfig },
    { method: 'DELETE', path: '/v1/clusters/:cluster_id/config', handler: deleteConfig },
  ];
}
