import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { ApolloServerPlugin } from '@apollo/server';
import { Kind, parse, valueFromASTUntyped, type OperationDefinitionNode } from 'graphql';
import type { ApiCallRecord, ApiCaller, ApiCallSink } from '../lib/apiCallRecord.js';
import { ErrorCode } from '../lib/errors.js';
import type { Identity, InternalTokens } from '../lib/identity.js';
import { asSystem, createInternalClient } from '../lib/internalClient.js';
import type { Logger } from '../lib/logging.js';
import type { GatewayContext } from './context.js';

export type { ApiCallRecord, ApiCallSink };

/**
 * Usage records of every API call (docs/operations-usage.md), taken at the platform's edge and written in
 * batches to the component that owns usage (the inference subgraph's `api_calls`), never on a request's
 * path: `record` appends to memory; a timer (every `flushIntervalMs`), a full batch or the gateway's stop
 * writes them, into that component's store when it runs in this process (`mariner up`), else over HTTP.
 *
 * ONE RECORD PER CALL, where the caller arrived:
 * - a GraphQL operation (HTTP, or a query/mutation over graphql-ws) is recorded by the gateway's Apollo
 *   plugin, with its type, name, HTTP status and first error code;
 * - a REST call (`/v1/...`) is recorded by the REST layer when its answer ends (method, the route as
 *   declared, status, latency). The GraphQL operations it forwards to the gateway (any number) are NOT
 *   recorded on their own: the REST layer registers its request id for the call's duration
 *   (`restCallStarted`), and an operation arriving from loopback under a registered id lends the REST
 *   record its caller instead (`attribute`). Inference on the data plane (no GraphQL) lends the caller the
 *   same way, in memory (gateway/inferencePlane.ts: no database write or await on that path).
 * Tokens are not in these records: the inference component writes one record per inference request with
 * its model and tokens, and summaries add them per group and bucket.
 *
 * Not recorded: a cluster agent's calls (its reports, many a minute: the cluster's status keeps them) and
 * subscriptions over graphql-ws (a subscription is not a call; its events are not either).
 */

const NO_CALLER: ApiCaller = { tenantId: null, organizationId: null, projectId: null, userId: null, apiKeyId: null, modelId: null };
const MAX_MODEL_LENGTH = 256;

/** The caller of a request: its project's organization, else its key's, else the user's default one. */
export function callerOf(identity: Identity | null, modelId: string | null = null): ApiCaller {
  if (!identity) return { ...NO_CALLER, modelId };
  const { principal, project } = identity;
  const organizationId =
    project?.organizationId ??
    principal.apiKey?.organizationId ??
    principal.organizations.find((o) => o.isDefault)?.organizationId ??
    principal.organizations[0]?.organizationId ??
    null;
  return {
    tenantId: principal.tenantId,
    organizationId,
    projectId: project?.projectId ?? principal.apiKey?.projectId ?? null,
    userId: principal.userId,
    apiKeyId: principal.apiKey?.id ?? null,
    modelId: modelId === null ? null : modelId.slice(0, MAX_MODEL_LENGTH),
  };
}

/** The model an operation's top-level fields name (`input.model`, `model`), where one does. */
export function modelOf(operation: OperationDefinitionNode, variables: Record<string, unknown>): string | null {
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD) continue;
    for (const argument of selection.arguments ?? []) {
      const value: unknown = valueFromASTUntyped(argument.value, variables);
      if (argument.name.value === 'model' && typeof value === 'string') return value;
      if (value !== null && typeof value === 'object' && typeof (value as { model?: unknown }).model === 'string') return (value as { model: string }).model;
    }
  }
  return null;
}

const RECORD_API_CALLS = parse('mutation RecordApiCalls($calls: [ApiCallInput!]!) { recordApiCalls(calls: $calls) }') as TypedDocumentNode<
  { recordApiCalls: number },
  { calls: ApiCallRecord[] }
>;

/** The inference subgraph (the usage records' owner), called as the system: `mariner serve`, one process each. */
export function inferenceSubgraphSink(url: string, tokens: InternalTokens): ApiCallSink {
  const client = createInternalClient({ subgraph: 'inference', url, tokens });
  return async (calls) => {
    await client.request(asSystem('api-usage'), RECORD_API_CALLS, { calls });
  };
}

export interface ApiCallRecorderOptions {
  sink: ApiCallSink;
  logger: Logger;
  /** A batch is written at least this often (ms)... */
  flushIntervalMs?: number;
  /** ...or as soon as this many records wait. */
  batchSize?: number;
  /** Records kept while the sink fails; past it the oldest are dropped, and the loss logged. */
  maxBuffered?: number;
}

/**
 * The batching: `record` appends to an array (nothing else happens on the request's path); a timer writes
 * what waits every `flushIntervalMs`, a full batch is written at once, `stop` writes the rest. A failed
 * write is kept for the next one (at most `maxBuffered` records).
 */
export class ApiCallRecorder {
  private queue: ApiCallRecord[] = [];
  private writing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private readonly batchSize: number;
  private readonly maxBuffered: number;
  private dropped = 0;

  constructor(private readonly options: ApiCallRecorderOptions) {
    this.batchSize = options.batchSize ?? 500;
    this.maxBuffered = options.maxBuffered ?? 100_000;
    this.timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 1_000);
    this.timer.unref();
  }

  record(call: ApiCallRecord): void {
    this.queue.push(call);
    if (this.queue.length > this.maxBuffered) {
      this.queue.shift();
      this.dropped++;
    }
    if (this.queue.length >= this.batchSize) void this.flush();
  }

  /** Records waiting to be written. */
  pending(): number {
    return this.queue.length;
  }

  /** Writes what waits now, in batches, one write at a time. */
  flush(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (this.dropped > 0) {
        this.options.logger.warn({ dropped: this.dropped }, 'API call records dropped: the inference component did not take them in time');
        this.dropped = 0;
      }
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.batchSize);
        try {
          await this.options.sink(batch);
        } catch (error) {
          this.options.logger.warn({ err: (error as Error).message, records: batch.length }, 'writing API call records failed; retrying with the next batch');
          this.queue.unshift(...batch);
          return;
        }
      }
    });
    return this.writing;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

/** The REST call a registered request id stands for while it runs. */
interface RestCall {
  caller: ApiCaller | null;
}

/** How a REST call ended, as the REST layer saw it. */
export interface RestCallEnd {
  requestId: string;
  method: string;
  /** The route as declared (`/v1/files/:id`), or null when none matched. */
  route: string | null;
  statusCode: number;
  errorCode: string | null;
  latencyMs: number;
}

/** What the REST layer uses of the gateway's usage accounting (rest-compat/index.ts). */
export interface RestUsage {
  /** Registers a REST call's request id; false when one with that id is running (take another id). */
  restCallStarted(requestId: string): boolean;
  /** The call's one record (its caller lent by the first GraphQL operation or inference call it made). */
  restCallEnded(end: RestCallEnd): void;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

/** Marks a gateway context as a forwarded operation (a symbol property: Apollo hands plugins a shallow copy of the context). */
const FORWARDED = Symbol('mariner.usage.forwarded');
type Markable = GatewayContext & { [FORWARDED]?: true };

/**
 * The gateway's usage accounting: the recorder, the REST calls running now (by request id), and the Apollo
 * plugin that records GraphQL operations.
 */
export class ApiUsage implements RestUsage {
  private readonly rest = new Map<string, RestCall>();

  constructor(private readonly recorder: Pick<ApiCallRecorder, 'record'>) {}

  restCallStarted(requestId: string): boolean {
    if (this.rest.has(requestId)) return false;
    this.rest.set(requestId, { caller: null });
    return true;
  }

  restCallEnded(end: RestCallEnd): void {
    const call = this.rest.get(end.requestId);
    this.rest.delete(end.requestId);
    this.recorder.record({
      occurredAt: new Date(Date.now() - end.latencyMs).toISOString(),
      requestId: end.requestId,
      protocol: 'rest',
      method: end.method,
      route: end.route,
      operationType: null,
      operationName: null,
      statusCode: end.statusCode,
      errorCode: end.errorCode,
      latencyMs: Math.round(end.latencyMs),
      ...(call?.caller ?? NO_CALLER),
    });
  }

  /** REST calls running now (for tests and metrics). */
  restCallsRunning(): number {
    return this.rest.size;
  }

  /**
   * Whether a gateway request is an operation a running REST call forwarded: it comes from loopback (the
   * REST layer of this process) under a registered request id. Then it is marked, and not recorded alone.
   */
  markIfForwarded(context: GatewayContext, peerAddress: string | undefined): boolean {
    if (!peerAddress || !LOOPBACK.has(peerAddress) || !this.rest.has(context.requestId)) return false;
    (context as Markable)[FORWARDED] = true;
    return true;
  }

  /** Lends a running REST call its caller (the first one known wins; a later model fills a missing one). */
  attribute(requestId: string, identity: Identity | null, modelId: string | null = null): void {
    const call = this.rest.get(requestId);
    if (!call) return;
    if (!call.caller) call.caller = identity ? callerOf(identity, modelId) : null;
    else if (call.caller.modelId === null && modelId !== null) call.caller.modelId = modelId.slice(0, MAX_MODEL_LENGTH);
  }

  /** A GraphQL request refused before Apollo ran it (no or a bad credential, a body too large). */
  graphqlRefused(context: { requestId: string; method: string; peerAddress: string | undefined }, code: ErrorCode, status: number, latencyMs: number): void {
    // A forwarded one is its REST call's record (with the status the REST layer answers).
    if (context.peerAddress && LOOPBACK.has(context.peerAddress) && this.rest.has(context.requestId)) return;
    this.recorder.record({
      occurredAt: new Date(Date.now() - latencyMs).toISOString(),
      requestId: context.requestId,
      protocol: 'graphql',
      method: context.method,
      route: null,
      operationType: null,
      operationName: null,
      statusCode: status,
      errorCode: code,
      latencyMs: Math.round(latencyMs),
      ...NO_CALLER,
    });
  }

  /** Records every GraphQL operation the gateway answers (see the module), in willSendResponse. */
  plugin(): ApolloServerPlugin<GatewayContext> {
    return {
      requestDidStart: async ({ request }) => {
        const started = performance.now();
        return {
          willSendResponse: async ({ operation, response, contextValue }) => {
            if (contextValue.worker) return;
            let modelId: string | null = null;
            try {
              modelId = operation ? modelOf(operation, request.variables ?? {}) : null;
            } catch {
              modelId = null;
            }
            if ((contextValue as Markable)[FORWARDED]) return this.attribute(contextValue.requestId, contextValue.identity, modelId);
            const errors = response.body.kind === 'single' ? response.body.singleResult.errors : undefined;
            const code = errors?.[0]?.extensions?.['code'];
            const errorCode = errors && errors.length > 0 ? (typeof code === 'string' ? code : ErrorCode.INTERNAL) : null;
            const statusCode = response.http.status ?? 200;
            const latencyMs = performance.now() - started;
            this.recorder.record({
              occurredAt: new Date(Date.now() - latencyMs).toISOString(),
              requestId: contextValue.requestId,
              protocol: 'graphql',
              method: request.http?.method ?? 'WS',
              route: null,
              operationType: operation?.operation ?? null,
              operationName: operation?.name?.value ?? request.operationName ?? null,
              statusCode,
              errorCode,
              latencyMs: Math.round(latencyMs),
              ...callerOf(contextValue.identity, modelId),
            });
          },
        };
      },
    };
  }
}
