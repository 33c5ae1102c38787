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
 * Both are read from the clusters' telemetry series (GraphQL `clusterTelemetry`, hourly steps; only the
 * clusters the caller may see: `api.clusters.read`, another organization's never show). GPU usage is a
 * node's DCGM_FI_DEV_GPU_UTIL summed over its GPUs (a percentage each, as LLMariner sums them), averaged
 * and maximised over the hour, per node, for a cluster that runs the DCGM exporter; for one that does not
 * (source ALLOCATION) an allocated GPU counts as 100, per cluster (`node_name` empty: a pod's node may
 * not be known) and GPU memory in use is 0. Memory is in GiB, as cluster-monitor divides MiB by 1024.
 */

const HOUR = 3600;
const DAY = 24 * HOUR;
const GIB = 2 ** 30;

interface TelemetryNode {
  name: string;
  gpuProduct: string | null;
  gpuCapacity: number;
  gpuMemoryCapacityBytes: number;
  gpuUtilization: number | null;
  gpuUtilizationMax: number | null;
  gpuMemoryUsedBytes: number | null;
  gpuMemoryUsedBytesMax: number | null;
}

interface TelemetryPoint {
  at: string;
  source: 'DCGM' | 'ALLOCATION' | null;
  gpuAllocated: number;
  gpuAllocatedMax: number;
  nodes: TelemetryNode[];
}

interface ClusterSeries {
  clusterId: string;
  clusterName: string;
  points: TelemetryPoint[];
}

/** The hourly series of every cluster the caller may see, over the buckets asked. */
async function clusterSeries(gql: RouteGraphQL, req: IncomingMessage, ctx: RouteContext, buckets: number[]): Promise<ClusterSeries[]> {
  const { clusterTelemetry }: { clusterTelemetry: ClusterSeries[] } = await gql(
    req,
    ctx,
    `query LlmarinerClusterTelemetry($from: DateTime!, $to: DateTime!) {
      clusterTelemetry(from: $from, to: $to, step: ${HOUR}) {
        clusterId clusterName
        points { at source gpuAllocated gpuAllocatedMax
          nodes { name gpuProduct gpuCapacity gpuMemoryCapacityBytes gpuUtilization gpuUtilizationMax gpuMemoryUsedBytes gpuMemoryUsedBytesMax } } } }`,
    { from: new Date(buckets[0]! * 1000).toISOString(), to: new Date((buckets.at(-1)! + HOUR) * 1000).toISOString() },
  );
  // Only clusters that reported in the range show, as LLMariner lists the clusters it has snapshots of.
  return clusterTelemetry.filter((c) => c.points.some((p) => p.source !== null)).sort((a, b) => a.clusterName.localeCompare(b.clusterName));
}

/** A cluster's point of a bucket (null: it did not report then). */
function pointAt(cluster: ClusterSeries, bucket: number): TelemetryPoint | null {
  const point = cluster.points.find((p) => Math.floor(Date.parse(p.at) / 1000) === bucket);
  return point && point.source !== null ? point : null;
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
function snapshotValues(reported: { cluster: ClusterSeries; point: TelemetryPoint }[], groupBy: GroupBy, allGroups: string[]): SnapshotValue[] {
  const stats = new Map<string, { grouping_value: string; node_count: number; gpu_capacity: number; memory_bytes: number }>();
  for (const { cluster, point } of reported) {
    for (const node of point.nodes) {
      // LLMariner groups by cluster id; the name is what a reader of a dashboard knows the cluster by.
      const key = groupBy === 'GROUP_BY_PRODUCT' ? (node.gpuProduct ?? '') : cluster.clusterName;
      const s = stats.get(key) ?? { grouping_value: key, node_count: 0, gpu_capacity: 0, memory_bytes: 0 };
      s.node_count += 1;
      s.gpu_capacity += node.gpuCapacity;
      s.memory_bytes += node.gpuMemoryCapacityBytes;
      stats.set(key, s);
    }
  }
  const value = (s: { grouping_value: string; node_count: number; gpu_capacity: number; memory_bytes: number } | undefined, group: string): SnapshotValue => ({
    grouping_value: group,
    node_count: s?.node_count ?? 0,
    gpu_capacity: s?.gpu_capacity ?? 0,
    memory_capacity_gb: Math.round((s?.memory_bytes ?? 0) / GIB),
  });
  if (groupBy === 'GROUP_BY_UNSPECIFIED') {
    const total = { grouping_value: '', node_count: 0, gpu_capacity: 0, memory_bytes: 0 };
    for (const s of stats.values()) {
      total.node_count += s.node_count;
      total.gpu_capacity += s.gpu_capacity;
      total.memory_bytes += s.memory_bytes;
    }
    return [value(total, '')];
  }
  return allGroups.map((g) => value(stats.get(g), g));
}

interface GpuUsageValue {
  cluster_name: string;
  node_name: string;
  max_gpu_used: number;
  avg_gpu_used: number;
  max_gpu_memory_used_gb: number;
  avg_gpu_memory_used_gb: number;
}

/** A cluster's GPU usage in one bucket: per node with DCGM in the range, else per cluster from allocations. */
function gpuUsageValues(cluster: ClusterSeries, bucket: number, nodeNames: string[] | null): GpuUsageValue[] {
  const point = pointAt(cluster, bucket);
  const zero = (node_name: string): GpuUsageValue => ({
    cluster_name: cluster.clusterName,
    node_name,
    max_gpu_used: 0,
    avg_gpu_used: 0,
    max_gpu_memory_used_gb: 0,
    avg_gpu_memory_used_gb: 0,
  });
  if (nodeNames === null) {
    if (!point) return [zero('')];
    return [{ ...zero(''), max_gpu_used: point.gpuAllocatedMax * 100, avg_gpu_used: point.gpuAllocated * 100 }];
  }
  return nodeNames.map((name) => {
    const node = point?.nodes.find((n) => n.name === name);
    if (!node) return zero(name);
    return {
      ...zero(name),
      max_gpu_used: (node.gpuUtilizationMax ?? 0) * node.gpuCapacity,
      avg_gpu_used: (node.gpuUtilization ?? 0) * node.gpuCapacity,
      max_gpu_memory_used_gb: (node.gpuMemoryUsedBytesMax ?? 0) / GIB,
      avg_gpu_memory_used_gb: (node.gpuMemoryUsedBytes ?? 0) / GIB,
    };
  });
}

/** The GPU nodes of a cluster that ran the DCGM exporter in the range; null when it ran none (allocation only). */
function dcgmNodes(cluster: ClusterSeries): string[] | null {
  const measured = cluster.points.filter((p) => p.source === 'DCGM');
  if (measured.length === 0) return null;
  return [...new Set(measured.flatMap((p) => p.nodes.filter((n) => n.gpuCapacity > 0).map((n) => n.name)))].sort();
}

export function llmarinerTelemetryRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  const clusterSnapshots: Handler = async (req, res, ctx) => {
    const groupBy = groupByParam(ctx.url);
    const buckets = hourlyBuckets(ctx.url);
    const clusters = await clusterSeries(gql, req, ctx, buckets);
    const allGroups = [
      ...new Set(
        clusters.flatMap((c) =>
          c.points.filter((p) => p.source !== null).flatMap((p) => p.nodes.map((n) => (groupBy === 'GROUP_BY_PRODUCT' ? (n.gpuProduct ?? '') : c.clusterName))),
        ),
      ),
    ].sort();
    sendJson(
      res,
      200,
      {
        datapoints: buckets.map((timestamp) => ({
          timestamp: int64(timestamp),
          values: snapshotValues(
            clusters.flatMap((cluster) => {
              const point = pointAt(cluster, timestamp);
              return point ? [{ cluster, point }] : [];
            }),
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
    const clusters = (await clusterSeries(gql, req, ctx, buckets)).map((cluster) => ({ cluster, nodes: dcgmNodes(cluster) }));
    sendJson(
      res,
      200,
      {
        // Every cluster (or node) seen in the range has a value in every bucket (zero where it did not report), as LLMariner fills them.
        datapoints: buckets.map((timestamp) => ({
          timestamp: int64(timestamp),
          values: clusters.flatMap(({ cluster, nodes }) => gpuUsageValues(cluster, timestamp, nodes)),
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
