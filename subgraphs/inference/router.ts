import http2, { type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logging.js';
import { InFlightCounts } from '../../lib/requestTracker.js';
import { agentRoutes, callAgent, type AgentTunnels } from '../../lib/agentContract.js';
import type { ReadyRuntimes } from './readyRuntimes.js';
import type { RuntimeRow } from './store.js';

/** Whose request is routed: the caller's tenant, and its organization (which clusters it may use). */
export interface RoutingScope {
  tenantId: string;
  organizationId: string;
}

/** A runtime's answer: its status and headers, and the stream to read the body from. */
export interface RoutedResponse {
  clusterId: string;
  status: number;
  headers: IncomingHttpHeaders;
  stream: ClientHttp2Stream;
}

/** Waits for the response headers of a tunnel stream, or its failure. */
function responseOf(stream: ClientHttp2Stream): Promise<IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    stream.once('response', (headers) => {
      stream.off('error', reject);
      resolve(headers);
    });
    stream.once('error', reject);
    stream.once('close', () => reject(new Error(`stream closed before a response (code ${stream.rstCode})`)));
  });
}

/** How often a request waiting for a ready runtime looks again. */
const WAIT_POLL_MS = 250;

/**
 * Picks a runtime for each request and forwards it through the cluster's tunnel (DESIGN §3
 * "Inference"): ready runtimes of the tenant on clusters the caller's organization may use only
 * (lib/clusterAccess.ts: a cluster of another organization never sees its prompts, whatever its agent
 * reports), fewest requests in flight first (as reported by the agents plus those this replica has
 * sent since); a runtime that fails before answering (tunnel gone, agent or runtime error) is skipped
 * for the next one. Nothing has reached the caller by then, so the retry is invisible.
 */
export class InferenceRouter {
  /** Requests this replica has open to each (cluster, model), until their streams close. */
  private readonly sent = new InFlightCounts();

  constructor(
    /** The tenants' ready runtimes, in memory (readyRuntimes.ts): a request pays a map read, not a query. */
    private readonly runtimes: ReadyRuntimes,
    private readonly transport: Pick<AgentTunnels, 'request' | 'connectedClusters'>,
    /** Which clusters an organization may use: cached, so that a request pays a cache hit, not a round trip. */
    private readonly clusters: ClusterAccessDirectory,
    private readonly logger: Logger,
    private readonly waitSeconds: number,
    /** A model's runtimes as last reported, ready or not (the store's `forModels`): read only when none is ready. */
    private readonly reported?: (tenantId: string, modelId: string) => Promise<RuntimeRow[]>,
  ) {}

  /**
   * When the model's runtimes on the usable clusters are all shut down by their scaling schedules
   * (agent/autoscaler.ts reports `scheduledOffUntil`; an on-demand shutdown does not), the earliest
   * instant one opens again; null otherwise (the request waits for a runtime as usual).
   */
  private async scheduledOffUntil(scope: RoutingScope, usable: ReadonlySet<string>, modelId: string): Promise<number | null> {
    if (!this.reported) return null;
    const now = Date.now();
    const rows = (await this.reported(scope.tenantId, modelId)).filter((row) => usable.has(row.cluster_id));
    let until: number | null = null;
    for (const row of rows) {
      const off = row.autoscaling?.scheduledOffUntil ? Date.parse(row.autoscaling.scheduledOffUntil) : NaN;
      if (!(off > now)) return null;
      until = until === null ? off : Math.min(until, off);
    }
    return until;
  }

  /** The clusters the caller's organization may use now. When the clusters subgraph cannot say, routing fails closed: UNAVAILABLE. */
  private async usableClusters(scope: RoutingScope, knowing?: Iterable<string>): Promise<ReadonlySet<string>> {
    try {
      return await this.clusters.usableBy(scope.tenantId, scope.organizationId, knowing);
    } catch (error) {
      this.logger.warn({ err: (error as Error).message, tenantId: scope.tenantId }, 'cluster access could not be read; refusing to route');
      throw new MarinerError(ErrorCode.UNAVAILABLE, 'The clusters serving your organization could not be determined; retry shortly');
    }
  }

  /**
   * Ready runtimes of a model, reported within the freshness window, on clusters the caller may use;
   * `maxAgeMs`: read from the database if what is in memory is older (while waiting for one).
   */
  private async readyOn(scope: RoutingScope, modelId: string, maxAgeMs?: number) {
    const ready = await this.runtimes.ready(scope.tenantId, modelId, maxAgeMs);
    // The clusters of the ready runtimes are known to exist: an access answer lacking one is asked again.
    const usable = await this.usableClusters(
      scope,
      ready.map((runtime) => runtime.cluster_id),
    );
    return { usable, ready: ready.filter((runtime) => usable.has(runtime.cluster_id)) };
  }

  /**
   * Ready runtimes of a model; when there are none, asks the agents of the clusters the caller may use
   * to reconcile now (the model may just have been activated) and to wake the model (its autoscaler
   * scaled it to zero: scale from zero), and holds the request until one is ready or `waitSeconds` pass.
   */
  private async readyRuntimes(scope: RoutingScope, modelId: string, deadline: number, signal?: AbortSignal) {
    let { usable, ready } = await this.readyOn(scope, modelId);
    if (ready.length > 0) return ready;
    const offUntil = await this.scheduledOffUntil(scope, usable, modelId);
    if (offUntil !== null) {
      throw new MarinerError(
        ErrorCode.UNAVAILABLE,
        `Model ${modelId} is shut down by its scaling schedule until ${new Date(offUntil).toISOString()}; retry then`,
        { retryAfterSeconds: Math.max(1, Math.ceil((offUntil - Date.now()) / 1000)) },
      );
    }
    if (this.waitSeconds === 0) return ready;
    this.wake(scope.tenantId, usable, modelId);
    // Every 2 s again while it waits: a waiting request is demand, which keeps an autoscaler from
    // taking the starting replica away as idle. Each look reads runtimes no older than the wait
    // between looks, announced or not: a runtime that becomes ready is seen within 250 ms.
    for (let polls = 1; ready.length === 0 && Date.now() < deadline && !signal?.aborted; polls++) {
      await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
      if (polls % 8 === 0) this.wake(scope.tenantId, usable, modelId);
      ({ usable, ready } = await this.readyOn(scope, modelId, WAIT_POLL_MS));
    }
    return ready;
  }

  /**
   * Asks the connected agents of the `usable` clusters to reconcile now and to scale the model from
   * zero. Only those: the nudge names the model, and another organization's cluster must not learn
   * which models are being asked for.
   */
  private wake(tenantId: string, usable: ReadonlySet<string>, modelId: string): void {
    for (const clusterId of this.transport.connectedClusters(tenantId)) {
      if (!usable.has(clusterId)) continue;
      // Fire and forget: the request waits for a ready runtime, not for the agent's answer.
      callAgent(this.transport, clusterId, agentRoutes.reconcile(modelId), undefined, { timeoutMs: 5_000 }).catch(() => {
        /* the tunnel just went: nothing to nudge */
      });
    }
  }

  /**
   * Forwards a request to a ready runtime of the model (see the class). When every runtime tried
   * answered that it has no ready replica (the reports were behind: a replica just scaled away), the
   * request waits for a ready one as when none was reported, up to the same deadline.
   */
  async forward(
    scope: RoutingScope,
    modelId: string,
    path: string,
    body: unknown,
    signal?: AbortSignal,
    requestId?: string,
    /** Sent to the agent with the request (a LoRA adapter's, lib/loraAdapters.ts: `modelId` is then its base model). */
    headers?: Record<string, string>,
  ): Promise<RoutedResponse> {
    const deadline = Date.now() + this.waitSeconds * 1000;
    for (;;) {
      const attempt = await this.forwardOnce(scope, modelId, path, body, deadline, signal, requestId, headers);
      if ('routed' in attempt) return attempt.routed;
      if (!attempt.notReady || Date.now() >= deadline || signal?.aborted) throw attempt.error;
      this.wake(scope.tenantId, await this.usableClusters(scope), modelId);
      await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
    }
  }

  /**
   * One try over the ready runtimes. `requestId` goes to the agent as `x-request-id`: its logs and the
   * runtime see the caller's request id. `notReady`: every runtime tried answered 503.
   */
  private async forwardOnce(
    scope: RoutingScope,
    modelId: string,
    path: string,
    body: unknown,
    deadline: number,
    signal?: AbortSignal,
    requestId?: string,
    headers?: Record<string, string>,
  ): Promise<{ routed: RoutedResponse } | { error: MarinerError; notReady: boolean }> {
    const ready = await this.readyRuntimes(scope, modelId, deadline, signal);
    if (ready.length === 0) {
      return {
        error: new MarinerError(ErrorCode.UNAVAILABLE, `No runtime of model ${modelId} became ready within ${this.waitSeconds} s; retry shortly`),
        notReady: false,
      };
    }
    let notReady = true;
    const load = (clusterId: string, reported: number) => reported + this.sent.get(`${clusterId}/${modelId}`);
    const candidates = [...ready].sort((a, b) => load(a.cluster_id, a.in_flight_requests) - load(b.cluster_id, b.in_flight_requests));
    const raw = body instanceof RawBody;
    const payload = raw ? body.bytes : Buffer.from(JSON.stringify(body));
    let lastError: unknown;
    for (const runtime of candidates) {
      if (signal?.aborted) break;
      const key = `${runtime.cluster_id}/${modelId}`;
      let stream: ClientHttp2Stream;
      try {
        stream = this.transport.request(runtime.cluster_id, {
          ':method': 'POST',
          ':path': agentRoutes.runtime(modelId, path),
          'content-type': raw ? body.contentType : 'application/json',
          'content-length': payload.length,
          ...(requestId ? { 'x-request-id': requestId } : {}),
          ...headers,
        });
      } catch (error) {
        lastError = error;
        notReady = false;
        continue;
      }
      this.sent.track(key, stream);
      const cancel = () => {
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      };
      signal?.addEventListener('abort', cancel, { once: true });
      stream.end(payload);
      try {
        const headers = await responseOf(stream);
        const status = Number(headers[':status'] ?? 502);
        // The agent answers 502/503 when the runtime is gone or not ready: another one may serve.
        if (status === 502 || status === 503) {
          lastError = new Error(`cluster ${runtime.cluster_id} answered ${status}`);
          if (status === 502) notReady = false;
          cancel();
          continue;
        }
        return { routed: { clusterId: runtime.cluster_id, status, headers, stream } };
      } catch (error) {
        lastError = error;
        notReady = false;
        this.logger.warn({ err: (error as Error).message, clusterId: runtime.cluster_id, modelId }, 'runtime failed before answering; trying another');
      }
    }
    if (signal?.aborted) throw new MarinerError(ErrorCode.BAD_USER_INPUT, 'The request was cancelled');
    return {
      error: new MarinerError(
        ErrorCode.UNAVAILABLE,
        `No runtime of model ${modelId} could take the request (${(lastError as Error | undefined)?.message ?? 'none ready'}); retry shortly`,
      ),
      notReady,
    };
  }
}

/** A body sent as it is (a transcription's multipart form), instead of a value sent as JSON. */
export class RawBody {
  constructor(
    readonly contentType: string,
    readonly bytes: Buffer,
  ) {}
}

/** Reads a whole (small) JSON response body. */
export async function readJson(stream: ClientHttp2Stream, limit = 64 * 1024 * 1024): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error('runtime response too large');
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The most one server-sent event of a runtime may hold before its end (`\n\n`), in characters: the
 * parser keeps an unfinished event in memory, and a broken (or hostile) runtime that never ends one
 * must not grow the control plane's memory without bound. 1 Mi characters is far above any real
 * chunk (a few hundred bytes of JSON for a token or a tool-call delta; a usage chunk).
 */
export const MAX_SERVER_SENT_EVENT_CHARS = 1024 * 1024;

/** The `data:` payload of one server-sent event (without its ending `\n\n`): its `data:` lines joined. */
export function eventData(event: string): string {
  // The common case, one `data:` line, without splitting.
  if (event.startsWith('data:') && !event.includes('\n')) return event.slice(5).trimStart();
  return event
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trimStart())
    .join('\n');
}

/** The `data:` payloads of a server-sent event stream, as they arrive; ends at `[DONE]`. */
export async function* serverSentEvents(stream: ClientHttp2Stream, maxEventChars = MAX_SERVER_SENT_EVENT_CHARS): AsyncGenerator<unknown> {
  let buffer = '';
  // Where the search for the event's end resumes: the part already searched holds none.
  let searched = 0;
  // One decoder for the stream: a character whose UTF-8 bytes straddle two chunks is decoded whole.
  const decoder = new TextDecoder();
  const chunks = (async function* () {
    try {
      // Not destroyed when the reader stops at `[DONE]`: its owner lets it end (releaseRouted), as a reset costs the tunnel.
      yield* stream.iterator({ destroyOnReturn: false });
    } catch {
      // A reset stream (the runtime or the tunnel failed mid-answer) ends like a cut one, below.
    }
  })();
  for await (const chunk of chunks) {
    buffer += decoder.decode(chunk as Buffer, { stream: true });
    let boundary: number;
    while ((boundary = buffer.indexOf('\n\n', searched)) !== -1) {
      const event = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      searched = 0;
      const data = eventData(event);
      if (data === '') continue;
      if (data === '[DONE]') return;
      yield JSON.parse(data);
    }
    if (buffer.length > maxEventChars) {
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      throw new MarinerError(
        ErrorCode.UNAVAILABLE,
        `The runtime sent an event longer than ${maxEventChars} characters; the stream was stopped. Retry the request`,
      );
    }
    // A boundary may start at the last character searched ("\n" now, "\n" in the next chunk).
    searched = Math.max(0, buffer.length - 1);
  }
  // The runtime (or its cluster) went away mid-stream: an error, not a normal end.
  throw new MarinerError(ErrorCode.UNAVAILABLE, 'The runtime stopped before the stream finished; retry the request');
}
