import type { ServerResponse } from 'node:http';
import { sendJson, writeOrWait } from '../lib/http.js';
import type { InferenceRateLimit, InferenceSink } from '../lib/inferencePlane.js';
import { RestError, restErrorFromGraphQL } from './errors.js';
import { rateLimitHeaders, sendInferenceError } from './inference.js';
import type { JsonObject } from './json.js';
import type { OpenStreams } from './openStreams.js';
import { chunkOfCompletion, ResponseBuilder, type ResponseEvent } from '../lib/responseEvents.js';
import type { ResponseRequest } from '../lib/responseRequest.js';
import type { RouteContext } from './router.js';

/** OpenAI's response error codes that Mariner's errors map to; anything else is a server_error. */
const RESPONSE_ERROR_CODES = new Set(['server_error', 'rate_limit_exceeded', 'invalid_prompt', 'vector_store_timeout']);

const serverSentEvent = (event: ResponseEvent) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

/** The chat stream's events of one write (whole events: lib/inferencePlane.ts), parsed; `[DONE]` left out. */
function chatEvents(text: string): JsonObject[] {
  const events: JsonObject[] = [];
  for (const block of text.split('\n\n')) {
    const data = block
      .split('\n')
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    if (data === '' || data === '[DONE]') continue;
    try {
      events.push(JSON.parse(data) as JsonObject);
    } catch {
      /* not an event of ours to read */
    }
  }
  return events;
}

export interface ResponseSinkOptions {
  res: ServerResponse;
  ctx: RouteContext;
  request: ResponseRequest;
  /** The file search done before generation, for its file_search_call item (null: none). */
  search: { queries: string[]; results: JsonObject[] } | null;
  /** The streams a stopping server ends (openStreams.ts). */
  streams: OpenStreams;
  /** Stores the finished (or failed) response with the request's input items: the responses subgraph's recordResponse. */
  record(response: JsonObject): Promise<void>;
  /** Called once the answer is written (or the client is gone). */
  done(): void;
}

/**
 * The data plane's sink for one response: the chat stream's events fed to a ResponseBuilder; for a
 * streaming client its events written as they come (after response.created, on the plane's start, so a
 * refusal is still an ordinary error answer), else the response object once finished. A refusal or
 * failure before the start is the same error answer a chat completion gets (rate-limit headers, Retry-After).
 */
export function responseSink({ res, ctx, request, search, streams, record, done }: ResponseSinkOptions): InferenceSink {
  const leaving = new AbortController();
  let events: ResponseEvent[] = [];
  const builder = new ResponseBuilder(request, request.stream ? (event) => events.push(event) : () => undefined);
  let rateLimit: InferenceRateLimit | null = null;
  let started = false;
  let ended = false;
  /** A runtime that answered JSON although asked to stream: its body, read whole. */
  let whole: Buffer[] | null = null;
  let forget: () => void = () => undefined;
  const finish = () => {
    if (ended) return;
    ended = true;
    forget();
    done();
  };
  res.once('close', () => {
    if (!res.writableFinished) leaving.abort();
    finish();
  });
  const flush = (): Promise<boolean> | boolean => {
    if (events.length === 0 || ended) return !ended;
    const bytes = Buffer.from(events.map(serverSentEvent).join(''));
    events = [];
    return writeOrWait(res, bytes);
  };
  const headers = () => ({ ...ctx.headers, ...rateLimitHeaders(rateLimit, false) });

  /** Stores the response when asked, then its last event (or the whole object); a failure to store is an error. */
  const complete = async (response: JsonObject) => {
    if (request.store) await record(response);
    if (ended) return;
    if (!request.stream) return void (sendJson(res, 200, response, headers()), finish());
    builder.end();
    await flush();
    res.end();
    finish();
  };
  const failed = (error: RestError) => {
    if (!request.stream || !started) return void (sendInferenceError(res, error, ctx, rateLimit), finish());
    const code = error.code && RESPONSE_ERROR_CODES.has(error.code) ? error.code : 'server_error';
    const response = builder.fail(code, error.message, error.param);
    // A stream that failed is stored as failed (when stored), so its id still answers.
    complete(response).catch(() => {
      void flush();
      res.end();
      finish();
    });
  };

  return {
    leaving: leaving.signal,
    start(contentType, state) {
      if (ended) return;
      started = true;
      rateLimit = state;
      if (!contentType.startsWith('text/event-stream')) whole = [];
      builder.begin();
      if (search) builder.fileSearch(search.queries, request.includeSearchResults ? search.results : null);
      if (!request.stream) return;
      res.writeHead(200, { ...headers(), 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.flushHeaders();
      forget = streams.add(async (error) => {
        if (ended) return;
        leaving.abort();
        builder.fail('server_error', error.message);
        builder.end();
        const bytes = events.map(serverSentEvent).join('');
        events = [];
        if (!res.writableEnded) res.end(bytes);
        finish();
        if (!res.writableFinished && !res.destroyed) await new Promise((resolve) => res.once('close', resolve).once('finish', resolve));
      });
      void flush();
    },
    write(bytes) {
      if (ended) return false;
      if (whole) {
        whole.push(bytes);
        return true;
      }
      for (const event of chatEvents(bytes.toString('utf8'))) {
        if (event['error']) {
          const error = event['error'] as { message?: unknown; code?: unknown };
          failed(
            new RestError(
              500,
              String(error.message ?? 'The runtime failed'),
              'server_error',
              null,
              typeof error.code === 'string' ? error.code : 'server_error',
            ),
          );
          return false;
        }
        builder.chunk(event);
      }
      return flush();
    },
    end() {
      if (ended) return;
      if (whole) {
        try {
          builder.chunk(chunkOfCompletion(JSON.parse(Buffer.concat(whole).toString('utf8')) as JsonObject));
        } catch {
          return failed(new RestError(502, 'The runtime answered a body that is not a chat completion', 'server_error', null, 'server_error'));
        }
      }
      complete(builder.finish()).catch((error: unknown) => {
        const restError =
          error instanceof RestError ? error : new RestError(500, `Internal error (request id ${ctx.requestId})`, 'server_error', null, 'server_error');
        if (!request.stream) return void (sendInferenceError(res, restError, ctx, rateLimit), finish());
        builder.fail('server_error', `The response could not be stored: ${restError.message}`);
        builder.end();
        void flush();
        res.end();
        finish();
      });
    },
    fail(error, state) {
      if (ended) return;
      rateLimit = state ?? rateLimit;
      failed(restErrorFromGraphQL({ message: error.message, extensions: { ...error } }));
    },
  };
}
