import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { isJsonObject, readJsonBody } from './json.js';
import { listParams, toList } from './lists.js';
import type { RouteContext } from './router.js';

/**
 * OpenAI vector store routes (OpenAI API: vector stores, vector store files, file batches, search),
 * each translated to the vectorstores subgraph's operations on the gateway. LLMariner lacks file
 * batches and search (§5); they are here.
 */

const COUNTS = 'inProgress completed failed cancelled total';
const STORE_FIELDS = `id name createdAt usageBytes status expiresAt lastActiveAt metadata embeddingModel fileCounts { ${COUNTS} } expiresAfter { anchor days }`;
const FILE_FIELDS =
  'id vectorStoreId createdAt status usageBytes attributes lastError { code message } chunkingStrategy { maxChunkSizeTokens chunkOverlapTokens }';
const BATCH_FIELDS = `id vectorStoreId createdAt status fileCounts { ${COUNTS} }`;

interface Counts {
  inProgress: number;
  completed: number;
  failed: number;
  cancelled: number;
  total: number;
}

interface GraphQLStore {
  id: string;
  name: string;
  createdAt: string;
  usageBytes: number;
  status: string;
  expiresAt: string | null;
  lastActiveAt: string | null;
  metadata: Record<string, string>;
  embeddingModel: string;
  fileCounts: Counts;
  expiresAfter: { anchor: string; days: number } | null;
}

interface GraphQLFile {
  id: string;
  vectorStoreId: string;
  createdAt: string;
  status: string;
  usageBytes: number;
  attributes: Record<string, unknown> | null;
  lastError: { code: string; message: string } | null;
  chunkingStrategy: { maxChunkSizeTokens: number; chunkOverlapTokens: number };
}

interface GraphQLBatch {
  id: string;
  vectorStoreId: string;
  createdAt: string;
  status: string;
  fileCounts: Counts;
}

const counts = (c: Counts) => ({ in_progress: c.inProgress, completed: c.completed, failed: c.failed, cancelled: c.cancelled, total: c.total });

/** OpenAI API: the vector store object (with Mariner's `embedding_model` besides). */
function toVectorStore(s: GraphQLStore) {
  return {
    id: s.id,
    object: 'vector_store' as const,
    created_at: unixSeconds(s.createdAt),
    name: s.name,
    usage_bytes: s.usageBytes,
    file_counts: counts(s.fileCounts),
    status: s.status.toLowerCase(),
    ...(s.expiresAfter ? { expires_after: s.expiresAfter } : {}),
    expires_at: unixSeconds(s.expiresAt, null),
    last_active_at: unixSeconds(s.lastActiveAt, null),
    metadata: s.metadata,
    embedding_model: s.embeddingModel,
  };
}

/** OpenAI API: the vector store file object. */
function toVectorStoreFile(f: GraphQLFile) {
  return {
    id: f.id,
    object: 'vector_store.file' as const,
    usage_bytes: f.usageBytes,
    created_at: unixSeconds(f.createdAt),
    vector_store_id: f.vectorStoreId,
    status: f.status.toLowerCase(),
    last_error: f.lastError ? { code: f.lastError.code.toLowerCase(), message: f.lastError.message } : null,
    chunking_strategy: {
      type: 'static' as const,
      static: { max_chunk_size_tokens: f.chunkingStrategy.maxChunkSizeTokens, chunk_overlap_tokens: f.chunkingStrategy.chunkOverlapTokens },
    },
    attributes: f.attributes ?? {},
  };
}

/** OpenAI API: the vector store file batch object (its `object` is `vector_store.files_batch`). */
function toBatch(b: GraphQLBatch) {
  return {
    id: b.id,
    object: 'vector_store.files_batch' as const,
    created_at: unixSeconds(b.createdAt),
    vector_store_id: b.vectorStoreId,
    status: b.status.toLowerCase(),
    file_counts: counts(b.fileCounts),
  };
}

/** OpenAI `chunking_strategy` → the GraphQL input (sizes checked by the subgraph). */
function chunkingInput(value: unknown): Record<string, unknown> | null {
  if (value === undefined || value === null) return null;
  if (!isJsonObject(value)) throw RestError.badRequest('chunking_strategy must be an object', 'chunking_strategy');
  const v = value;
  if (typeof v['type'] !== 'string') throw RestError.badRequest("chunking_strategy.type must be 'auto' or 'static'", 'chunking_strategy.type');
  if (v['type'] !== 'static') return { type: v['type'] };
  const s = v['static'];
  if (typeof s !== 'object' || s === null)
    throw RestError.badRequest('chunking_strategy.static is required for the static strategy', 'chunking_strategy.static');
  const sizes = s as Record<string, unknown>;
  return { type: 'static', maxChunkSizeTokens: sizes['max_chunk_size_tokens'] ?? null, chunkOverlapTokens: sizes['chunk_overlap_tokens'] ?? null };
}

function expiresAfterInput(value: unknown): Record<string, unknown> | null {
  if (value === null) return null;
  if (!isJsonObject(value)) throw RestError.badRequest('expires_after must be an object {anchor, days}', 'expires_after');
  const v = value;
  return { anchor: v['anchor'], days: v['days'] };
}

function stringIds(value: unknown, param: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw RestError.badRequest(`${param} must be an array of file ids`, param);
  return value as string[];
}

function statusFilter(url: URL): string | null {
  const filter = url.searchParams.get('filter');
  if (filter === null) return null;
  if (!['in_progress', 'completed', 'failed', 'cancelled'].includes(filter)) {
    throw RestError.badRequest('filter must be in_progress, completed, failed or cancelled', 'filter');
  }
  return filter.toUpperCase();
}

export function vectorStoreRoutes({ gateway }: { gateway: GatewayClient }) {
  const call = <T>(req: IncomingMessage, ctx: RouteContext, query: string, variables: Record<string, unknown> = {}) =>
    gateway.request<T>(req, ctx.requestId, query, variables);

  async function storeOrThrow(req: IncomingMessage, ctx: RouteContext, id: string): Promise<GraphQLStore> {
    const { vectorStore } = await call<{ vectorStore: GraphQLStore | null }>(
      req,
      ctx,
      `query VectorStore($id: ID!) { vectorStore(id: $id) { ${STORE_FIELDS} } }`,
      { id },
    );
    if (!vectorStore) throw RestError.notFound(`No vector store found with id '${id}'.`);
    return vectorStore;
  }

  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    const input: Record<string, unknown> = {};
    if (body['name'] !== undefined && body['name'] !== null) {
      if (typeof body['name'] !== 'string') throw RestError.badRequest('name must be a string', 'name');
      input['name'] = body['name'];
    }
    if (body['file_ids'] !== undefined) input['fileIds'] = stringIds(body['file_ids'], 'file_ids');
    if (body['expires_after'] !== undefined && body['expires_after'] !== null) input['expiresAfter'] = expiresAfterInput(body['expires_after']);
    if (body['chunking_strategy'] !== undefined) input['chunkingStrategy'] = chunkingInput(body['chunking_strategy']);
    if (body['metadata'] !== undefined) input['metadata'] = body['metadata'];
    // Mariner: the store's embedding model (default: the platform's).
    if (body['embedding_model'] !== undefined) {
      if (typeof body['embedding_model'] !== 'string') throw RestError.badRequest('embedding_model must be a model id', 'embedding_model');
      input['embeddingModel'] = body['embedding_model'];
    }
    const { createVectorStore } = await call<{ createVectorStore: GraphQLStore }>(
      req,
      ctx,
      `mutation CreateVectorStore($input: CreateVectorStoreInput!) { createVectorStore(input: $input) { ${STORE_FIELDS} } }`,
      { input },
    );
    sendJson(res, 200, toVectorStore(createVectorStore), ctx.headers);
  }

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const params = listParams(ctx.url, 'desc');
    const { vectorStores } = await call<{ vectorStores: { items: GraphQLStore[]; hasMore: boolean } }>(
      req,
      ctx,
      `query VectorStores($after: String, $limit: Int, $order: SortOrder) { vectorStores(after: $after, limit: $limit, order: $order) { items { ${STORE_FIELDS} } hasMore } }`,
      params,
    );
    sendJson(res, 200, toList(vectorStores.items.map(toVectorStore), vectorStores.hasMore), ctx.headers);
  }

  async function retrieve(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    sendJson(res, 200, toVectorStore(await storeOrThrow(req, ctx, ctx.params['id']!)), ctx.headers);
  }

  /** POST /v1/vector_stores/{id} (OpenAI: modify): name, expires_after (null removes it), metadata. */
  async function update(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    const input: Record<string, unknown> = { id: ctx.params['id'] };
    if (body['name'] !== undefined && body['name'] !== null) {
      if (typeof body['name'] !== 'string') throw RestError.badRequest('name must be a string', 'name');
      input['name'] = body['name'];
    }
    if (body['expires_after'] !== undefined) input['expiresAfter'] = expiresAfterInput(body['expires_after']);
    if (body['metadata'] !== undefined && body['metadata'] !== null) input['metadata'] = body['metadata'];
    const { updateVectorStore } = await call<{ updateVectorStore: GraphQLStore }>(
      req,
      ctx,
      `mutation UpdateVectorStore($input: UpdateVectorStoreInput!) { updateVectorStore(input: $input) { ${STORE_FIELDS} } }`,
      { input },
    );
    sendJson(res, 200, toVectorStore(updateVectorStore), ctx.headers);
  }

  async function remove(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    await call(req, ctx, `mutation DeleteVectorStore($id: ID!) { deleteVectorStore(id: $id) { deleted } }`, { id });
    sendJson(res, 200, { id, object: 'vector_store.deleted', deleted: true }, ctx.headers);
  }

  async function addFile(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    if (typeof body['file_id'] !== 'string' || !body['file_id']) throw RestError.badRequest("Missing required parameter: 'file_id'", 'file_id');
    const { createVectorStoreFile } = await call<{ createVectorStoreFile: GraphQLFile }>(
      req,
      ctx,
      `mutation CreateVectorStoreFile($input: CreateVectorStoreFileInput!) { createVectorStoreFile(input: $input) { ${FILE_FIELDS} } }`,
      {
        input: {
          vectorStoreId: ctx.params['id'],
          fileId: body['file_id'],
          chunkingStrategy: chunkingInput(body['chunking_strategy']),
          attributes: body['attributes'] ?? null,
        },
      },
    );
    sendJson(res, 200, toVectorStoreFile(createVectorStoreFile), ctx.headers);
  }

  async function listFiles(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const params = listParams(ctx.url, 'desc');
    const { vectorStoreFiles } = await call<{ vectorStoreFiles: { items: GraphQLFile[]; hasMore: boolean } }>(
      req,
      ctx,
      `query VectorStoreFiles($vectorStoreId: ID!, $status: VectorStoreFileStatus, $after: String, $limit: Int, $order: SortOrder) {
        vectorStoreFiles(vectorStoreId: $vectorStoreId, status: $status, after: $after, limit: $limit, order: $order) { items { ${FILE_FIELDS} } hasMore } }`,
      { ...params, vectorStoreId: ctx.params['id'], status: statusFilter(ctx.url) },
    );
    sendJson(res, 200, toList(vectorStoreFiles.items.map(toVectorStoreFile), vectorStoreFiles.hasMore), ctx.headers);
  }

  async function retrieveFile(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { vectorStoreFile } = await call<{ vectorStoreFile: GraphQLFile | null }>(
      req,
      ctx,
      `query VectorStoreFile($vectorStoreId: ID!, $fileId: ID!) { vectorStoreFile(vectorStoreId: $vectorStoreId, fileId: $fileId) { ${FILE_FIELDS} } }`,
      { vectorStoreId: ctx.params['id'], fileId: ctx.params['file_id'] },
    );
    if (!vectorStoreFile) throw RestError.notFound(`No file found with id '${ctx.params['file_id']}' in vector store '${ctx.params['id']}'.`);
    sendJson(res, 200, toVectorStoreFile(vectorStoreFile), ctx.headers);
  }

  /**
   * GET /v1/vector_stores/{id}/files/{file_id}/content (OpenAI: retrieve vector store file content): the
   * text extracted from the file, one page; empty until the file is completed.
   */
  async function fileContent(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { vectorStoreFile } = await call<{ vectorStoreFile: { content: string | null } | null }>(
      req,
      ctx,
      `query VectorStoreFileContent($vectorStoreId: ID!, $fileId: ID!) { vectorStoreFile(vectorStoreId: $vectorStoreId, fileId: $fileId) { content } }`,
      { vectorStoreId: ctx.params['id'], fileId: ctx.params['file_id'] },
    );
    if (!vectorStoreFile) throw RestError.notFound(`No file found with id '${ctx.params['file_id']}' in vector store '${ctx.params['id']}'.`);
    const data = vectorStoreFile.content === null ? [] : [{ type: 'text', text: vectorStoreFile.content }];
    sendJson(res, 200, { object: 'vector_store.file_content.page', data, has_more: false, next_page: null }, ctx.headers);
  }

  /** POST /v1/vector_stores/{id}/files/{file_id} (OpenAI: update vector store file attributes). */
  async function updateFile(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    if (!('attributes' in body)) throw RestError.badRequest("Missing required parameter: 'attributes'", 'attributes');
    const { updateVectorStoreFileAttributes } = await call<{ updateVectorStoreFileAttributes: GraphQLFile }>(
      req,
      ctx,
      `mutation UpdateAttributes($vectorStoreId: ID!, $fileId: ID!, $attributes: JSON) { updateVectorStoreFileAttributes(vectorStoreId: $vectorStoreId, fileId: $fileId, attributes: $attributes) { ${FILE_FIELDS} } }`,
      { vectorStoreId: ctx.params['id'], fileId: ctx.params['file_id'], attributes: body['attributes'] ?? null },
    );
    sendJson(res, 200, toVectorStoreFile(updateVectorStoreFileAttributes), ctx.headers);
  }

  async function removeFile(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const fileId = ctx.params['file_id']!;
    await call(
      req,
      ctx,
      `mutation DeleteVectorStoreFile($vectorStoreId: ID!, $fileId: ID!) { deleteVectorStoreFile(vectorStoreId: $vectorStoreId, fileId: $fileId) { deleted } }`,
      {
        vectorStoreId: ctx.params['id'],
        fileId,
      },
    );
    sendJson(res, 200, { id: fileId, object: 'vector_store.file.deleted', deleted: true }, ctx.headers);
  }

  /** POST /v1/vector_stores/{id}/file_batches: `file_ids`, or OpenAI's `files` (per-file settings, same for all here). */
  async function createBatch(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    let fileIds: string[];
    let chunking = chunkingInput(body['chunking_strategy']);
    let attributes = body['attributes'] ?? null;
    if (body['file_ids'] !== undefined && body['files'] !== undefined) throw RestError.badRequest('file_ids and files are mutually exclusive', 'files');
    if (body['files'] !== undefined) {
      const files = body['files'];
      if (!Array.isArray(files) || files.length === 0) throw RestError.badRequest('files must be a non-empty array', 'files');
      // One batch, one setting: per-file chunking or attributes must agree (Mariner stores them per file, set per batch).
      const first = files[0] as Record<string, unknown>;
      const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
      if (!files.every((f) => typeof f === 'object' && f && typeof (f as Record<string, unknown>)['file_id'] === 'string'))
        throw RestError.badRequest('files[].file_id is required', 'files');
      if (
        !files.every(
          (f) =>
            same((f as Record<string, unknown>)['chunking_strategy'], first['chunking_strategy']) &&
            same((f as Record<string, unknown>)['attributes'], first['attributes']),
        )
      ) {
        throw RestError.badRequest('files: every entry must have the same chunking_strategy and attributes here; send one batch per setting', 'files');
      }
      fileIds = files.map((f) => (f as Record<string, string>)['file_id']!);
      chunking = chunkingInput(first['chunking_strategy']);
      attributes = first['attributes'] ?? null;
    } else {
      fileIds = stringIds(body['file_ids'], 'file_ids');
    }
    const { createVectorStoreFileBatch } = await call<{ createVectorStoreFileBatch: GraphQLBatch }>(
      req,
      ctx,
      `mutation CreateBatch($input: CreateVectorStoreFileBatchInput!) { createVectorStoreFileBatch(input: $input) { ${BATCH_FIELDS} } }`,
      { input: { vectorStoreId: ctx.params['id'], fileIds, chunkingStrategy: chunking, attributes } },
    );
    sendJson(res, 200, toBatch(createVectorStoreFileBatch), ctx.headers);
  }

  async function retrieveBatch(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { vectorStoreFileBatch } = await call<{ vectorStoreFileBatch: GraphQLBatch | null }>(
      req,
      ctx,
      `query Batch($vectorStoreId: ID!, $batchId: ID!) { vectorStoreFileBatch(vectorStoreId: $vectorStoreId, batchId: $batchId) { ${BATCH_FIELDS} } }`,
      { vectorStoreId: ctx.params['id'], batchId: ctx.params['batch_id'] },
    );
    if (!vectorStoreFileBatch) throw RestError.notFound(`No file batch found with id '${ctx.params['batch_id']}'.`);
    sendJson(res, 200, toBatch(vectorStoreFileBatch), ctx.headers);
  }

  async function cancelBatch(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { cancelVectorStoreFileBatch } = await call<{ cancelVectorStoreFileBatch: GraphQLBatch }>(
      req,
      ctx,
      `mutation CancelBatch($vectorStoreId: ID!, $batchId: ID!) { cancelVectorStoreFileBatch(vectorStoreId: $vectorStoreId, batchId: $batchId) { ${BATCH_FIELDS} } }`,
      { vectorStoreId: ctx.params['id'], batchId: ctx.params['batch_id'] },
    );
    sendJson(res, 200, toBatch(cancelVectorStoreFileBatch), ctx.headers);
  }

  async function listBatchFiles(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const params = listParams(ctx.url, 'desc');
    const { vectorStoreFileBatchFiles: page } = await call<{ vectorStoreFileBatchFiles: { items: GraphQLFile[]; hasMore: boolean } }>(
      req,
      ctx,
      `query BatchFiles($vectorStoreId: ID!, $batchId: ID!, $status: VectorStoreFileStatus, $after: String, $limit: Int, $order: SortOrder) {
        vectorStoreFileBatchFiles(vectorStoreId: $vectorStoreId, batchId: $batchId, status: $status, after: $after, limit: $limit, order: $order) { items { ${FILE_FIELDS} } hasMore } }`,
      { ...params, vectorStoreId: ctx.params['id'], batchId: ctx.params['batch_id'], status: statusFilter(ctx.url) },
    );
    sendJson(res, 200, toList(page.items.map(toVectorStoreFile), page.hasMore), ctx.headers);
  }

  /** POST /v1/vector_stores/{id}/search (OpenAI API: search vector store). */
  async function search(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    const query = body['query'];
    const queries = typeof query === 'string' ? [query] : query;
    if (!Array.isArray(queries) || queries.length === 0 || !queries.every((q) => typeof q === 'string')) {
      throw RestError.badRequest("Missing required parameter: 'query' (a string or an array of strings)", 'query');
    }
    const ranking = body['ranking_options'];
    if (ranking !== undefined && !isJsonObject(ranking)) throw RestError.badRequest('ranking_options must be an object', 'ranking_options');
    const threshold = (ranking as Record<string, unknown> | undefined)?.['score_threshold'];
    if (threshold !== undefined && typeof threshold !== 'number')
      throw RestError.badRequest('ranking_options.score_threshold must be a number', 'ranking_options.score_threshold');
    const max = body['max_num_results'];
    if (max !== undefined && typeof max !== 'number') throw RestError.badRequest('max_num_results must be an integer', 'max_num_results');
    const { searchVectorStore } = await call<{
      searchVectorStore: {
        searchQuery: string[];
        results: { fileId: string; filename: string; score: number; attributes: Record<string, unknown> | null; text: string }[];
      };
    }>(
      req,
      ctx,
      `query Search($input: SearchVectorStoreInput!) { searchVectorStore(input: $input) { searchQuery results { fileId filename score attributes text } } }`,
      {
        input: {
          vectorStoreId: ctx.params['id'],
          query: queries,
          maxNumResults: max ?? null,
          scoreThreshold: threshold ?? null,
          filters: body['filters'] ?? null,
        },
      },
    );
    sendJson(
      res,
      200,
      {
        object: 'vector_store.search_results.page',
        search_query: searchVectorStore.searchQuery,
        data: searchVectorStore.results.map((r) => ({
          file_id: r.fileId,
          filename: r.filename,
          score: r.score,
          attributes: r.attributes ?? {},
          content: [{ type: 'text', text: r.text }],
        })),
        has_more: false,
        next_page: null,
      },
      ctx.headers,
    );
  }

  return [
    { method: 'POST', path: '/v1/vector_stores', handler: create },
    { method: 'GET', path: '/v1/vector_stores', handler: list },
    { method: 'GET', path: '/v1/vector_stores/:id', handler: retrieve },
    { method: 'POST', path: '/v1/vector_stores/:id', handler: update },
    { method: 'DELETE', path: '/v1/vector_stores/:id', handler: remove },
    { method: 'POST', path: '/v1/vector_stores/:id/files', handler: addFile },
    { method: 'GET', path: '/v1/vector_stores/:id/files', handler: listFiles },
    { method: 'GET', path: '/v1/vector_stores/:id/files/:file_id', handler: retrieveFile },
    { method: 'POST', path: '/v1/vector_stores/:id/files/:file_id', handler: updateFile },
    { method: 'DELETE', path: '/v1/vector_stores/:id/files/:file_id', handler: removeFile },
    { method: 'GET', path: '/v1/vector_stores/:id/files/:file_id/content', handler: fileContent },
    { method: 'POST', path: '/v1/vector_stores/:id/file_batches', handler: createBatch },
    { method: 'GET', path: '/v1/vector_stores/:id/file_batches/:batch_id', handler: retrieveBatch },
    { method: 'POST', path: '/v1/vector_stores/:id/file_batches/:batch_id/cancel', handler: cancelBatch },
    { method: 'GET', path: '/v1/vector_stores/:id/file_batches/:batch_id/files', handler: listBatchFiles },
    { method: 'POST', path: '/v1/vector_stores/:id/search', handler: search },
  ] as const;
}
