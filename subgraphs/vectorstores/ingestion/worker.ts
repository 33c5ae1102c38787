import { randomUUID } from 'node:crypto';
import { MarinerError } from '../../../lib/errors.js';
import type { Logger } from '../../../lib/logging.js';
import type { ObjectStore } from '../../../lib/objectStore/index.js';
import type { EmbeddingsClient } from '../clients.js';
import type { FileErrorCode, VectorStoreFileRow, VectorStoreStore } from '../store.js';
import type { ChunkVector, VectorIndex } from '../vectorIndex/types.js';
import { chunkText } from './chunking.js';
import { extractText, IngestionError } from './extract.js';

export interface IngestionOptions {
  store: VectorStoreStore;
  index: VectorIndex;
  objectStore: ObjectStore;
  embeddings: EmbeddingsClient;
  logger: Logger;
  /** Chunks per embeddings request. */
  batchSize: number;
  /** Files at once on this replica. */
  concurrency: number;
  leaseSeconds: number;
  /** Largest file the worker reads into memory to extract its text. */
  maxFileBytes?: number;
}

export interface IngestionWorker {
  /** Looks for work now (a file was just added). */
  wake(): void;
  /**
   * Stops claiming and abandons the files in hand where they are: they stay IN_PROGRESS and their
   * leases lapse, so another replica (or this one, restarted) ingests them again, as after a crash.
   */
  stop(): Promise<void>;
}

/** The most bytes of one file ingestion reads (and the file content route extracts), by default. */
export const DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024;

/** A file's bytes from the object store, at most `limit` (more is an invalid_file IngestionError). */
export async function readAll(stream: NodeJS.ReadableStream, limit: number, filename: string): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of stream as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > limit) throw new IngestionError('invalid_file', `${filename} is larger than the ${limit} bytes ingestion reads`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/** How a failure is reported on the file (OpenAI API: last_error.code). */
function failureOf(error: unknown): { code: FileErrorCode; message: string } {
  if (error instanceof IngestionError) return { code: error.code.toUpperCase() as FileErrorCode, message: error.message };
  // The runtime refused the text (too long for the model, say): the file's content is the problem.
  if (error instanceof MarinerError && error.code === 'BAD_USER_INPUT') return { code: 'INVALID_FILE', message: error.message };
  if (error instanceof MarinerError) return { code: 'SERVER_ERROR', message: error.message };
  return { code: 'SERVER_ERROR', message: `ingestion failed: ${(error as Error).message ?? String(error)}` };
}

/**
 * Ingests files in the background: extract text, chunk, embed in batches through the inference
 * subgraph, write the vectors, then mark the file COMPLETED (or FAILED with the reason).
 *
 * Resumable: a file is held by a lease this worker renews while it works. A worker that dies stops
 * renewing; once the lease lapses any replica (or this one, restarted) claims the file again and starts
 * it over, first deleting whatever vectors the dead attempt wrote. A file becomes COMPLETED only after
 * all its vectors are written, in one conditional update, so a half-indexed file is never counted as
 * completed, and searches skip files that are not COMPLETED.
 */
export function startIngestionWorker(options: IngestionOptions): IngestionWorker {
  const { store, index, logger } = options;
  const owner = `ingest-${randomUUID()}`;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  let running = 0;
  let stopped = false;
  let scanning = false;
  let rescan = false;
  const inFlight = new Set<Promise<void>>();
  const stopping = new AbortController();

  async function ingest(row: VectorStoreFileRow): Promise<void> {
    const caller = { requestId: `ingest:${row.vector_store_id}/${row.file_id}`, identity: row.ingest_identity };
    // Keep the lease while working; a cancelled or deleted file stops the work at the next beat.
    let lost = false;
    const renew = setInterval(
      () => {
        store
          .renewLease(row.vector_store_id, row.file_id, owner, options.leaseSeconds)
          .then((held) => {
            if (!held) lost = true;
          })
          .catch(() => undefined);
      },
      Math.max(500, (options.leaseSeconds * 1000) / 3),
    );
    const checkHeld = () => {
      if (stopping.signal.aborted) throw new Stopped();
      if (lost) throw new Abandoned();
    };
    try {
      const vectorStore = await store.storeById(row.vector_store_id);
      if (!vectorStore) return;
      // A previous attempt (a crashed worker) may have written some vectors: start clean.
      await index.deleteFile(row.vector_store_id, row.file_id);
      const bytes = await readAll(await options.objectStore.get(row.object_key), maxFileBytes, row.filename).catch((error) => {
        if (error instanceof IngestionError) throw error;
        throw new IngestionError('server_error', `${row.filename}: its bytes could not be read from the object store (${(error as Error).message})`);
      });
      const text = await extractText(row.filename, bytes);
      const chunks = chunkText(text, { maxChunkSizeTokens: row.max_chunk_size_tokens, chunkOverlapTokens: row.chunk_overlap_tokens });
      let dimension = vectorStore.dimension;
      let usageBytes = 0;
      for (let i = 0; i < chunks.length; i += options.batchSize) {
        checkHeld();
        const batch = chunks.slice(i, i + options.batchSize);
        const vectors = await options.embeddings.embed(caller, vectorStore.embedding_model, batch, stopping.signal);
        if (dimension === null) {
          dimension = (await store.settleDimension(vectorStore.id, vectors[0]!.length)) ?? vectors[0]!.length;
          await index.createCollection(vectorStore.id, dimension, vectorStore.metric);
        }
        if (vectors.some((v) => v.length !== dimension)) {
          throw new IngestionError(
            'server_error',
            `${vectorStore.embedding_model} returned ${vectors[0]!.length}-dimensional embeddings; this store holds ${dimension}-dimensional ones`,
          );
        }
        const rows: ChunkVector[] = batch.map((chunk, j) => ({ fileId: row.file_id, chunkIndex: i + j, text: chunk, vector: vectors[j]! }));
        checkHeld();
        await index.insert(vectorStore.id, vectorStore.metric, rows);
        usageBytes += batch.reduce((sum, chunk) => sum + Buffer.byteLength(chunk) + dimension! * 4, 0);
      }
      if (!(await store.finishFile(row.vector_store_id, row.file_id, owner, { status: 'COMPLETED', usageBytes, chunkCount: chunks.length })))
        throw new Abandoned();
    } catch (error) {
      // Stopping: leave the file IN_PROGRESS under its lapsing lease; whoever takes it over starts clean.
      if (stopping.signal.aborted) return;
      if (error instanceof Abandoned) return await cleanUpAbandoned(row);
      const failure = failureOf(error);
      if (failure.code === 'SERVER_ERROR')
        logger.warn({ err: (error as Error).message, vectorStoreId: row.vector_store_id, fileId: row.file_id }, 'ingestion failed');
      await index.deleteFile(row.vector_store_id, row.file_id).catch(() => undefined);
      if (!(await store.finishFile(row.vector_store_id, row.file_id, owner, { status: 'FAILED', ...failure }))) await cleanUpAbandoned(row);
    } finally {
      clearInterval(renew);
    }
  }

  /**
   * The file was cancelled, removed or its store deleted while this worker wrote vectors: remove
   * them, unless another worker has taken the file over (it starts by clearing them itself).
   */
  async function cleanUpAbandoned(row: VectorStoreFileRow): Promise<void> {
    const now = await store.file(row.vector_store_id, row.file_id);
    if (now && now.status === 'IN_PROGRESS' && now.lease_owner && now.lease_owner !== owner) return;
    if (!(await store.storeById(row.vector_store_id))) return void (await index.dropCollection(row.vector_store_id).catch(() => undefined));
    await index.deleteFile(row.vector_store_id, row.file_id).catch(() => undefined);
  }

  async function scan(): Promise<void> {
    if (scanning) {
      rescan = true;
      return;
    }
    scanning = true;
    try {
      do {
        rescan = false;
        while (!stopped && running < options.concurrency) {
          const row = await store.claimFile(owner, options.leaseSeconds);
          if (!row) break;
          running += 1;
          const work = ingest(row)
            .catch((error) => logger.error({ err: error, fileId: row.file_id }, 'ingestion crashed'))
            .finally(() => {
              running -= 1;
              inFlight.delete(work);
              if (!stopped) void scan();
            });
          inFlight.add(work);
        }
      } while (rescan && !stopped);
    } catch (error) {
      logger.warn({ err: (error as Error).message }, 'ingestion scan failed; retrying on the next tick');
    } finally {
      scanning = false;
    }
  }

  // Other replicas' files and lapsed leases show up without a wake-up: look again now and then.
  const tick = setInterval(() => void scan(), Math.max(1000, Math.min(5000, (options.leaseSeconds * 1000) / 2)));
  tick.unref();
  void scan();

  return {
    wake: () => void scan(),
    async stop() {
      stopped = true;
      clearInterval(tick);
      stopping.abort();
      await Promise.allSettled([...inFlight]);
    },
  };
}

/** The file stopped being this worker's to ingest. */
class Abandoned extends Error {}

/** The worker is stopping. */
class Stopped extends Error {}
