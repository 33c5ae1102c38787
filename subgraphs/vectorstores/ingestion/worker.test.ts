import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Database } from '../../../lib/db.js';
import type { Identity } from '../../../lib/identity.js';
import { silentLogger } from '../../../lib/logging.js';
import { createObjectStore, type ObjectStore } from '../../../lib/objectStore/index.js';
import type { EmbeddingsClient } from '../clients.js';
import { migrations } from '../migrations/index.js';
import { SCHEMA, VectorStoreStore } from '../store.js';
import { createPgvectorIndex, PGVECTOR_SCHEMA } from '../vectorIndex/pgvector.js';
import type { VectorIndex } from '../vectorIndex/types.js';
import { startIngestionWorker } from './worker.js';

/**
 * The worker's resumability with a real database (PGlite + pgvector) and object store (filesystem).
 * Embeddings come from a stand-in for the inference subgraph (a hash of the text), so a call can be
 * held open at will; the end-to-end path through the real inference subgraph is test/vectorStores.test.ts.
 */
const STORE = 'vs_workerTest';
const FILE = 'file-workerTest';
const identity = { principal: { userId: 'user-x' }, project: null } as unknown as Identity;

function vectorOf(text: string): number[] {
  const digest = createHash('sha256').update(text).digest();
  return Array.from({ length: 8 }, (_, i) => digest[i]! / 255 + 0.01);
}

const embeddings: EmbeddingsClient = { embed: async (_caller, _model, inputs) => inputs.map(vectorOf) };

describe('ingestion worker', () => {
  let dir: string;
  let db: Database;
  let store: VectorStoreStore;
  let index: VectorIndex;
  let objectStore: ObjectStore;
  const paragraphs = Array.from({ length: 10 }, (_, i) => `Paragraph ${i}: ${'tide and wind '.repeat(25)}`);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-worker-'));
    db = await openDatabase({ dataDir: dir });
    await migrate(db.knex, SCHEMA, migrations);
    store = new VectorStoreStore(db.knex);
    index = (await createPgvectorIndex(db.knex, { required: true }))!;
    objectStore = await createObjectStore({ driver: 'filesystem', dir: path.join(dir, 'objects') });
    await objectStore.put('files/t/p/doc', Readable.from([Buffer.from(paragraphs.join('\n\n'))]));
    await store.insertStore({
      id: STORE,
      tenant_id: 't',
      organization_id: 'o',
      project_id: 'p',
      name: 'w',
      embedding_model: 'm',
      metric: 'cosine',
      metadata: {},
      expires_after_days: null,
    });
  }, 60_000);
  afterAll(async () => {
    await objectStore?.close();
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const row = () => store.file(STORE, FILE);
  const vectors = async () =>
    (await db.knex.withSchema(PGVECTOR_SCHEMA).from(STORE).where({ file_id: FILE }).select('chunk_index')).map((r) => r.chunk_index as number);

  it('a worker stopped mid-file leaves it IN_PROGRESS; the next one takes it over when the lease lapses and completes it, every chunk once', async () => {
    await store.upsertFiles([
      {
        vector_store_id: STORE,
        file_id: FILE,
        filename: 'doc.md',
        object_key: 'files/t/p/doc',
        max_chunk_size_tokens: 100,
        chunk_overlap_tokens: 0,
        attributes: null,
        batch_id: null,
        ingest_identity: identity,
      },
    ]);
    // The first worker embeds one batch, then its second embeddings call hangs until the worker stops.
    let calls = 0;
    let hanging!: () => void;
    const hung = new Promise<void>((resolve) => (hanging = resolve));
    const stalling: EmbeddingsClient = {
      embed: (caller, model, inputs, signal) => {
        calls += 1;
        if (calls === 1) return embeddings.embed(caller, model, inputs);
        hanging();
        return new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
      },
    };
    const first = startIngestionWorker({
      store,
      index,
      objectStore,
      embeddings: stalling,
      logger: silentLogger(),
      batchSize: 3,
      concurrency: 1,
      leaseSeconds: 2,
    });
    first.wake();
    await hung;
    expect(await vectors()).toEqual([0, 1, 2]);
    await first.stop();
    const left = await row();
    expect(left).toMatchObject({ status: 'IN_PROGRESS', attempts: 1 });
    expect(left!.lease_owner).toBeTruthy();

    const second = startIngestionWorker({ store, index, objectStore, embeddings, logger: silentLogger(), batchSize: 3, concurrency: 1, leaseSeconds: 2 });
    try {
      // Its lease is live for up to 2 s: the second worker's periodic look finds it once it lapses.
      const deadline = Date.now() + 15_000;
      while ((await row())!.status === 'IN_PROGRESS' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      const done = await row();
      expect(done).toMatchObject({ status: 'COMPLETED', attempts: 2, lease_owner: null });
      const written = (await vectors()).sort((a, b) => a - b);
      expect(written).toEqual(Array.from({ length: done!.chunk_count }, (_, i) => i));
      expect(done!.chunk_count).toBeGreaterThan(3);
    } finally {
      await second.stop();
    }
  });
});
