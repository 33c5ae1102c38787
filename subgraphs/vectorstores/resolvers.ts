import { badInput, conflict, failedPrecondition, notFound } from '../../lib/errors.js';
import { isUniqueViolation } from '../../lib/db.js';
import { assertId, newId } from '../../lib/ids.js';
import { projectScopeOf } from '../../lib/identity.js';
import type { VectorStoresContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import { chunkingStrategyOf, type ChunkingStrategy } from './ingestion/chunking.js';
import { extractText, IngestionError } from './ingestion/extract.js';
import { DEFAULT_MAX_FILE_BYTES, readAll } from './ingestion/worker.js';
import { JSONScalar } from '../../schema/scalars.js';
import type { BatchRow, FileStatusValue, ProjectScope, VectorStoreFileRow, VectorStoreRow } from './store.js';
import { matchesFilter, validAttributes, validExpiration, validFilter, validMetadata, validName, type Attributes } from './validation.js';
import type { VectorHit } from './vectorIndex/types.js';

const iso = (d: Date) => d.toISOString();
const DAY_MS = 24 * 3600 * 1000;

const scopeOf = (ctx: VectorStoresContext): ProjectScope => projectScopeOf(ctx.identity);

/** OpenAI API limits: 500 files at store creation, 2000 in a batch; search returns 1 to 50 results. */
const MAX_CREATE_FILES = 500;
const MAX_BATCH_FILES = 2000;
const DEFAULT_RESULTS = 10;
const MAX_RESULTS = 50;
const MAX_QUERIES = 10;
const MAX_QUERY_LENGTH = 16_000;

function expiresAt(store: VectorStoreRow): Date | null {
  return store.expires_after_days === null ? null : new Date(store.last_active_at.getTime() + store.expires_after_days * DAY_MS);
}

async function storeOrThrow(ctx: VectorStoresContext, id: string): Promise<VectorStoreRow> {
  const store = await ctx.store.store(scopeOf(ctx), assertId('vectorStore', id, 'vectorStoreId'));
  if (!store) throw notFound('vector store', id);
  return store;
}

function requireIndex(ctx: VectorStoresContext) {
  if (!ctx.index) {
    throw failedPrecondition(
      'No vector index: this platform runs on a PostgreSQL without the pgvector extension. Install pgvector, or set MARINER_VECTOR_INDEX=milvus with MARINER_MILVUS_ADDRESS',
    );
  }
  return ctx.index;
}

/**
 * Checks every file before anything is written: each must be a File of the caller's project (the
 * files subgraph answers as the caller), so a bad id changes nothing.
 */
async function filesToAdd(
  ctx: VectorStoresContext,
  store: VectorStoreRow,
  fileIds: readonly string[],
  chunking: ChunkingStrategy,
  attributes: Attributes | null,
  batchId: string | null,
): Promise<Parameters<VectorStoresContext['store']['upsertFiles']>[0]> {
  const unique = [...new Set(fileIds.map((id, i) => assertId('file', id, `fileIds[${i}]`)))];
  const files = await Promise.all(unique.map((id) => ctx.files.file(ctx, id)));
  return files.map((file, i) => {
    if (!file) throw notFound('file', unique[i]!);
    return {
      vector_store_id: store.id,
      file_id: file.id,
      filename: file.filename,
      object_key: file.objectKey,
      max_chunk_size_tokens: chunking.maxChunkSizeTokens,
      chunk_overlap_tokens: chunking.chunkOverlapTokens,
      attributes,
      batch_id: batchId,
      ingest_identity: ctx.identity!,
    };
  });
}

async function addFiles(ctx: VectorStoresContext, rows: Parameters<VectorStoresContext['store']['upsertFiles']>[0]): Promise<VectorStoreFileRow[]> {
  requireIndex(ctx);
  const added = await ctx.store.upsertFiles(rows);
  ctx.ingestion?.wake();
  return added;
}

/** The files an attribute filter lets through, or undefined for no filter. */
async function filteredFileIds(ctx: VectorStoresContext, store: VectorStoreRow, filters: unknown): Promise<string[] | undefined> {
  if (filters === null || filters === undefined) return undefined;
  const filter = validFilter(filters);
  const files = await ctx.store.completedFiles(store.id);
  return files.filter((f) => matchesFilter(filter, f.attributes)).map((f) => f.file_id);
}

export const resolvers: Resolvers<VectorStoresContext> = {
  JSON: JSONScalar,
  Query: {
    vectorStores: (_p, { after, limit, order }, ctx) => ctx.store.listStores(scopeOf(ctx), { after, limit, order: order === 'ASC' ? 'asc' : 'desc' }),
    vectorStore: async (_p, { id }, ctx) => (await ctx.store.store(scopeOf(ctx), assertId('vectorStore', id, 'id'))) ?? null,
    vectorStoreByName: async (_p, { name }, ctx) => (await ctx.store.storeByName(scopeOf(ctx), name)) ?? null,
    vectorStoreFiles: async (_p, { vectorStoreId, status, after, limit, order }, ctx) => {
      const store = await storeOrThrow(ctx, vectorStoreId);
      return ctx.store.listFiles(store.id, { status: status as FileStatusValue | null }, { after, limit, order: order === 'ASC' ? 'asc' : 'desc' });
    },
    vectorStoreFile: async (_p, { vectorStoreId, fileId }, ctx) => {
      const store = await storeOrThrow(ctx, vectorStoreId);
      return (await ctx.store.file(store.id, assertId('file', fileId, 'fileId'))) ?? null;
    },
    vectorStoreFileBatch: async (_p, { vectorStoreId, batchId }, ctx) => {
      const store = await storeOrThrow(ctx, vectorStoreId);
      return (await ctx.store.batch(store.id, assertId('vectorStoreFileBatch', batchId, 'batchId'))) ?? null;
    },
    vectorStoreFileBatchFiles: async (_p, { vectorStoreId, batchId, status, after, limit, order }, ctx) => {
      const store = await storeOrThrow(ctx, vectorStoreId);
      const batch = await ctx.store.batch(store.id, assertId('vectorStoreFileBatch', batchId, 'batchId'));
      if (!batch) throw notFound('vector store file batch', batchId);
      return ctx.store.listFiles(
        store.id,
        { status: status as FileStatusValue | null, batchId: batch.id },
        { after, limit, order: order === 'ASC' ? 'asc' : 'desc' },
      );
    },
    searchVectorStore: async (_p, { input }, ctx) => {
      let store: VectorStoreRow | undefined;
      if (input.vectorStoreId) store = await storeOrThrow(ctx, input.vectorStoreId);
      else if (input.vectorStoreName) {
        store = await ctx.store.storeByName(scopeOf(ctx), input.vectorStoreName);
        if (!store) throw notFound('vector store named', input.vectorStoreName);
      } else throw badInput('give vectorStoreId or vectorStoreName', 'vectorStoreId');
      const queries = input.query.map((q) => q.trim()).filter(Boolean);
      if (queries.length === 0 || queries.length > MAX_QUERIES) throw badInput(`query: 1 to ${MAX_QUERIES} non-empty queries`, 'query');
      if (queries.some((q) => q.length > MAX_QUERY_LENGTH)) throw badInput(`query: each at most ${MAX_QUERY_LENGTH} characters`, 'query');
      const maxResults = input.maxNumResults ?? DEFAULT_RESULTS;
      if (!Number.isInteger(maxResults) || maxResults < 1 || maxResults > MAX_RESULTS)
        throw badInput(`maxNumResults must be from 1 to ${MAX_RESULTS}`, 'maxNumResults');
      const threshold = input.scoreThreshold ?? 0;
      if (!(threshold >= 0 && threshold <= 1)) throw badInput('scoreThreshold must be from 0 to 1', 'scoreThreshold');
      const fileIds = await filteredFileIds(ctx, store, input.filters);
      const exp = expiresAt(store);
      if (exp && exp.getTime() < Date.now()) throw failedPrecondition(`vector store ${store.id} has expired`);
      const index = requireIndex(ctx);
      await ctx.store.touchStore(store.id);
      if (store.dimension === null || (fileIds && fileIds.length === 0)) return { searchQuery: queries, results: [] };
      const vectors = await ctx.embeddings.embed(ctx, store.embedding_model, queries);
      // Each chunk counts once, with its best score over the queries.
      const best = new Map<string, VectorHit>();
      for (const vector of vectors) {
        for (const hit of await index.search(store.id, store.metric, vector, { topK: maxResults, fileIds })) {
          const key = `${hit.fileId}/${hit.chunkIndex}`;
          if ((best.get(key)?.score ?? -1) < hit.score) best.set(key, hit);
        }
      }
      // Only files COMPLETED now: a file being re-ingested, removed or cancelled has no results.
      const hits = [...best.values()].filter((h) => h.score >= threshold);
      const files = new Map((await ctx.store.filesByIds(store.id, [...new Set(hits.map((h) => h.fileId))])).map((f) => [f.file_id, f]));
      const results = hits
        .filter((h) => files.get(h.fileId)?.status === 'COMPLETED')
        .sort((a, b) => b.score - a.score)
        .slice(0, maxResults)
        .map((h) => {
          const file = files.get(h.fileId)!;
          return { fileId: h.fileId, filename: file.filename, score: h.score, attributes: file.attributes, chunkIndex: h.chunkIndex, text: h.text };
        });
      return { searchQuery: queries, results };
    },
  },
  Mutation: {
    createVectorStore: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const id = newId('vectorStore');
      const name = input.name == null ? id : validName(input.name);
      const metadata = validMetadata(input.metadata);
      const days = input.expiresAfter ? validExpiration(input.expiresAfter) : null;
      const chunking = chunkingStrategyOf(input.chunkingStrategy);
      const embeddingModel = input.embeddingModel == null ? ctx.settings.defaultEmbeddingModel : input.embeddingModel.trim();
      if (!embeddingModel || embeddingModel.length > 256) throw badInput('embeddingModel must be a model id', 'embeddingModel');
      const fileIds = input.fileIds ?? [];
      if (fileIds.length > MAX_CREATE_FILES) throw badInput(`fileIds: at most ${MAX_CREATE_FILES} files; add more with a file batch`, 'fileIds');
      if (fileIds.length) requireIndex(ctx);
      const row = {
        id,
        tenant_id: scope.tenantId,
        organization_id: scope.organizationId,
        project_id: scope.projectId,
        name,
        embedding_model: embeddingModel,
        metric: ctx.settings.metric,
        metadata,
        expires_after_days: days,
      };
      const files = await filesToAdd(ctx, { ...row, dimension: null, created_at: new Date(), last_active_at: new Date() }, fileIds, chunking, null, null);
      let store: VectorStoreRow;
      try {
        store = await ctx.store.insertStore(row);
      } catch (error) {
        if (isUniqueViolation(error)) throw conflict(`A vector store named "${name}" already exists in this project`);
        throw error;
      }
      if (files.length) await addFiles(ctx, files);
      return store;
    },
    updateVectorStore: async (_p, { input }, ctx) => {
      await storeOrThrow(ctx, input.id);
      const patch: { name?: string; metadata?: Record<string, string>; expires_after_days?: number | null } = {};
      if (input.name != null) patch.name = validName(input.name);
      if (input.metadata !== undefined) patch.metadata = validMetadata(input.metadata);
      if (input.expiresAfter !== undefined) patch.expires_after_days = input.expiresAfter === null ? null : validExpiration(input.expiresAfter);
      try {
        const updated = await ctx.store.updateStore(scopeOf(ctx), input.id, patch);
        if (!updated) throw notFound('vector store', input.id);
        return updated;
      } catch (error) {
        if (isUniqueViolation(error)) throw conflict(`A vector store named "${patch.name}" already exists in this project`);
        throw error;
      }
    },
    deleteVectorStore: async (_p, { id }, ctx) => {
      const store = await ctx.store.deleteStore(scopeOf(ctx), assertId('vectorStore', id, 'id'));
      if (!store) throw notFound('vector store', id);
      await ctx.index?.dropCollection(store.id);
      return { id, deleted: true };
    },
    createVectorStoreFile: async (_p, { input }, ctx) => {
      const store = await storeOrThrow(ctx, input.vectorStoreId);
      const chunking = chunkingStrategyOf(input.chunkingStrategy);
      const attributes = validAttributes(input.attributes);
      const [added] = await addFiles(ctx, await filesToAdd(ctx, store, [input.fileId], chunking, attributes, null));
      return added!;
    },
    updateVectorStoreFileAttributes: async (_p, { vectorStoreId, fileId, attributes }, ctx) => {
      const store = await storeOrThrow(ctx, vectorStoreId);
      const updated = await ctx.store.updateAttributes(store.id, assertId('file', fileId, 'fileId'), validAttributes(attributes));
      if (!updated) throw notFound('vector store file', fileId);
      return updated;
    },
    deleteVectorStoreFile: async (_p, { vectorStoreId, fileId }, ctx) => {
      const store = await storeOrThrow(ctx, vectorStoreId);
      const removed = await ctx.store.deleteFile(store.id, assertId('file', fileId, 'fileId'));
      if (!removed) throw notFound('vector store file', fileId);
      // The row is gone first, so searches already skip the file; a worker mid-way cleans up after itself.
      await ctx.index?.deleteFile(store.id, fileId);
      return { id: fileId, deleted: true };
    },
    createVectorStoreFileBatch: async (_p, { input }, ctx) => {
      const store = await storeOrThrow(ctx, input.vectorStoreId);
      if (input.fileIds.length === 0 || input.fileIds.length > MAX_BATCH_FILES) throw badInput(`fileIds: 1 to ${MAX_BATCH_FILES} files`, 'fileIds');
      const chunking = chunkingStrategyOf(input.chunkingStrategy);
      const attributes = validAttributes(input.attributes);
      requireIndex(ctx);
      const id = newId('vectorStoreFileBatch');
      const files = await filesToAdd(ctx, store, input.fileIds, chunking, attributes, id);
      const batch = await ctx.store.insertBatch({ id, vector_store_id: store.id });
      await addFiles(ctx, files);
      return batch;
    },
    cancelVectorStoreFileBatch: async (_p, { vectorStoreId, batchId }, ctx) => {
      const store = await storeOrThrow(ctx, vectorStoreId);
      const batch = await ctx.store.cancelBatch(store.id, assertId('vectorStoreFileBatch', batchId, 'batchId'));
      if (!batch) throw notFound('vector store file batch', batchId);
      return batch;
    },
  },
  VectorStore: {
    __resolveReference: async (ref, ctx) => (await ctx.store.store(scopeOf(ctx), ref.id)) ?? null,
    createdAt: (s) => iso(s.created_at),
    usageBytes: async (s, _a, ctx) => (await ctx.loaders.counts.load(s.id)).usageBytes,
    fileCounts: (s, _a, ctx) => ctx.loaders.counts.load(s.id),
    status: async (s, _a, ctx) => {
      const exp = expiresAt(s);
      if (exp && exp.getTime() < Date.now()) return 'EXPIRED';
      return (await ctx.loaders.counts.load(s.id)).inProgress > 0 ? 'IN_PROGRESS' : 'COMPLETED';
    },
    expiresAfter: (s) => (s.expires_after_days === null ? null : { anchor: 'last_active_at', days: s.expires_after_days }),
    expiresAt: (s) => {
      const exp = expiresAt(s);
      return exp ? iso(exp) : null;
    },
    lastActiveAt: (s) => iso(s.last_active_at),
    embeddingModel: (s) => s.embedding_model,
    projectId: (s) => s.project_id,
  },
  VectorStoreFile: {
    id: (f) => f.file_id,
    vectorStoreId: (f) => f.vector_store_id,
    createdAt: (f) => iso(f.created_at),
    usageBytes: (f) => f.usage_bytes,
    chunkCount: (f) => f.chunk_count,
    lastError: (f) => (f.last_error_code ? { code: f.last_error_code, message: f.last_error_message ?? '' } : null),
    chunkingStrategy: (f) => ({ type: 'static', maxChunkSizeTokens: f.max_chunk_size_tokens, chunkOverlapTokens: f.chunk_overlap_tokens }),
    batchId: (f) => f.batch_id,
    // OpenAI's file content: the text ingestion cut the chunks from, extracted again from the File's bytes.
    content: async (f, _a, ctx) => {
      if (f.status !== 'COMPLETED') return null;
      try {
        return await extractText(f.filename, await readAll(await ctx.objectStore.get(f.object_key), DEFAULT_MAX_FILE_BYTES, f.filename));
      } catch (error) {
        if (error instanceof IngestionError) throw failedPrecondition(`${f.filename}: ${error.message}`);
        throw error;
      }
    },
  },
  VectorStoreFileBatch: {
    vectorStoreId: (b: BatchRow) => b.vector_store_id,
    createdAt: (b) => iso(b.created_at),
    fileCounts: (b, _a, ctx) => ctx.store.batchCounts(b.id),
    status: async (b, _a, ctx) => {
      if (b.cancelled) return 'CANCELLED';
      const counts = await ctx.store.batchCounts(b.id);
      if (counts.inProgress > 0) return 'IN_PROGRESS';
      // OpenAI: a batch whose every file failed has failed; otherwise it completed (failures counted).
      return counts.total > 0 && counts.failed === counts.total ? 'FAILED' : 'COMPLETED';
    },
  },
};
