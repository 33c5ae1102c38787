import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { int64, jobTypeName } from './llmarinerJson.js';
import type { RouteContext } from './router.js';

/** A query parameter by its LLMariner name (`filter.start_timestamp`) or its short one (`start_timestamp`). */
function filterParam(url: URL, name: string): string | null {
  return url.searchParams.get(`filter.${name}`) ?? url.searchParams.get(name);
}

/** Unix seconds → ISO; undefined when absent. */
function timestamp(url: URL, name: string): string | undefined {
  const raw = filterParam(url, name);
  if (raw === null || raw === '') return undefined;
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 0) throw RestError.badRequest(`filter.${name} must be a Unix time in seconds`, `filter.${name}`);
  return new Date(seconds * 1000).toISOString();
}

/** A protobuf Duration as JSON (`"3600s"`) or a number of seconds. */
function duration(url: URL): number | undefined {
  const raw = filterParam(url, 'duration');
  if (raw === null || raw === '') return undefined;
  const match = /^(\d+)s?$/.exec(raw.trim());
  if (!match || Number(match[1]) < 60) throw RestError.badRequest('filter.duration must be at least 60 seconds, e.g. "3600s"', 'filter.duration');
  return Number(match[1]);
}

/** LLMariner's job-manager views (reference §4d): clusters with their GPUs, and job counts over time. */
export function jobRoutes({ gateway }: { gateway: GatewayClient }) {
  async function clusters(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { jobClusters } = await gateway.request<{
      jobClusters: {
        id: string;
        name: string;
        gpuCapacity: number;
        gpuAllocated: number;
        gpuPodCount: number;
        stale: boolean;
        lastUpdatedAt: string | null;
        namespaces: string[];
      }[];
    }>(req, ctx.requestId, `query JobClusters { jobClusters { id name gpuCapacity gpuAllocated gpuPodCount stale lastUpdatedAt namespaces } }`);
    sendJson(
      res,
      200,
      {
        clusters: jobClusters.map((c) => ({
          id: c.id,
          name: c.name,
          summary: { gpu_capacity: c.gpuCapacity, gpu_allocated: c.gpuAllocated, gpu_pod_count: c.gpuPodCount },
          last_updated_at: unixSeconds(c.lastUpdatedAt, 0),
          stale: c.stale,
          namespaces: c.namespaces,
        })),
      },
      ctx.headers,
    );
  }

  async function summaries(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { jobSummaries } = await gateway.request<{
      jobSummaries: {
        timestamp: string;
        values: {
          jobType: string;
          totalCreated: number;
          completed: number;
          failed: number;
          cancelled: number;
          running: number;
          queued: number;
          stopped: number;
          unfinished: number;
        }[];
      }[];
    }>(
      req,
      ctx.requestId,
      `query JobSummaries($start: DateTime, $end: DateTime, $interval: Int) {
        jobSummaries(start: $start, end: $end, intervalSeconds: $interval) {
          timestamp values { jobType totalCreated completed failed cancelled running queued stopped unfinished }
        }
      }`,
      { start: timestamp(ctx.url, 'start_timestamp') ?? null, end: timestamp(ctx.url, 'end_timestamp') ?? null, interval: duration(ctx.url) ?? null },
    );
    sendJson(
      res,
      200,
      {
        // job-manager api/v1 ListJobSummariesResponse, in LLMariner's JSON (int64 counts as strings).
        // Jobs are deleted for good here, so none is counted as deleted: total_deleted is "0".
        datapoints: jobSummaries.map((point) => ({
          timestamp: int64(unixSeconds(point.timestamp, 0)),
          values: point.values.map((v) => ({
            job_type: jobTypeName(v.jobType),
            total_created: int64(v.totalCreated),
            total_completed: int64(v.completed),
            total_cancelled: int64(v.cancelled),
            total_failed: int64(v.failed),
            total_deleted: int64(0),
            total_running: int64(v.running),
            total_queued: int64(v.queued),
            total_stopped: int64(v.stopped),
            total_unfinished: int64(v.unfinished),
          })),
        })),
      },
      ctx.headers,
    );
  }

  return [
    { method: 'GET', path: '/v1/jobs/clusters', handler: clusters },
    { method: 'GET', path: '/v1/jobs/summaries', handler: summaries },
  ];
}
