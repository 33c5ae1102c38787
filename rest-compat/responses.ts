import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { isId } from '../lib/ids.js';
import type { InferencePlane } from '../lib/inferencePlane.js';
import { retrievedContext } from '../lib/retrievedContext.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { readJsonBody, type JsonObject } from './json.js';
import { listParams, toList } from './lists.js';
import type { OpenStreams } from './openStreams.js';
import { MarinerError } from '../lib/errors.js';
import { chatRequestOf, readResponseRequest, textOfItem, type ResponseRequest } from '../lib/responseRequest.js';
import { responseSink } from './responseSink.js';
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

/** The request read and checked; bad input is a 400 naming the parameter. */
function checkedRequest(body: JsonObject): ResponseRequest {
  try {
    return readResponseRequest(body);
  } catch (error) {
    if (error instanceof MarinerError) throw RestError.badRequest(error.message, (error.extensions['field'] as string | undefined) ?? null);
    throw error;
  }
}

const notFound = (id: string) => RestError.notFound(`Response with id '${id}' not found.`);

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

  /** POST /v1/responses (OpenAI API: create a model response). */
  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const request = checkedRequest(await readJsonBody(req));
    const conversation = request.previousResponseId ? await conversationOf(req, ctx, request.previousResponseId) : [];
    const search = request.fileSearch && request.toolChoice !== 'none' ? await fileSearch(req, ctx, request, conversation) : null;
    // OpenAI: instructions apply to this response only (a chained one does not inherit them).
    const system = [request.instructions, search?.context].filter((s): s is string => Boolean(s)).join('\n\n') || null;
    const chat = chatRequestOf(request, system, conversation);
    await new Promise<void>((resolve, reject) => {
      const record = (response: JsonObject) => call(req, ctx, RECORD, { input: { response, inputItems: request.inputItems } }).then(() => undefined);
      const sink = responseSink({ res, ctx, request, search, streams, record, done: resolve });
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
