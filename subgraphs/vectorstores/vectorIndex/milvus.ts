import { DataType, ErrorCode, MilvusClient } from '@zilliz/milvus2-sdk-node';
import { scoreOf, VectorIndexUnavailableError, type ChunkVector, type Metric, type VectorHit, type VectorIndex, type VectorSearchOptions } from './types.js';

export interface MilvusOptions {
  /** host:port of Milvus' gRPC endpoint. */
  address: string;
  token?: string | undefined;
  database?: string | undefined;
  ssl?: boolean;
}

/** Milvus VarChar limit, in bytes: longer chunk texts are cut there (a 4096-token chunk can exceed it). */
const MAX_TEXT_BYTES = 65_535;
const INSERT_BATCH = 1000;
const METRIC: Record<Metric, string> = { cosine: 'COSINE', l2: 'L2' };

/** One collection per store (LLMariner §5), under a prefix so Mariner's collections are recognisable. */
function collectionOf(storeId: string): string {
  if (!/^vs_[A-Za-z0-9]{1,60}$/.test(storeId)) throw new Error(`not a vector store id: ${storeId}`);
  return `mariner_${storeId}`;
}

/** Mariner's ids are letters, digits, `-` and `_`: safe inside a Milvus string literal. */
function literal(id: string): string {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(id)) throw new Error(`not an id: ${id}`);
  return `"${id}"`;
}

function clip(text: string): string {
  const bytes = Buffer.from(text);
  return bytes.length <= MAX_TEXT_BYTES
    ? text
    : bytes
        .subarray(0, MAX_TEXT_BYTES)
        .toString('utf8')
        .replace(/\uFFFD$/, '');
}

/** The SDK answers failures with a status rather than throwing: make them errors. */
function check(status: { error_code?: string | number; reason?: string } | undefined, what: string): void {
  if (status && status.error_code !== undefined && status.error_code !== ErrorCode.SUCCESS) {
    throw new Error(`Milvus ${what}: ${status.error_code} ${status.reason ?? ''}`.trim());
  }
}

/**
 * Milvus (production, DESIGN §5): one collection per store with an auto-id primary key, the file id,
 * chunk index and text as scalar fields, and an HNSW index on the embedding for the store's metric
 * (LLMariner used IVF_FLAT with L2). Collections are loaded when created. Filters on file ids go to
 * Milvus as a boolean expression (`file_id in [...]`).
 */
export async function createMilvusIndex(options: MilvusOptions): Promise<VectorIndex> {
  const client = new MilvusClient({
    address: options.address,
    ...(options.token ? { token: options.token } : {}),
    ...(options.database ? { database: options.database } : {}),
    ssl: options.ssl ?? false,
    logLevel: 'error',
  });
  try {
    await client.connectPromise;
  } catch (error) {
    await client.closeConnection().catch(() => undefined);
    throw new VectorIndexUnavailableError(`Milvus at ${options.address} cannot be reached: ${(error as Error).message}`);
  }
  return new MilvusIndex(client);
}

class MilvusIndex implements VectorIndex {
  readonly kind = 'milvus' as const;

  constructor(private readonly client: MilvusClient) {}

  private async exists(collection_name: string): Promise<boolean> {
    const res = await this.client.hasCollection({ collection_name });
    check(res.status, 'hasCollection');
    return Boolean(res.value);
  }

  async createCollection(storeId: string, dimension: number, metric: Metric): Promise<void> {
    const collection_name = collectionOf(storeId);
    if (await this.exists(collection_name)) return;
    const created = await this.client.createCollection({
      collection_name,
      fields: [
        { name: 'id', data_type: DataType.Int64, is_primary_key: true, autoID: true },
        { name: 'file_id', data_type: DataType.VarChar, max_length: 128 },
        { name: 'chunk_index', data_type: DataType.Int64 },
        { name: 'text', data_type: DataType.VarChar, max_length: MAX_TEXT_BYTES },
        { name: 'embedding', data_type: DataType.FloatVector, dim: dimension },
      ],
    });
    // Another ingestion of the same store may have created it meanwhile: that one also indexes and loads it.
    if (created.error_code !== ErrorCode.SUCCESS && (await this.exists(collection_name))) return;
    check(created, 'createCollection');
    check(
      await this.client.createIndex({
        collection_name,
        field_name: 'embedding',
        index_type: 'HNSW',
        metric_type: METRIC[metric],
        params: { M: 16, efConstruction: 200 },
      }),
      'createIndex',
    );
    await this.client.loadCollectionSync({ collection_name });
  }

  async insert(storeId: string, _metric: Metric, chunks: readonly ChunkVector[]): Promise<void> {
    const collection_name = collectionOf(storeId);
    for (let i = 0; i < chunks.length; i += INSERT_BATCH) {
      const data = chunks
        .slice(i, i + INSERT_BATCH)
        .map((c) => ({ file_id: c.fileId, chunk_index: c.chunkIndex, text: clip(c.text), embedding: [...c.vector] }));
      const res = await this.client.insert({ collection_name, data });
      check(res.status, 'insert');
    }
  }

  async deleteFile(storeId: string, fileId: string): Promise<void> {
    const collection_name = collectionOf(storeId);
    if (!(await this.exists(collection_name))) return;
    const res = await this.client.delete({ collection_name, filter: `file_id == ${literal(fileId)}` });
    check(res.status, 'delete');
  }

  async dropCollection(storeId: string): Promise<void> {
    const collection_name = collectionOf(storeId);
    if (!(await this.exists(collection_name))) return;
    check(await this.client.dropCollection({ collection_name }), 'dropCollection');
  }

  async search(storeId: string, metric: Metric, vector: readonly number[], options: VectorSearchOptions): Promise<VectorHit[]> {
    const collection_name = collectionOf(storeId);
    if (options.fileIds && options.fileIds.length === 0) return [];
    if (!(await this.exists(collection_name))) return [];
    const res = await this.client.search({
      collection_name,
      data: [[...vector]],
      limit: options.topK,
      output_fields: ['file_id', 'chunk_index', 'text'],
      metric_type: METRIC[metric],
      params: { ef: Math.max(64, options.topK) },
      ...(options.fileIds ? { filter: `file_id in [${options.fileIds.map(literal).join(', ')}]` } : {}),
    });
    check(res.status, 'search');
    const rows = res.results as unknown as { score: number; file_id: string; chunk_index: number | string; text: string }[];
    return rows
      .map((r) => ({
        fileId: r.file_id,
        chunkIndex: Number(r.chunk_index),
        text: r.text,
        // Milvus reports cosine as a similarity and L2 as a squared distance.
        score: metric === 'cosine' ? scoreOf('cosine', 1 - r.score) : scoreOf('l2', Math.sqrt(Math.max(0, r.score))),
      }))
      .sort((a, b) => b.score - a.score);
  }

  async close(): Promise<void> {
    await this.client.closeConnection();
  }
}
