import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson, writeOrWait } from '../lib/http.js';
import { isId } from '../lib/ids.js';
import type { InferencePlane, InferenceRateLimit, InferenceSink } from '../lib/inferencePlane.js';
import { retrievedContext } from '../lib/retrievedContext.js';
import { RestError, restErrorFromGraphQL } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { rateLimitHeaders, sendInferenceError } from './inference.js';
import { readJsonBody, type JsonObject } from './json.js';
import { listParams, toList } from './lists.js';
import type { OpenStreams } from './openStreams.js';
import { ResponseBuilder, type ResponseEvent } from './responseEvents.js';
import { chatRequestOf, readResponseRequest, textOfItem, type ResponseItem, type ResponseRequest } from './responseRequest.js';
import type { RouteContext } from './router.js';

/**
 * OpenAI's Responses API (`/v1/responses`). A response is generated as a chat completion through the
 * gateway's inference data plane — the caller's own authentication, the policy rule of chat
 * completions, their rate limits and usage records — and its answer is translated as it streams
 * (responseEvents.ts). `previous_response_id` and `file_search` are resolved before it, through the
 * gateway as the caller: the responses subgraph's chain (same project only) and the vectorstores
 * subgraph's search (the caller's stores only). With `store` (the default) the finished response and its
 * input items are recorded in the responses subgraph, which serves retrieve, delete and input_items.
 */

const PREVIOUS = `query PreviousResponse($id: ID!) { response(id: $id) { conversation { item } } }`;
const SEARCH = `query FileSearch($input: SearchVectorStoreInput!) { searchVectorStore(input: $input) { results { fileId filename score attributes text } } }`;
const RECORD = `mutation RecordResponse($input: RecordResponseInput!) { recordResponse(input: $input) { id } }`;
const RETRIEVE = `query Response($id: ID!) { response(id: $id) { body } }`;
const DELETE = `mutation DeleteResponse($id: ID!) { deleteResponse(id: $id) { id deleted } }`;
const INPUT_ITEMS = `query ResponseInputItems($id: ID!, $after: String, $limit: Int, $order: SortOrder) {
  responseInputItems(responseId: $id, after: $after, limit: $limit, order: $order) { items { item } hasMore }
}`;

/** The user messages a file search asks with: the latest ones (as the rag tool does), each cut to its end. */
const SEARCH_QUERIES = 3;
const MAX_QUERY_CHARS = 2000;

/** OpenAI's response error codes that Mariner's errors map to; anything else is a server_error. */
const RESPONSE_ERROR_CODES = new Set(['server_error', 'rate_limit_exceeded', 'invalid_prompt', 'vector_store_timeout']);

interface SearchResult {
  fileId: string;
  filename: string;
  score: number;
  attributes: unknown;
  text: string;
}

/** What a file search found: the context for the prompt, and the file_search_call item's queries and results. */
interface FileSearchDone {
  context: string | null;
  queries: string[];
  results: JsonObject[];
}

const notFound = (id: string) => RestError.notFound(`Response with id '${id}' not found.`);

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

/** A whole (not streamed) chat completion, as the one chunk that carries all of it. */
function asChunk(completion: JsonObject): JsonObject {
  const choices = (completion['choices'] as { message?: JsonObject; finish_reason?: unknown }[] | undefined) ?? [];
  return {
    choices: choices.slice(0, 1).map((c) => ({
      delta: {
        content: c.message?.['content'] ?? null,
        tool_calls: ((c.message?.['tool_calls'] as JsonObject[] | undefined) ?? []).map((call, index) => ({ ...call, index })),
      },
      finish_reason: c.finish_reason ?? null,
    })),
    usage: completion['usage'] ?? null,
  };
}

export function responseRoutes({ gateway, inference, streams }: { gateway: GatewayClient; inference: InferencePlane; streams: OpenStreams }) {
  const call = routeGraphQL(gateway);

  /** The items of the chain a response continues; 404 when it is not a stored response of the caller's project. */
  async function conversationOf(req: IncomingMessage, ctx: RouteContext, id: string): Promise<JsonObject[]> {
    if (!isId('response', id)) throw notFound(id);
    const { response } = await call<{ response: { conversation: { item: JsonObject }[] } | null }>(req, ctx, PREVIOUS, { id });
    if (!response) throw notFound(id);
    return response.conversation.map((c) => c.item);
  }

  /** file_search: the caller's stores searched with the latest user messages, as the rag tool does; another project's store is a 404. */
  async function fileSearch(req: IncomingMessage, ctx: RouteContext, request: ResponseRequest, conversation: JsonObject[]): Promise<FileSearchDone> {
    const tool = request.fileSearch!;
    const queries = [...conversation, ...request.inputItems]
      .filter((item) => item['type'] === 'message' && item['role'] === 'user')
      .map((item) => textOfItem(item).trim().slice(-MAX_QUERY_CHARS))
      .filter(Boolean)
      .slice(-SEARCH_QUERIES);
    if (queries.length === 0) return { context: null, queries, results: [] };
    const found = await Promise.all(
      tool.vectorStoreIds.map(async (vectorStoreId) => {
        const input = { vectorStoreId, query: queries, maxNumResults: tool.maxNumResults, scoreThreshold: tool.scoreThreshold, filters: tool.filters };
        return (await call<{ searchVectorStore: { results: SearchResult[] } }>(req, ctx, SEARCH, { input })).searchVectorStore.results;
      }),
    );
    const best = found
      .flat()
      .sort((a, b) => b.score - a.score)
      .slice(0, tool.maxNumResults);
    const stores = tool.vectorStoreIds.map((id) => `"${id}"`).join(', ');
    return {
      context: best.length > 0 ? retrievedContext(`the vector store${tool.vectorStoreIds.length > 1 ? 's' : ''} ${stores}`, best) : null,
      queries,
      results: best.map((r) => ({ file_id: r.fileId, filename: r.filename, score: r.score, text: r.text, attributes: r.attributes ?? {} })),
    };
  }

  /** Records a finished response and its input items (store: true). */
  async function record(req: IncomingMessage, ctx: RouteContext, response: JsonObject, inputItems: ResponseItem[]): Promise<void> {
    await call(req, ctx, RECORD, { input: { response, inputItems } });
  }

  /**
   * The data plane's sink for one response: the chat stream's events fed to a ResponseBuilder; for a
   * streaming client its events written as they come (after response.created, on the plane's start, so a
   * refusal is still an ordinary error answer), else the response object once finished. A refusal or
   * failure before the start is the same error answer a chat completion gets (rate-limit headers, Retry-After).
   */
  function responseSink(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RouteContext,
    request: ResponseRequest,
    search: FileSearchDone | null,
    done: () => void,
  ): InferenceSink {
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
      if (request.store) await record(req, ctx, response, request.inputItems);
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
            builder.chunk(asChunk(JSON.parse(Buffer.concat(whole).toString('utf8')) as JsonObject));
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
        failed(restErrorFromGraphQL({ message: error.message, extensions: { code: error.code, ...(error.field ? { field: error.field } : {}) } }));
      },
    };
  }

  /** POST /v1/responses (OpenAI API: create a model response). */
  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const request = readResponseRequest(await readJsonBody(req));
    const conversation = request.previousResponseId ? await conversationOf(req, ctx, request.previousResponseId) : [];
    const search = request.fileSearch && request.toolChoice !== 'none' ? await fileSearch(req, ctx, request, conversation) : null;
    // OpenAI: instructions apply to this response only (a chained one does not inherit them).
    const system = [request.instructions, search?.context].filter((s): s is string => Boolean(s)).join('\n\n') || null;
    const chat = chatRequestOf(request, system, conversation);
    await new Promise<void>((resolve, reject) => {
      const sink = responseSink(req, res, ctx, request, search, resolve);
      inference.send(req, { kind: 'chat', request: chat, requestId: ctx.requestId }, sink).catch(reject);
    });
  }

  /** GET /v1/responses/{id} (OpenAI API: get a model response); a response not stored (store: false) is not found. */
  async function retrieve(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    if (!isId('response', id)) throw notFound(id);
    const { response } = await call<{ response: { body: JsonObject } | null }>(req, ctx, RETRIEVE, { id });
    if (!response) throw notFound(id);
    sendJson(res, 200, response.body, ctx.headers);
  }

  /** DELETE /v1/responses/{id} (OpenAI API: delete a model response). */
  async function remove(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    if (!isId('response', id)) throw notFound(id);
    const { deleteResponse } = await call<{ deleteResponse: { id: string; deleted: boolean } }>(req, ctx, DELETE, { id });
    sendJson(res, 200, { id: deleteResponse.id, object: 'response', deleted: deleteResponse.deleted }, ctx.headers);
  }

  /** GET /v1/responses/{id}/input_items (OpenAI API: list input items; newest first by default). */
  async function inputItems(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    if (!isId('response', id)) throw notFound(id);
    const { after, limit, order } = listParams(ctx.url, 'desc');
    const { responseInputItems: page } = await call<{ responseInputItems: { items: { item: JsonObject & { id: string } }[]; hasMore: boolean } }>(
      req,
      ctx,
      INPUT_ITEMS,
      { id, after, limit, order },
    );
    sendJson(
      res,
      200,
      toList(
        page.items.map((i) => i.item),
        page.hasMore,
      ),
      ctx.headers,
    );
  }

  return [
    { method: 'POST', path: '/v1/responses', handler: create },
    { method: 'GET', path: '/v1/responses/:id', handler: retrieve },
    { method: 'DELETE', path: '/v1/responses/:id', handler: remove },
    { method: 'GET', path: '/v1/responses/:id/input_items', handler: inputItems },
  ] as const;
}
