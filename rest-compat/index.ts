import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { requestIdOf } from '../lib/http.js';
import type { InferencePlane } from '../lib/inferencePlane.js';
import type { Logger } from '../lib/logging.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import { auditExportRoutes } from './auditExport.js';
import { clusterRoutes } from './clusters.js';
import { RestError, sendRestError } from './errors.js';
import { batchJobRoutes } from './batchJobs.js';
import { batchRoutes } from './batches.js';
import { fileRoutes } from './files.js';
import { jobRoutes } from './jobs.js';
import { llmarinerTelemetryRoutes } from './llmarinerTelemetry.js';
import { llmarinerUsageRoutes } from './llmarinerUsage.js';
import { budgetRoutes } from './budgets.js';
import { gpuQuotaRoutes } from './gpuQuotas.js';
import { fineTuningRoutes } from './fineTuning.js';
import { inferenceRoutes } from './inference.js';
import { audioRoutes } from './audio.js';
import { modelRoutes } from './models.js';
import { OpenStreams } from './openStreams.js';
import { notebookRoutes } from './notebooks.js';
import { createGatewayClient } from './gatewayClient.js';
import { responseRoutes } from './responses.js';
import { createRouter } from './router.js';
import { userRoutes } from './users.js';
import { vectorStoreRoutes } from './vectorStores.js';

/**
 * The OpenAI-compatible REST surface (`/v1/...`): each route translates to GraphQL operations on the
 * gateway, so authentication, project headers and RBAC are the gateway's. File bytes go straight to
 * the object store; completions and embeddings take the gateway's inference data plane (the same
 * authentication and policy, without GraphQL on the way: lib/inferencePlane.ts).
 */
export interface RestCompat {
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /**
   * For a stopping server, after its drain: ends the streamed answers still open with an error event
   * (a 503 before their first event), so none is cut without a word.
   */
  close(): Promise<void>;
}

export interface RestCompatOptions {
  /** The gateway's GraphQL URL (known once the public port listens). */
  graphqlUrl: () => string;
  /** The gateway's inference data plane, in the same process. */
  inference: InferencePlane;
  objectStore: ObjectStore;
  logger: Logger;
  /**
   * The usage records of REST calls (gateway/usage.ts): each call makes ONE record, taken here when its
   * answer ends; the GraphQL operations it forwards lend it their caller and are not recorded alone.
   */
  usage?: RestCallUsage;
}

/** What the REST layer tells the gateway's usage accounting (gateway/usage.ts RestUsage). */
export interface RestCallUsage {
  /** False when a call with this request id is running: the call then takes a fresh id. */
  restCallStarted(requestId: string): boolean;
  restCallEnded(end: { requestId: string; method: string; route: string | null; statusCode: number; errorCode: string | null; latencyMs: number }): void;
}

/** The most of a refused request's unread body that is read and thrown away rather than the connection closed. */
const DRAINED_BODY_BYTES = 1024 * 1024;

export function createRestCompat(options: RestCompatOptions): RestCompat {
  const gateway = createGatewayClient(options.graphqlUrl);
  const streams = new OpenStreams();
  const router = createRouter([
    ...fileRoutes({ gateway, objectStore: options.objectStore }),
    ...modelRoutes({ gateway }),
    ...userRoutes({ gateway }),
    ...clusterRoutes({ gateway }),
    ...fineTuningRoutes({ gateway }),
    ...batchJobRoutes({ gateway }),
    ...batchRoutes({ gateway }),
    ...jobRoutes({ gateway }),
    ...notebookRoutes({ gateway }),
    ...inferenceRoutes({ gateway, inference: options.inference, streams }),
    ...audioRoutes({ inference: options.inference, streams }),
    ...responseRoutes({ gateway, inference: options.inference, streams }),
    ...vectorStoreRoutes({ gateway }),
    ...llmarinerUsageRoutes({ gateway }),
    ...auditExportRoutes({ gateway }),
    ...budgetRoutes({ gateway }),
    ...gpuQuotaRoutes({ gateway }),
    ...llmarinerTelemetryRoutes({ gateway }),
  ]);
  return {
    async close() {
      if (streams.size > 0) options.logger.warn({ streams: streams.size }, 'streamed answers still open at shutdown end with an error event');
      await streams.endAll(new RestError(503, 'The server is shutting down; retry the request', 'server_error'));
    },
    async handle(req, res) {
      let requestId = requestIdOf(req);
      // One usage record per call, keyed by its request id while it runs: a caller's id already running takes a fresh one.
      const { usage } = options;
      if (usage && !usage.restCallStarted(requestId)) {
        requestId = randomUUID();
        usage.restCallStarted(requestId);
      }
      const headers = { 'x-request-id': requestId };
      const url = new URL(req.url ?? '/', 'http://rest');
      const started = performance.now();
      let routePath: string | null = null;
      let errorType: string | null = null;
      // When the answer ends (or the caller leaves): not awaited, nothing written on the request's path.
      if (usage)
        res.once('close', () =>
          usage.restCallEnded({
            requestId,
            method: req.method ?? 'GET',
            route: routePath,
            statusCode: res.statusCode,
            errorCode: errorType ?? (res.statusCode >= 400 ? `http_${res.statusCode}` : null),
            latencyMs: performance.now() - started,
          }),
        );
      try {
        const route = router.match(req.method ?? 'GET', url.pathname);
        // OpenAI API: unknown routes answer 404 with the standard error object.
        if (!route) throw RestError.notFound(`Invalid URL (${req.method ?? 'GET'} ${url.pathname})`);
        routePath = route.path;
        await route.handler(req, res, { url, params: route.params, requestId, headers });
      } catch (error) {
        const restError = error instanceof RestError ? error : new RestError(500, `Internal error (request id ${requestId})`, 'server_error');
        errorType = restError.code ?? restError.type;
        if (!(error instanceof RestError)) options.logger.error({ err: error, requestId }, 'REST request failed');
        if (res.headersSent) {
          res.destroy();
          return;
        }
        // A body left unread (an upload refused before or while it is read): a small one is read to its end
        // and thrown away, so the answer arrives whole (closing a connection with bytes still arriving resets
        // it, and a client still sending loses the answer: the SDK reports a connection error); a large or
        // undeclared one is not worth reading: the connection closes after the answer.
        const unread = !req.readableEnded;
        const drained = unread && Number(req.headers['content-length']) <= DRAINED_BODY_BYTES;
        if (drained) req.resume();
        const close = unread && !drained;
        sendRestError(res, restError, close ? { ...headers, connection: 'close' } : headers);
        if (close) res.on('finish', () => req.destroy());
      }
    },
  };
}
