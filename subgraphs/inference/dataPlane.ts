import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import { badInput, ErrorCode, isErrorCode, MarinerError, openAIErrorBody, openAIStatusFor } from '../../lib/errors.js';
import { BodyTooLargeError, readBody } from '../../lib/http.js';
import { INFERENCE_PLANE_PATHS, inferenceFieldOf, RATE_LIMIT_HEADER, rateLimitHeaderOf, type InferenceKind } from '../../lib/inferencePlane.js';
import type { InternalCaller } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { SubgraphContext, SubgraphRoute } from '../../lib/subgraphServer.js';
import { authorizeField } from '../../schema/rbac/authorizeField.js';
import type { PolicyMap } from '../../schema/rbac/policy.js';
import { cancelRouted, hasText, routeCompletion, statusOfError, usageOf, type RoutedCompletion } from './completions.js';
import type { InferenceContext } from './context.js';
import { MAX_SERVER_SENT_EVENT_CHARS } from './router.js';
import { RateLimitedError } from './rateLimits.js';

/** A request id as the gateway sends it beside its (reused) token: the data plane's log lines carry it. */
const REQUEST_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

const EVENT_END = Buffer.from('\n\n');

export interface DataPlaneOptions {
  /** The request's context, as GraphQL resolvers get it. */
  contextOf(base: SubgraphContext): InferenceContext;
  policy: PolicyMap;
  maxBodyBytes: number;
  logger: Logger;
}

/**
 * The inference subgraph's end of the data plane (lib/inferencePlane.ts): the OpenAI request is
 * authorized by the rule of the GraphQL field it stands for (as the subgraph's shield would), then goes
 * through exactly what the resolvers do (completions.ts: admission, model, RAG, routing, metering), and
 * the runtime's answer is passed on as bytes: a JSON answer whole (read once for its usage), a stream
 * event by event as the runtime writes them — each event looked at for the first token and the usage,
 * and the usage event left out when the caller hid it. Nothing is re-serialised. The caller leaving
 * (the gateway cancelled) stops the generation on the runtime.
 */
export function createDataPlaneRoutes(options: DataPlaneOptions): Record<string, SubgraphRoute> {
  const routes: Record<string, SubgraphRoute> = {};
  for (const kind of Object.keys(INFERENCE_PLANE_PATHS) as InferenceKind[]) {
    routes[INFERENCE_PLANE_PATHS[kind]] = (req, res, caller) => serve(kind, req, res, caller, options);
  }
  return routes;
}

async function serve(kind: InferenceKind, req: IncomingMessage, res: ServerResponse, caller: InternalCaller, options: DataPlaneOptions): Promise<void> {
  const header = req.headers['x-request-id'];
  const requestId = typeof header === 'string' && REQUEST_ID.test(header) ? header : caller.requestId;
  const ctx = options.contextOf({ requestId, system: caller.system, identity: caller.identity, worker: caller.worker, _shield: { cache: {} } });
  // The gateway left (its client did): stop waiting for a runtime, and stop the generation.
  const leaving = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) leaving.abort();
  });
  let routed: RoutedCompletion;
  let stream = false;
  try {
    const request = await bodyOf(req, options.maxBodyBytes);
    stream = kind !== 'embedding' && request['stream'] === true;
    const field = inferenceFieldOf(kind, stream);
    await authorizeField(options.policy, field.typeName, field.fieldName, { request }, ctx);
    routed = await routeCompletion(kind, ctx, request, stream, leaving.signal);
  } catch (error) {
    return answerError(res, error, requestId, options.logger);
  }
  if (leaving.signal.aborted) {
    cancelRouted(routed.routed);
    return routed.meter.failed(499);
  }
  try {
    if (stream) await passEvents(routed, res, leaving.signal);
    else await passWhole(routed, res, leaving.signal);
  } catch (error) {
    routed.meter.failed(statusOfError(error));
    answerError(res, error, requestId, options.logger);
  } finally {
    cancelRouted(routed.routed);
    // 499: the caller left before the end (the usage of a cut answer is unknown). No-op once recorded.
    routed.meter.failed(499);
  }
}

/** The OpenAI request body: a JSON object. */
async function bodyOf(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readBody(req, maxBytes);
  } catch (error) {
    if (error instanceof BodyTooLargeError) throw badInput(error.message, 'request');
    throw error;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw badInput('The request body is not valid JSON', 'request');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badInput('request must be a JSON object (the OpenAI request body)', 'request');
  return body as Record<string, unknown>;
}

/** The rate-limit state of an answer's headers (none when the caller is not limited). */
function rateLimitHeaders(routed: RoutedCompletion): Record<string, string> {
  return routed.meter.rateLimit ? { [RATE_LIMIT_HEADER]: rateLimitHeaderOf(routed.meter.rateLimit) } : {};
}

/**
 * A JSON answer: read whole, its usage charged and recorded, then sent as the runtime wrote it — with
 * the budgets left after its own tokens.
 */
async function passWhole(routed: RoutedCompletion, res: ServerResponse, leaving: AbortSignal): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of routed.routed.stream) {
    if (leaving.aborted) return;
    chunks.push(chunk as Buffer);
  }
  const bytes = Buffer.concat(chunks);
  await routed.meter.succeeded(usageOf(JSON.parse(bytes.toString('utf8'))));
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length, ...rateLimitHeaders(routed) });
  res.end(bytes);
}

/**
 * A stream: each complete event of the runtime (up to its `\n\n`) is looked at and passed on in the
 * same write as the others of the same read; an unfinished event waits for its end (at most
 * MAX_SERVER_SENT_EVENT_CHARS). A slow reader holds the runtime back (the write waits for `drain`)
 * rather than growing memory. Ends at `[DONE]`; a runtime that stops before it ends the stream with an
 * error event, as OpenAI does.
 */
async function passEvents(routed: RoutedCompletion, res: ServerResponse, leaving: AbortSignal): Promise<void> {
  const { meter, hideUsage } = routed;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...rateLimitHeaders(routed) });
  res.flushHeaders();
  let usage: { prompt: number; completion: number } | null = null;
  let firstToken = false;
  let pending: Buffer | null = null;
  let done = false;
  try {
    for await (const read of routed.routed.stream) {
      const bytes: Buffer = pending ? Buffer.concat([pending, read as Buffer]) : (read as Buffer);
      pending = null;
      const out: Buffer[] = [];
      let start = 0;
      let end: number;
      while (!done && (end = bytes.indexOf(EVENT_END, start)) !== -1) {
        const event = bytes.subarray(start, end + 2);
        start = end + 2;
        const data = dataOf(event.toString('utf8', 0, event.length - 2));
        if (data === '[DONE]') done = true;
        else if (data !== '') {
          let chunk: unknown = null;
          try {
            chunk = JSON.parse(data);
          } catch {
            /* not JSON: passed on as it is, nothing to count */
          }
          if (!firstToken && hasText(chunk)) {
            firstToken = true;
            meter.firstToken();
          }
          const used = usageOf(chunk);
          if (used) {
            usage = used;
            if (hideUsage) continue;
          }
        }
        out.push(event);
      }
      if (!done && start < bytes.length) {
        pending = bytes.subarray(start);
        if (pending.length > MAX_SERVER_SENT_EVENT_CHARS) throw new MarinerError(ErrorCode.UNAVAILABLE, `The runtime sent an event longer than ${MAX_SERVER_SENT_EVENT_CHARS} bytes; the stream was stopped. Retry the request`);
      }
      if (out.length > 0 && !(await write(res, out.length === 1 ? out[0]! : Buffer.concat(out)))) return;
      if (done || leaving.aborted) break;
    }
  } catch (error) {
    if (error instanceof MarinerError) throw error;
    // A reset stream (the runtime or the tunnel failed mid-answer) ends like a cut one, below.
  }
  if (leaving.aborted) return;
  if (!done) throw new MarinerError(ErrorCode.UNAVAILABLE, 'The runtime stopped before the stream finished; retry the request');
  await meter.succeeded(usage);
  res.end();
}

/** The `data:` payload of one server-sent event (its `data:` lines joined). */
function dataOf(event: string): string {
  if (event.startsWith('data:') && !event.includes('\n')) return event.slice(5).trimStart();
  return event
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trimStart())
    .join('\n');
}

/** Writes, waiting for `drain` when the reader is behind; false when the response is gone. */
function write(res: ServerResponse, bytes: Buffer): Promise<boolean> | boolean {
  if (res.destroyed) return false;
  if (res.write(bytes)) return true;
  return new Promise((resolve) => {
    const done = (ok: boolean) => () => {
      res.off('drain', drained).off('close', closed);
      resolve(ok);
    };
    const drained = done(true);
    const closed = done(false);
    res.once('drain', drained).once('close', closed);
  });
}

/**
 * A refusal or failure before the answer started, in GraphQL's error shape with the status its code
 * has on the OpenAI surface (lib/inferencePlane.ts); a refusal by the rate limit carries the state.
 * Anything that is not one of our errors is logged and masked. Once a stream started, a failure is an
 * OpenAI error event instead.
 */
function answerError(res: ServerResponse, error: unknown, requestId: string, logger: Logger): void {
  if (res.writableEnded || res.destroyed) return;
  let code: ErrorCode = ErrorCode.INTERNAL;
  let message = `Internal error (request id ${requestId})`;
  let field: unknown;
  if (error instanceof GraphQLError && isErrorCode(error.extensions['code'])) {
    code = error.extensions['code'];
    message = error.message;
    field = error.extensions['field'];
  } else {
    logger.error({ err: error, requestId }, 'inference request failed');
  }
  if (res.headersSent) return void res.end(`data: ${JSON.stringify(openAIErrorBody(code, message))}\n\n`);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (error instanceof RateLimitedError) headers[RATE_LIMIT_HEADER] = rateLimitHeaderOf(error.state);
  res.writeHead(openAIStatusFor(code), headers);
  res.end(JSON.stringify({ errors: [{ message, extensions: { code, ...(typeof field === 'string' ? { field } : {}) } }] }));
}
