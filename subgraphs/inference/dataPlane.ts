import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, MarinerError, openAIErrorBody, openAIStatusFor } from '../../lib/errors.js';
import { forwardedRequestId, readBody, writeOrWait } from '../../lib/http.js';
import {
  INFERENCE_PLANE_PATHS,
  inferenceErrorOf,
  inferenceFieldOf,
  RATE_LIMIT_HEADER,
  rateLimitHeaderOf,
  streams,
  type InferenceCall,
  type InferenceKind,
  type InferencePlaneServer,
  type InferenceRateLimit,
  type InferenceSink,
} from '../../lib/inferencePlane.js';
import type { Logger } from '../../lib/logging.js';
import type { SubgraphContext, SubgraphRoute } from '../../lib/subgraphServer.js';
import { authorizeField } from '../../schema/rbac/authorizeField.js';
import type { PolicyMap } from '../../schema/rbac/policy.js';
import { hasText, releaseRouted, routeCompletion, statusOfError, usageOf, type RoutedCompletion, type WholeAnswer } from './completions.js';
import type { InferenceContext } from './context.js';
import { eventData, MAX_SERVER_SENT_EVENT_CHARS } from './router.js';
import { RateLimitedError } from './rateLimits.js';
import { routeTranscription, transcriptionAnswer } from './transcriptions.js';
import { readTranscriptionForm, type AudioUpload } from '../../lib/transcription.js';
import { InteractiveTraffic, PRIORITY_HEADER, priorityOf } from '../../lib/requestPriority.js';
import type { InternalCaller } from '../../lib/identity.js';

const EVENT_END = Buffer.from('\n\n');
/** An event that carries a usage object (`"usage": null` on the others does not count). */
const USAGE_OBJECT = /"usage"\s*:\s*\{/;

export interface DataPlaneOptions {
  /** The request's context, as GraphQL resolvers get it. */
  contextOf(base: SubgraphContext): InferenceContext;
  policy: PolicyMap;
  logger: Logger;
}

/**
 * The inference component's end of the data plane (lib/inferencePlane.ts): the OpenAI request is
 * authorized by the rule of the GraphQL field it stands for (as the subgraph's shield would for the
 * field), then goes through exactly what the resolvers do (completions.ts: admission, model, RAG,
 * routing, metering), and the runtime's answer is passed on as bytes: a JSON answer whole (read once
 * for its usage), a stream event by event as the runtime writes them — each event looked at for the
 * first token and the usage, and the usage event left out when the caller hid it. Nothing is
 * re-serialised. The reader leaving stops the generation on the runtime.
 */
export function createInferencePlaneServer(options: DataPlaneOptions): InferencePlaneServer {
  // Interactive requests answering in this process: a batch worker here waits for none (lib/requestPriority.ts).
  const interactive = new InteractiveTraffic();
  return {
    interactiveIdle: (maxWaitMs) => interactive.idle(maxWaitMs),
    interactiveRecently: (windowMs) => interactive.recent(windowMs),
    serve: (call, caller, sink) => (call.priority === 'batch' ? serveOne(call, caller, sink) : interactive.during(() => serveOne(call, caller, sink))),
  };

  async function serveOne(call: InferenceCall, caller: InternalCaller, sink: InferenceSink): Promise<void> {
    const ctx = options.contextOf({
      requestId: call.requestId,
      system: caller.system,
      identity: caller.identity,
      worker: caller.worker,
      _shield: { cache: {} },
    });
    let routed: RoutedCompletion;
    const stream = streams(call);
    try {
      const field = inferenceFieldOf(call);
      await authorizeField(options.policy, field.typeName, field.fieldName, { request: call.request }, ctx);
      routed =
        call.kind === 'transcription'
          ? await routeTranscription(ctx, call.request, call.audio, sink.leaving)
          : await routeCompletion(call.kind, ctx, call.request, stream, sink.leaving, call.priority);
    } catch (error) {
      return sink.fail(inferenceErrorOf(error, call.requestId, options.logger), error instanceof RateLimitedError ? error.state : null);
    }
    let answered = false;
    try {
      if (sink.leaving.aborted) return;
      if (stream) answered = await passEvents(routed, sink);
      else await passWhole(routed, sink, call.kind === 'transcription' ? transcriptionAnswer : jsonAnswer);
    } catch (error) {
      routed.meter.failed(statusOfError(error));
      sink.fail(inferenceErrorOf(error, call.requestId, options.logger), null);
    } finally {
      releaseRouted(routed.routed, answered);
      // 499: the reader left before the end (the usage of a cut answer is unknown). No-op once recorded.
      routed.meter.failed(499);
    }
  }
}

/**
 * The data plane over HTTP, for a gateway in another process: the body is the OpenAI request, the
 * internal token (checked by lib/subgraphServer.ts) the caller, the answer as lib/inferencePlane.ts
 * describes. The request id is the one the gateway sends beside its reused token.
 */
export function dataPlaneRoutes(server: InferencePlaneServer, maxBodyBytes: number): Record<string, SubgraphRoute> {
  const routes: Record<string, SubgraphRoute> = {};
  for (const kind of Object.keys(INFERENCE_PLANE_PATHS) as InferenceKind[]) {
    routes[INFERENCE_PLANE_PATHS[kind]] = async (req, res, caller) => {
      const requestId = forwardedRequestId(req, caller.requestId);
      const sink = httpSink(res);
      let request: Record<string, unknown>;
      let audio: AudioUpload | undefined;
      try {
        if (kind === 'transcription') {
          // The gateway re-sends the client's form as multipart (lib/transcription.ts).
          const form = await readTranscriptionForm(req.headers, req);
          request = form.fields;
          audio = form.audio ?? undefined;
        } else request = await bodyOf(req, maxBodyBytes);
      } catch (error) {
        return sink.fail({ code: ErrorCode.BAD_USER_INPUT, message: (error as Error).message, field: kind === 'transcription' ? 'file' : 'request' }, null);
      }
      const priority = priorityOf(req.headers[PRIORITY_HEADER]);
      await server.serve({ kind, request, requestId, priority, ...(audio ? { audio } : {}) }, caller, sink);
    };
  }
  return routes;
}

/** An HTTP response as a sink: errors in GraphQL's shape before the start, an OpenAI error event after. */
function httpSink(res: ServerResponse): InferenceSink {
  const leaving = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) leaving.abort();
  });
  const rateLimitHeader = (state: InferenceRateLimit | null): Record<string, string> => (state ? { [RATE_LIMIT_HEADER]: rateLimitHeaderOf(state) } : {});
  return {
    leaving: leaving.signal,
    start(contentType, rateLimit) {
      const stream = contentType.startsWith('text/event-stream');
      res.writeHead(200, { 'content-type': contentType, ...(stream ? { 'cache-control': 'no-cache' } : {}), ...rateLimitHeader(rateLimit) });
      if (stream) res.flushHeaders();
    },
    write: (bytes) => writeOrWait(res, bytes),
    end: () => void res.end(),
    fail(error, rateLimit) {
      if (res.writableEnded || res.destroyed) return;
      if (res.headersSent) return void res.end(`data: ${JSON.stringify(openAIErrorBody(error.code, error.message))}\n\n`);
      res.writeHead(openAIStatusFor(error.code), { 'content-type': 'application/json', ...rateLimitHeader(rateLimit) });
      res.end(JSON.stringify({ errors: [{ message: error.message, extensions: { code: error.code, ...(error.field ? { field: error.field } : {}) } }] }));
    },
  };
}

/** The OpenAI request body: a JSON object. */
async function bodyOf(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const text = await readBody(req, maxBytes);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error('The request body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('request must be a JSON object (the OpenAI request body)');
  return body as Record<string, unknown>;
}

/** A completion's or embedding's answer: JSON, which must parse, with its usage. */
function jsonAnswer(_routed: RoutedCompletion, bytes: Buffer): WholeAnswer {
  return { contentType: 'application/json', usage: usageOf(JSON.parse(bytes.toString('utf8'))) };
}

/**
 * An answer read whole (`answer` says as what: jsonAnswer, or a transcription's), its usage charged and
 * recorded, then passed on as the runtime wrote it — with the budgets left after its own tokens.
 */
async function passWhole(routed: RoutedCompletion, sink: InferenceSink, answer: (routed: RoutedCompletion, bytes: Buffer) => WholeAnswer): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of routed.routed.stream) {
    if (sink.leaving.aborted) return;
    chunks.push(chunk as Buffer);
  }
  const bytes = Buffer.concat(chunks);
  const { contentType, usage } = answer(routed, bytes);
  await routed.meter.succeeded(usage);
  sink.start(contentType, routed.meter.rateLimit);
  if (await sink.write(bytes)) sink.end();
}

/**
 * A stream: each complete event of the runtime (up to its `\n\n`) is passed on in the same write as
 * the others of the same read; an unfinished event waits for its end (at most
 * MAX_SERVER_SENT_EVENT_CHARS). Events are parsed only while no text has come (the first token's time)
 * and when they carry a usage object (charged and recorded; left out when the caller hid it): the
 * token events in between pass untouched. A slow reader holds the runtime back (the stream pauses
 * until the write drains) rather than growing memory. Ends at `[DONE]`; a runtime that stops before it
 * is a failure (an error event).
 */
async function passEvents(routed: RoutedCompletion, sink: InferenceSink): Promise<boolean> {
  const { meter, hideUsage } = routed;
  const stream = routed.routed.stream;
  sink.start('text/event-stream; charset=utf-8', meter.rateLimit);
  let usage: { prompt: number; completion: number } | null = null;
  let firstToken = false;
  let pending: Buffer | null = null;
  let done = false;
  const outcome = await new Promise<'done' | 'cut' | 'left' | MarinerError>((resolve) => {
    let settled = false;
    const finish = (result: 'done' | 'cut' | 'left' | MarinerError) => {
      if (settled) return;
      settled = true;
      stream.off('data', onData).off('end', onEnd).off('error', onEnd).off('close', onEnd);
      sink.leaving.removeEventListener('abort', onLeaving);
      resolve(result);
    };
    const onEnd = () => finish(done ? 'done' : 'cut');
    const onLeaving = () => finish('left');
    const onData = (read: Buffer) => {
      const bytes: Buffer = pending ? Buffer.concat([pending, read]) : read;
      pending = null;
      const out: Buffer[] = [];
      let start = 0;
      let end: number;
      while (!done && (end = bytes.indexOf(EVENT_END, start)) !== -1) {
        const event = bytes.subarray(start, end + 2);
        start = end + 2;
        const data = eventData(event.toString('utf8', 0, event.length - 2));
        if (data === '[DONE]') done = true;
        else if (data !== '' && (!firstToken || USAGE_OBJECT.test(data))) {
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
        if (pending.length > MAX_SERVER_SENT_EVENT_CHARS) {
          return finish(
            new MarinerError(
              ErrorCode.UNAVAILABLE,
              `The runtime sent an event longer than ${MAX_SERVER_SENT_EVENT_CHARS} bytes; the stream was stopped. Retry the request`,
            ),
          );
        }
      }
      const written = out.length === 0 ? true : sink.write(out.length === 1 ? out[0]! : Buffer.concat(out));
      if (written === true) return void (done && finish('done'));
      if (written === false) return finish('left');
      stream.pause();
      void written.then((ok) => {
        if (!ok) return finish('left');
        if (done) return finish('done');
        stream.resume();
      });
    };
    if (sink.leaving.aborted) return finish('left');
    sink.leaving.addEventListener('abort', onLeaving, { once: true });
    // Kept after the end: the stream may be reset once passed on (releaseRouted), which must not throw.
    stream.on('error', () => undefined);
    // A reset stream (the runtime or the tunnel failed mid-answer) ends like a cut one.
    stream.on('data', onData).once('end', onEnd).once('error', onEnd).once('close', onEnd);
  });
  if (outcome instanceof MarinerError) throw outcome;
  if (outcome === 'left') return false;
  if (outcome === 'cut') throw new MarinerError(ErrorCode.UNAVAILABLE, 'The runtime stopped before the stream finished; retry the request');
  await meter.succeeded(usage);
  sink.end();
  return true;
}
