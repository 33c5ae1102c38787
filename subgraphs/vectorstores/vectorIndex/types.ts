/** How similarity is measured in a store's collection. */
export type Metric = 'cosine' | 'l2';

/** One chunk of a file with its embedding, as the ingestion writes it. */
export interface ChunkVector {
  fileId: string;
  chunkIndex: number;
  text: string;
  vector: readonly number[];
}

/** One search hit: the chunk, and how close it is to the query. */
export interface VectorHit {
  fileId: string;
  chunkIndex: number;
  text: string;
  /**
   * Similarity in [0, 1] as OpenAI's search results report it: cosine similarity clamped at 0
   * (identical vectors score 1), or 1 / (1 + distance) for L2. Hits come best first either way.
   */
  score: number;
}

export interface VectorSearchOptions {
  /** How many hits at most. */
  topK: number;
  /** Only chunks of these files (an attribute filter resolved to files); undefined: every file. */
  fileIds?: readonly string[] | undefined;
}

/**
 * Where a vector store's chunks and embeddings live: one collection per store (LLMariner §5: one
 * Milvus collection per vector store), created when the first embeddings tell the dimension. Every
 * write is idempotent per file (deleteFile then insert), which is what makes ingestion resumable.
 */
export interface VectorIndex {
  readonly kind: 'pgvector' | 'milvus';
  /** Creates the store's collection for `dimension`-sized vectors; a no-op when it exists. */
  createCollection(storeId: string, dimension: number, metric: Metric): Promise<void>;
  insert(storeId: string, metric: Metric, chunks: readonly ChunkVector[]): Promise<void>;
  /** Removes every chunk of a file (a no-op when the collection or the file has none). */
  deleteFile(storeId: string, fileId: string): Promise<void>;
  /** Removes the store's collection with everything in it (a no-op when there is none). */
  dropCollection(storeId: string): Promise<void>;
  /** The nearest chunks to `vector`, best first; none when the store has no collection yet. */
  search(storeId: string, metric: Metric, vector: readonly number[], options: VectorSearchOptions): Promise<VectorHit[]>;
  close(): Promise<void>;
}

/** The index could not be used as configured (no pgvector in the database, Milvus unreachable). */
export class VectorIndexUnavailableError extends Error {
  override name = 'VectorIndexUnavailableError';
}

/** OpenAI's 0..1 score from a backend's distance. */
export function scoreOf(metric: Metric, distance: number): number {
  if (metric === 'l2') return 1 / (1 + Math.max(0, distance));
  // Cosine distance is 1 - cosine similarity; float rounding can put identical vectors a hair off 1.
  return Math.min(1, Math.max(0, 1 - distance));
}
