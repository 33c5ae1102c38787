import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { K8S_PREFIX, WORKER_PREFIX } from './tunnel.js';

/**
 * The agent contract (DESIGN §3 "Agent tunnel"): every route the agent serves over its tunnel, built by
 * the control plane and parsed by the agent with the same code, so the two ends cannot drift. A route
 * is a path; `agentRoutes` builds it, `parseAgentRoute` reads it back (null for anything it does not
 * build: the agent answers 404). The Kubernetes API passes through under K8S_PREFIX; the agent's own
 * API is under WORKER_PREFIX. `AgentTunnels` is how the control plane reaches an agent, and `callAgent`
 * the one JSON call over it.
 */

/** What the control plane asks of a job on the agent (`POST /mariner/v1/jobs/<id>/<action>`). */
export type AgentJobAction = 'cancel' | 'stop' | 'start' | 'delete';
const JOB_ACTIONS: ReadonlySet<string> = new Set<AgentJobAction>(['cancel', 'stop', 'start', 'delete']);

/** A route the agent serves, as `parseAgentRoute` reads it. */
export type AgentRoute =
  /** The cluster's Kubernetes API: `path` is the API server's path and query (`/api/v1/...`). */
  | { kind: 'kubernetes'; path: string }
  /** The agent's health: its id, cluster and executor. */
  | { kind: 'healthz' }
  /** Reconcile the runtimes now; `wake`: a model to scale from zero. */
  | { kind: 'reconcile'; wake: string | null }
  /** Start a job (the body is a lib/jobSpec.ts DispatchedJob). */
  | { kind: 'startJob' }
  /** An action on a job the agent has. */
  | { kind: 'jobAction'; jobId: string; action: AgentJobAction }
  /** An OpenAI request to a model's runtime: `path` is the runtime's own (`/v1/chat/completions`). */
  | { kind: 'runtime'; modelId: string; path: string }
  /** The control plane's long poll for the agent's reports (`AgentReport` below). */
  | { kind: 'reports' }
  /** What became of reports the agent handed over (`AgentReportResults` below). */
  | { kind: 'reportResults' };

const RUNTIMES = `${WORKER_PREFIX}/runtimes/`;
const JOBS = `${WORKER_PREFIX}/jobs`;
const RECONCILE = `${WORKER_PREFIX}/reconcile`;
const HEALTHZ = `${WORKER_PREFIX}/healthz`;
const REPORTS = `${WORKER_PREFIX}/reports`;
const REPORT_RESULTS = `${WORKER_PREFIX}/reports/results`;

/** A path segment: encoded so that a `/`, `?` or `%` in an id stays inside it. */
const segment = (value: string): string => {
  if (value === '') throw new Error('an agent route segment cannot be empty');
  return encodeURIComponent(value);
};

/** An encoded segment read back; null when its encoding is broken (a `%` not followed by two hex digits). */
function decodeSegment(value: string): string | null {
  if (value === '' || value.includes('/')) return null;
  try {
    return decodeURIComponent(value);
  } catch {
    return null;
  }
}

/** A runtime's path: absolute, and never `//host` (which `new URL(path, base)` would read as another host). */
const isRuntimePath = (path: string): boolean => path.startsWith('/') && !path.startsWith('//') && !path.startsWith('/\\');

/** The builders: the only way the control plane names a route of the agent. */
export const agentRoutes = {
  /** `path`: the Kubernetes API server's path and query, from `/`. */
  kubernetes(path: string): string {
    if (!path.startsWith('/')) throw new Error(`a Kubernetes API path starts with /: ${path.slice(0, 100)}`);
    return `${K8S_PREFIX}${path}`;
  },
  healthz: (): string => HEALTHZ,
  reconcile: (wake?: string): string => (wake === undefined ? RECONCILE : `${RECONCILE}?wake=${encodeURIComponent(wake)}`),
  startJob: (): string => JOBS,
  jobAction: (jobId: string, action: AgentJobAction): string => `${JOBS}/${segment(jobId)}/${action}`,
  /** `path`: the runtime's OpenAI path (`/v1/chat/completions`). */
  runtime(modelId: string, path: string): string {
    if (!isRuntimePath(path)) throw new Error(`a runtime path starts with a single /: ${path.slice(0, 100)}`);
    return `${RUNTIMES}${segment(modelId)}${path}`;
  },
  reports: (): string => REPORTS,
  reportResults: (): string => REPORT_RESULTS,
} as const;

/**
 * The route a path names, or null when it names none (unknown, malformed, or badly encoded: the agent
 * answers 404). The inference route, the hot path, costs two `indexOf`s and one decode.
 */
export function parseAgentRoute(path: string): AgentRoute | null {
  if (path.startsWith(RUNTIMES)) {
    const slash = path.indexOf('/', RUNTIMES.length);
    if (slash === -1) return null;
    const modelId = decodeSegment(path.slice(RUNTIMES.length, slash));
    const runtimePath = path.slice(slash);
    return modelId !== null && isRuntimePath(runtimePath) ? { kind: 'runtime', modelId, path: runtimePath } : null;
  }
  if (path.startsWith(`${K8S_PREFIX}/`)) return { kind: 'kubernetes', path: path.slice(K8S_PREFIX.length) };
  if (path === HEALTHZ) return { kind: 'healthz' };
  if (path === REPORTS) return { kind: 'reports' };
  if (path === REPORT_RESULTS) return { kind: 'reportResults' };
  if (path === JOBS) return { kind: 'startJob' };
  if (path === RECONCILE) return { kind: 'reconcile', wake: null };
  if (path.startsWith(`${RECONCILE}?`)) return { kind: 'reconcile', wake: new URLSearchParams(path.slice(RECONCILE.length + 1)).get('wake') };
  if (path.startsWith(`${JOBS}/`)) {
    const parts = path.slice(JOBS.length + 1).split('/');
    if (parts.length !== 2 || !JOB_ACTIONS.has(parts[1]!)) return null;
    const jobId = decodeSegment(parts[0]!);
    return jobId === null ? null : { kind: 'jobAction', jobId, action: parts[1] as AgentJobAction };
  }
  return null;
}

/**
 * How the control plane reaches a cluster's agent: HTTP/2 streams over its tunnels. The sessions
 * component implements it where the tunnels end (its registry, and its replicas' peer endpoints:
 * subgraphs/sessions/peers.ts); a process without it reaches them through that peer endpoint
 * (subgraphs/sessions/remoteTunnels.ts). Inference and jobs use it; inference's streams are raw (the
 * hot path reads the runtime's answer as it comes), every other call is `callAgent`.
 */
export interface AgentTunnels {
  /** Opens a stream to an agent of the cluster (its least busy tunnel); throws when none is connected. */
  request(clusterId: string, headers: OutgoingHttpHeaders, options?: { endStream?: boolean }): ClientHttp2Stream;
  /** The tenant's clusters with a connected agent. */
  connectedClusters(tenantId: string): string[];
  /** Every cluster with a connected agent. */
  allConnectedClusters(): string[];
  /** Called when a cluster's tunnels change (an agent connected). */
  onChange(listener: (clusterId: string) => void): () => void;
}

/** The agent's answer to a JSON call: its status, and its body parsed (`{}` when empty or not JSON). */
export interface AgentAnswer {
  status: number;
  body: { error?: { message?: string } } & Record<string, unknown>;
}

export interface AgentCallOptions {
  /** Fails the call after this long (default 15 s): the stream is cancelled. */
  timeoutMs?: number;
  /** Sent as `x-request-id`: the agent's log lines about the call carry it. */
  requestId?: string;
}

/** The most of an agent's JSON answer read; a longer one fails the call. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/**
 * One JSON call to a cluster's agent: `POST route` with `body` (none when undefined), its answer read
 * whole. Fails on tunnel errors (no agent connected, a stream reset) or after the timeout; an answer of
 * any status resolves (the caller decides what 4xx and 5xx mean).
 */
export function callAgent(
  tunnels: Pick<AgentTunnels, 'request'>,
  clusterId: string,
  route: string,
  body: unknown,
  options: AgentCallOptions = {},
): Promise<AgentAnswer> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    let stream: ClientHttp2Stream;
    try {
      stream = tunnels.request(
        clusterId,
        {
          ':method': 'POST',
          ':path': route,
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          ...(options.requestId ? { 'x-request-id': options.requestId } : {}),
        },
        { endStream: payload === undefined },
      );
    } catch (error) {
      return reject(error as Error);
    }
    const fail = (error: Error) => {
      clearTimeout(timer);
      if (!stream.closed) stream.close();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error(`the agent of cluster ${clusterId} did not answer within ${timeoutMs} ms`)), timeoutMs);
    let status = 0;
    let size = 0;
    const chunks: Buffer[] = [];
    stream.on('response', (headers) => (status = Number(headers[':status'] ?? 0)));
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ANSWER_BYTES) return fail(new Error(`the agent of cluster ${clusterId} answered more than ${MAX_ANSWER_BYTES} bytes`));
      chunks.push(chunk);
    });
    stream.on('error', fail);
    // A stream reset without an error event (the tunnel went away): never a hang until the timeout.
    stream.on('close', () => {
      if (status === 0 || !stream.readableEnded)
        fail(new Error(`the call to the agent of cluster ${clusterId} ended without an answer (code ${stream.rstCode})`));
    });
    stream.on('end', () => {
      clearTimeout(timer);
      let parsed: AgentAnswer['body'] = {};
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as AgentAnswer['body'];
      } catch {
        /* an empty or non-JSON answer: the status says enough */
      }
      resolve({ status, body: parsed });
    });
    if (payload) stream.end(payload);
  });
}

/**
 * Reports travel up the tunnel the commands come down: the control plane keeps a long poll open on each
 * tunnel (`agentRoutes.reports()`), which the agent answers with the reports it has queued (at once, or as
 * soon as one is queued); the control plane polls again at once, delivers each report (a job's in order),
 * and tells the agent what became of each as soon as it knows (`agentRoutes.reportResults()`). A report
 * is done only when its outcome arrives; one whose tunnel went away first is sent again (at least once:
 * job log lines carry offsets), and each sender awaits its report before sending the next, so a job's
 * lines and phases arrive in order.
 */
export type AgentReport =
  /** A job's output lines, with their offsets (the control plane ignores those it has). */
  | { kind: 'jobLogs'; jobId: string; lines: { offset: number; text: string; time: string }[] }
  /** A job's phase change, sent after every line before it. */
  | {
      kind: 'jobStatus';
      jobId: string;
      phase: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'LOST';
      message?: string | null;
      outputPath?: string | null;
      trainedTokens?: number | null;
    }
  /** The state of every runtime of the cluster (replaces the previous report). */
  | {
      kind: 'runtimes';
      runtimes: readonly {
        modelId: string;
        desiredReplicas: number;
        readyReplicas: number;
        inFlightRequests: number;
        statusMessage?: string | null;
        autoscaling?: object | null;
      }[];
    };

/** The agent's answer to a poll: the reports it hands over, each with its id. */
export interface AgentReportBatch {
  reports: (AgentReport & { id: number })[];
}

/** What became of a report: delivered (no error), or refused with the control plane's error code. */
export interface AgentReportResult {
  id: number;
  error?: { code: string; message: string };
}

/** The body of `agentRoutes.reportResults()`. */
export interface AgentReportResults {
  results: AgentReportResult[];
}

/** How long the agent holds a poll with nothing to report before answering it empty. */
export const REPORT_POLL_HOLD_MS = 20_000;
/** The most reports one answer carries. */
export const REPORT_BATCH_MAX = 64;
