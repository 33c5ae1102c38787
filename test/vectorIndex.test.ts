import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../lib/db.js';
import { loadConfig } from '../lib/config.js';
import { silentLogger } from '../lib/logging.js';
import { createMilvusIndex, createPgvectorIndex, openVectorIndex, VectorIndexUnavailableError, type VectorIndex } from '../subgraphs/vectorstores/index.js';
import { startMilvusDouble, type MilvusDouble } from './support/milvusDouble.js';
import { createTestDatabase, startTestPlatform } from './support/platform.js';

/**
 * One contract every vector index passes (subgraphs/vectorstores/vectorIndex/types.ts): pgvector on
 * embedded PGlite (the local PostgreSQL has no pgvector), and Milvus through the SDK against a gRPC
 * double built from the SDK's own protos (test/support/milvusDouble.ts says what that does not prove).
 */
const DIM = 8;

/** A vector pointing mostly along axis `i` (cosine neighbours are predictable). */
function axis(i: number, tilt = 0): number[] {
  const v = Array.from({ length: DIM }, () => 0.01);
  v[i % DIM] = 1;
  v[(i + 1) % DIM] = tilt;
  return v;
}

function contract(name: string, open: () => Promise<{ index: VectorIndex; close(): Promise<void> }>) {
  describe(`vector index contract: ${name}`, () => {
    let index: VectorIndex;
    let close: () => Promise<void>;
    const store = 'vs_contract1';
    beforeAll(async () => {
      ({ index, close } = await open());
    }, 60_000);
    afterAll(async () => {
      await index?.dropCollection(store).catch(() => undefined);
      await close?.();
    });

    it('a store without a collection has nothing, and its deletes are no-ops', async () => {
      expect(await index.search('vs_nothing', 'cosine', axis(0), { topK: 3 })).toEqual([]);
      await index.deleteFile('vs_nothing', 'file-a');
      await index.dropCollection('vs_nothing');
    });

    it('finds the nearest chunks first, with OpenAI scores, and honours the file filter', async () => {
      await index.createCollection(store, DIM, 'cosine');
      await index.createCollection(store, DIM, 'cosine'); // idempotent
      await index.insert(store, 'cosine', [
        { fileId: 'file-a', chunkIndex: 0, text: 'a0', vector: axis(0) },
        { fileId: 'file-a', chunkIndex: 1, text: 'a1', vector: axis(1) },
        { fileId: 'file-b', chunkIndex: 0, text: 'b0', vector: axis(0, 0.5) },
        { fileId: 'file-b', chunkIndex: 1, text: 'b1', vector: axis(4) },
      ]);
      const hits = await index.search(store, 'cosine', axis(0), { topK: 2 });
      expect(hits.map((h) => h.text)).toEqual(['a0', 'b0']);
      expect(hits[0]).toMatchObject({ fileId: 'file-a', chunkIndex: 0 });
      expect(hits[0]!.score).toBeCloseTo(1, 5);
      expect(hits[1]!.score).toBeLessThan(hits[0]!.score);
      expect(hits[1]!.score).toBeGreaterThan(0);
      const onlyB = await index.search(store, 'cosine', axis(0), { topK: 5, fileIds: ['file-b'] });
      expect(onlyB.map((h) => h.text)).toEqual(['b0', 'b1']);
      expect(await index.search(store, 'cosine', axis(0), { topK: 5, fileIds: [] })).toEqual([]);
    });

    it('deleting a file removes its chunks only; dropping the collection removes everything', async () => {
      await index.deleteFile(store, 'file-a');
      const hits = await index.search(store, 'cosine', axis(0), { topK: 10 });
      expect(hits.map((h) => h.fileId)).toEqual(['file-b', 'file-b']);
      await index.dropCollection(store);
      expect(await index.search(store, 'cosine', axis(0), { topK: 10 })).toEqual([]);
    });

    it('l2 stores rank by distance: identical vectors score 1', async () => {
      const l2 = 'vs_contractL2';
      await index.createCollection(l2, DIM, 'l2');
      await index.insert(l2, 'l2', [
        { fileId: 'file-a', chunkIndex: 0, text: 'near', vector: axis(2) },
        { fileId: 'file-a', chunkIndex: 1, text: 'far', vector: axis(2).map((x) => x * 3) },
      ]);
      const hits = await index.search(l2, 'l2', axis(2), { topK: 2 });
      expect(hits.map((h) => h.text)).toEqual(['near', 'far']);
      expect(hits[0]!.score).toBeCloseTo(1, 5);
      expect(hits[1]!.score).toBeCloseTo(1 / 3, 2); // distance 2 (the vector is 3× as long)
      await index.dropCollection(l2);
    });
  });
}

contract('pgvector (PGlite)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mariner-vindex-'));
  const db = await openDatabase({ dataDir: dir });
  return {
    index: (await createPgvectorIndex(db.knex, { required: true }))!,
    close: async () => {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

let double: MilvusDouble | undefined;
contract('Milvus (SDK 3.0.6 against a gRPC double from its protos)', async () => {
  double = await startMilvusDouble();
  const index = await createMilvusIndex({ address: double.address });
  return {
    index,
    close: async () => {
      await index.close();
      await double!.close();
    },
  };
});

describe('choosing an index', () => {
  it('the Milvus index spoke gRPC to the double: the calls the SDK made', () => {
    for (const call of ['CreateCollection', 'CreateIndex', 'LoadCollection', 'Insert', 'Search', 'Delete', 'DropCollection'])
      expect(double?.calls).toContain(call);
  });

  it('MARINER_VECTOR_INDEX picks the backend; milvus needs an address', async () => {
    expect(() => loadConfig({ MARINER_VECTOR_INDEX: 'milvus' })).toThrow(/MARINER_MILVUS_ADDRESS/);
    expect(() => loadConfig({ MARINER_VECTOR_INDEX: 'faiss' })).toThrow(/auto, pgvector or milvus/);
    const milvus = await startMilvusDouble();
    const dir = mkdtempSync(path.join(tmpdir(), 'mariner-vindex-'));
    const db = await openDatabase({ dataDir: dir });
    try {
      const fromConfig = await openVectorIndex(
        loadConfig({ MARINER_VECTOR_INDEX: 'milvus', MARINER_MILVUS_ADDRESS: milvus.address }).vectorStores,
        db,
        silentLogger(),
      );
      expect(fromConfig?.kind).toBe('milvus');
      await fromConfig!.close();
      const embedded = await openVectorIndex(loadConfig({}).vectorStores, db, silentLogger());
      expect(embedded?.kind).toBe('pgvector');
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
      await milvus.close();
    }
  });

  it('pgvector required on a PostgreSQL without the extension: a clear error at start', async () => {
    const database = await createTestDatabase();
    const db = await openDatabase({ databaseUrl: database.url, dataDir: tmpdir() });
    try {
      const available = await db.knex.raw(`select exists (select 1 from pg_available_extensions where name = 'vector') as ok`);
      if (available.rows[0].ok) return; // this server has pgvector: nothing to refuse
      await expect(createPgvectorIndex(db.knex, { required: true })).rejects.toBeInstanceOf(VectorIndexUnavailableError);
      await expect(createPgvectorIndex(db.knex, { required: true })).rejects.toThrow(/no pgvector extension.*MARINER_VECTOR_INDEX=milvus/);
      expect(await createPgvectorIndex(db.knex, { required: false })).toBeNull();
    } finally {
      await db.close();
      await database.drop();
    }
  });

  it('on a PostgreSQL without pgvector (auto) the platform runs; vector stores answer failed_precondition', async () => {
    const t = await startTestPlatform();
    try {
      const post = (body: unknown) =>
        fetch(`${t.url}/v1/vector_stores/${'vs_x'}/file_batches`, {
          method: 'POST',
          headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const created = await fetch(`${t.url}/v1/vector_stores`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'no-index' }),
      });
      expect(created.status).toBe(200);
      const store = (await created.json()) as { id: string };
      const search = await fetch(`${t.url}/v1/vector_stores/${store.id}/search`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'x' }),
      });
      expect(search.status).toBe(400);
      expect(((await search.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: 'failed_precondition',
        message: expect.stringContaining('pgvector'),
      });
      expect((await post({ file_ids: ['file-x'] })).status).toBe(404);
    } finally {
      await t.close();
    }
  });

  it('Milvus that cannot be reached: a clear error', async () => {
    await expect(createMilvusIndex({ address: '127.0.0.1:1' })).rejects.toBeInstanceOf(VectorIndexUnavailableError);
  });
});
