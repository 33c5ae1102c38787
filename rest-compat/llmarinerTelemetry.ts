import type { IncomingMessage } from 'node:http';
import { sendJson } from '../lib/http.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient, type RouteGraphQL } from './gatewayClient.js';
import { bucketStart, int64 } from './llmarinerJson.js';
import { integerParam, protoQueryParam } from './llmarinerUsage.js';
import type { Handler, Route, RouteContext } from './router.js';

/**
 * LLMariner cluster-monitor's `GET /v1/clustertelemetry/clustersnapshots` and `/v1/clustertelemetry/gpu-usages`,
 * which its CLI calls (`llma hidden clustertelemetry`). No swagger describes them; the shapes follow
 * cluster-monitor api/v1/monitor_server.proto and server/internal/server/{cluster_snapshot,gpu_usages}.go:
 * https://github.com/llmariner/cluster-monitor/tree/main/api/v1
 *
 *   ListClusterSnapshotsResponse { datapoints: [{ timestamp: int64, values: [{ grouping_value, node_count,
 *     gpu_capacity, memory_capacity_gb }] }] }                                  (values: int32)
 *   ListGpuUsagesResponse { datapoints: [{ timestamp: int64, values: [{ cluster_name, node_name,
 *     max_gpu_used, avg_gpu_used, max_gpu_memory_used_gb, avg_gpu_memory_used_gb }] }] }  (values: float)
 *
 * What Mariner has to answer with: the clusters the caller may see (`clusters`, `api.clusters.read`:
 * another organization's clusters never show) and the status each one's agent last reported. No
 * history is kept, so each cluster's latest report fills the hourly bucket it was made in and the
 * other buckets are empty; GPU memory is not reported (memory_capacity_gb and the memory usages are 0);
 * and there is no DCGM exporter scrape, so GPU usage is allocation only: an allocated GPU counts as
 * 100 (DCGM_FI_DEV_GPU_UTIL is a percentage per GPU and LLMariner sums it over a node's GPUs), per
 * cluster (a GPU pod's node is not reported: `node_name` is empty).
 */

const HOUR = 3600;
const DAY = 24 * HOUR;

interface ReportedCluster {
  id: string;
  name: string;
  status: {
    nodes: { name: string; ready: boolean; gpuCapacity: number; gpuProduct: string | null }[];
    gpuAllocated: number;
    updatedAt: string;
  } | null;
}

/** Every cluster the caller may see, with its last status report. */
async function reportedClusters(gql: RouteGraphQL, req: IncomingMessage, ctx: RouteContext): Promise<ReportedCluster[]> {
  const all: ReportedCluster[] = [];
  let after: string | null = null;
  for (;;) {
    const { clusters }: { clusters: { items: ReportedCluster[]; hasMore: boolean } } = await gql(
      req,
      ctx,
      `query ClusterTelemetry($after: String) { clusters(after: $after, limit: 100) {
        items { id name status { nodes { name ready gpuCapacity gpuProduct } gpuAllocated updatedAt } } hasMore } }`,
      { after },
    );
    all.push(...clusters.items);
    if (!clusters.hasMore || clusters.items.length === 0) return all;
    after = clusters.items.at(-1)!.id;
  }
}

/**
 * The hourly buckets of `filter.start_timestamp`..`filter.end_timestamp` (default: the 24 hours up to
 * the end of the current hour, so the latest reports show), as unix seconds.
 */
function hourlyBuckets(url: URL, now = Date.now()): number[] {
  const endParam = integerParam(url, 'filter.end_timestamp', 'a Unix time in seconds');
  const end = endParam === null ? bucketStart(Math.floor(now / 1000), HOUR) + HOUR : bucketStart(endParam, HOUR);
  const startParam = integerParam(url, 'filter.start_timestamp', 'a Unix time in seconds');
  const start = startParam === null ? end - DAY : bucketStart(startParam, HOUR);
  if (start >= end) throw RestError.badRequest('filter.start_timestamp must be before filter.end_timestamp', 'filter.start_timestamp');
  if ((end - start) / HOUR > 1000)
    throw RestError.badRequest('at most 1000 hours between filter.start_timestamp and filter.end_timestamp', 'filter.start_timestamp');
  return Array.from({ length: (end - start) / HOUR }, (_, i) => start + i * HOUR);
}

/** The bucket a cluster's last report falls in (null: never reported). */
function reportBucket(cluster: ReportedCluster): number | null {
  return cluster.status ? bucketStart(Math.floor(Date.parse(cluster.status.updatedAt) / 1000), HOUR) : null;
}

type GroupBy = 'GROUP_BY_UNSPECIFIED' | 'GROUP_BY_CLUSTER' | 'GROUP_BY_PRODUCT';
const GROUP_BY: GroupBy[] = ['GROUP_BY_UNSPECIFIED', 'GROUP_BY_CLUSTER', 'GROUP_BY_PRODUCT'];

/** `group_by` as grpc-gateway reads an enum in a query: its name or its number. */
function groupByParam(url: URL): GroupBy {
  const raw = protoQueryParam(url, 'group_by');
  if (raw === null) return 'GROUP_BY_UNSPECIFIED';
  const value = /^\d+$/.test(raw) ? GROUP_BY[Number(raw)] : GROUP_BY.find((g) => g === raw);
  if (!value) throw RestError.badRequest(`group_by must be one of ${GROUP_BY.join(', ')}`, 'group_by');
  return value;
}

interface SnapshotValue {
  grouping_value: string;
  node_count: number;
  gpu_capacity: number;
  memory_capacity_gb: number;
}

/** The nodes of the clusters reported in one bucket, grouped as asked (cluster-monitor calculateSnapshotValues). */
function snapshotValues(clusters: ReportedCluster[], groupBy: GroupBy, allGroups: string[]): SnapshotValue[] {
  const stats = new Map<string, SnapshotValue>();
  for (const cluster of clusters) {
    for (const node of cluster.status!.nodes) {
      // LLMariner groups by cluster id; the name is what a reader of a dashboard knows the cluster by.
      const key = groupBy === 'GROUP_BY_PRODUCT' ? (node.gpuProduct ?? '') : cluster.name;
      const s = stats.get(key) ?? { grouping_value: key, node_count: 0, gpu_capacity: 0, memory_capacity_gb: 0 };
      s.node_count += 1;
      s.gpu_capacity += node.gpuCapacity;
      stats.set(key, s);
    }
  }
  if (groupBy === 'GROUP_BY_UNSPECIFIED') {
    const total: SnapshotValue = { grouping_value: '', node_count: 0, gpu_capacity: 0, memory_capacity_gb: 0 };
    for (const s of stats.values()) {
      total.node_count += s.node_count;
      total.gpu_capacity += s.gpu_capacity;
    }
    return [total];
  }
  return allGroups.map((g) => stats.get(g) ?? { grouping_value: g, node_count: 0, gpu_capacity: 0, memory_capacity_gb: 0 });
}

export function llmarinerTelemetryRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  const clusterSnapshots: Handler = async (req, res, ctx) => {
    const groupBy = groupByParam(ctx.url);
    const buckets = hourlyBuckets(ctx.url);
    const clusters = (await reportedClusters(gql, req, ctx)).filter((c) => c.status && buckets.includes(reportBucket(c)!));
    const allGroups = [
      ...new Set(clusters.flatMap((c) => c.status!.nodes.map((n) => (groupBy === 'GROUP_BY_PRODUCT' ? (n.gpuProduct ?? '') : c.name)))),
    ].sort();
    sendJson(
      res,
      200,
      {
        datapoints: buckets.map((timestamp) => ({
          timestamp: int64(timestamp),
          values: snapshotValues(
            clusters.filter((c) => reportBucket(c) === timestamp),
            groupBy,
            allGroups,
          ),
        })),
      },
      ctx.headers,
    );
  };

  const gpuUsages: Handler = async (req, res, ctx) => {
    const buckets = hourlyBuckets(ctx.url);
    const clusters = (await reportedClusters(gql, req, ctx))
      .filter((c) => c.status && buckets.includes(reportBucket(c)!))
      .sort((a, b) => a.name.localeCompare(b.name));
    sendJson(
      res,
      200,
      {
        datapoints: buckets.map((timestamp) => ({
          timestamp: int64(timestamp),
          // Every cluster seen in the range has a value in every bucket (zero where it did not report), as LLMariner fills them.
          values: clusters.map((c) => {
            const used = reportBucket(c) === timestamp ? c.status!.gpuAllocated * 100 : 0;
            return { cluster_name: c.name, node_name: '', max_gpu_used: used, avg_gpu_used: used, max_gpu_memory_used_gb: 0, avg_gpu_memory_used_gb: 0 };
          }),
        })),
      },
      ctx.headers,
    );
  };

  return [
    { method: 'GET', path: '/v1/clustertelemetry/clustersnapshots', handler: clusterSnapshots },
    { method: 'GET', path: '/v1/clustertelemetry/gpu-usages', handler: gpuUsages },
  ];
}
