import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import type { RuntimeHost } from '../agent/executor.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { loadConfig } from '../lib/config.js';
import { silentLogger } from '../lib/logging.js';
import { PGVECTOR_SCHEMA } from '../subgraphs/vectorstores/index.js';
import { minimalPdf } from './support/minimalPdf.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { writeTinyGguf } from './support/tinyGguf.js';

/**
 * Vector stores end to end with the OpenAI SDK, on the embedded platform (PGlite with pgvector: the
 * local PostgreSQL has no pgvector), embeddings from the tiny GGUF model through the real inference path.
 *
 * What the search assertions can and cannot show: the tiny model has random weights, so its embeddings
 * carry no meaning and "similar" texts are not close. They are deterministic, though: a query that is
 * exactly a chunk's text embeds to the same vector, cosine similarity 1.0. So the planted sentence is
 * alone in its file (one chunk) and the query is that sentence: ranking it first at score ~1 proves
 * extraction → chunking → embedding → index → ranking → mapping back to file and text, not retrieval
 * quality.
 */

const MODEL = 'tiny-embed';
const PLANTED = 'The lighthouse keeper hides the spare key under the blue whale statue.';
const PDF_LINE = 'Invoices from the harbour office are paid within thirty days.';

/** Many paragraphs: several chunks at 100 tokens (400 characters) each. */
function manual(): string {
  const paragraphs: string[] = [];
  for (let i = 0; i < 12; i++) {
    paragraphs.push(
      `Section ${i}. The tide table for pier ${i} lists high water at ${i}:00 and low water at ${i + 6}:30. Boats moor on the east side when the wind blows from the west, and fishing nets dry on rack ${i}.`,
    );
  }
  return paragraphs.join('\n\n');
}

describe('vector stores through the OpenAI SDK', () => {
  let t: TestPlatform;
  let agent: Agent;
  let sdk: OpenAI;
  let dir: string;
  /** Chat request bodies as the runtime received them (the RAG test reads them). */
  const received: Record<string, unknown>[] = [];
  /** The number of inputs of each embeddings request the runtime received. */
  const embeddingBatches: number[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-vs-'));
    const ggufPath = path.join(dir, 'tiny.gguf');
    // A longer context than the default 512 tokens: the rag tool's context goes into the prompt.
    writeTinyGguf(ggufPath, { contextLength: 4096 });
    t = await startTestPlatform({
      embedded: true,
      // A short lease, so a file left by a "crashed" worker is taken over within the test.
      config: { vectorStores: { ...loadConfig({}).vectorStores, defaultEmbeddingModel: MODEL, ingestionLeaseSeconds: 2 } },
    });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "local" }) { registrationKey } }');
    const executor = await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') });
    const runtimes = executor.runtimes!;
    // The runtime's own view of each chat request: the body as it reaches the runtime's HTTP server.
    const tapped: RuntimeHost = {
      ...runtimes,
      reconcile: (models) => runtimes.reconcile(models),
      status: () => runtimes.status(),
      close: () => runtimes.close(),
      forward(modelId, req, res, runtimePath) {
        if (runtimePath.endsWith('/chat/completions') || runtimePath.endsWith('/embeddings')) {
          const parts: Buffer[] = [];
          req.on('data', (part: Buffer) => parts.push(part));
          req.on('end', () => {
            const body = JSON.parse(Buffer.concat(parts).toString('utf8'));
            if (runtimePath.endsWith('/embeddings')) embeddingBatches.push(Array.isArray(body.input) ? body.input.length : 1);
            else received.push(body);
          });
        }
        runtimes.forward(modelId, req, res, runtimePath);
      },
    };
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: { ...executor, runtimes: tapped },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await loadedModelFromFile(t, {
      id: MODEL,
      weights: readFileSync(ggufPath),
      registrationKey: registerCluster.registrationKey,
      input: { isProjectScoped: false },
    });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
  }, 180_000);

  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const upload = async (name: string, content: string | Buffer) => sdk.files.create({ file: await toFile(Buffer.from(content), name), purpose: 'assistants' });
  const small = { type: 'static' as const, static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 50 } };
  const poll = { pollIntervalMs: 50 };

  let storeId: string;
  let plantedId: string;

  it('creates a store from uploaded files, ingests them in the background, and finds the planted sentence first', async () => {
    const planted = await upload('planted.txt', `${PLANTED}\n`);
    const doc = await upload('manual.md', `# Harbour manual\n\n${manual()}`);
    const page = await upload(
      'page.html',
      `<html><head><style>p{}</style><script>var x = 1;</script></head><body><h1>Harbour</h1><p>Ferries leave at dawn &amp; dusk.</p></body></html>`,
    );
    plantedId = planted.id;
    const store = await sdk.vectorStores.create({
      name: 'harbour',
      file_ids: [planted.id, doc.id, page.id],
      chunking_strategy: small,
      metadata: { team: 'docs' },
    });
    expect(store).toMatchObject({ object: 'vector_store', name: 'harbour', metadata: { team: 'docs' } });
    expect(store.file_counts.total).toBe(3);
    storeId = store.id;
    for (const id of [planted.id, doc.id, page.id]) {
      const file = await sdk.vectorStores.files.poll(storeId, id, poll);
      expect(file.status, JSON.stringify(file.last_error)).toBe('completed');
    }
    const done = await sdk.vectorStores.retrieve(storeId);
    expect(done.status).toBe('completed');
    expect(done.file_counts).toEqual({ in_progress: 0, completed: 3, failed: 0, cancelled: 0, total: 3 });
    expect(done.usage_bytes).toBeGreaterThan(0);
    const spec = loadOpenApiValidator();
    expectValid(spec.validateSchema('VectorStoreObject', done));
    expectValid(spec.validateSchema('VectorStoreFileObject', await sdk.vectorStores.files.retrieve(doc.id, { vector_store_id: storeId })));

    const raw = await fetch(`${t.url}/v1/vector_stores/${storeId}/search`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: PLANTED, max_num_results: 5 }),
    });
    expect(raw.status).toBe(200);
    const page1 = await raw.json();
    expectValid(spec.validateResponse('post', '/v1/vector_stores/{vector_store_id}/search', 200, page1));
    const results = (await sdk.vectorStores.search(storeId, { query: PLANTED, max_num_results: 5 })).data;
    expect(results.length).toBeGreaterThan(1);
    expect(results[0]).toMatchObject({ file_id: planted.id, filename: 'planted.txt', content: [{ type: 'text', text: PLANTED }] });
    expect(results[0]!.score).toBeGreaterThan(0.999);
    expect(results[1]!.score).toBeLessThan(results[0]!.score);
    // The manual was cut into several overlapping chunks of at most 400 characters.
    const manualFile = (await sdk.vectorStores.files.list(storeId)).data.find((f) => f.id === doc.id)!;
    expect(manualFile.chunking_strategy).toEqual(small);
    const chunks = await t.platform.db.knex.withSchema(PGVECTOR_SCHEMA).from(storeId).where({ file_id: doc.id }).select('text');
    expect(chunks.length).toBeGreaterThan(4);
    // Embedded in batches (MARINER_EMBEDDING_BATCH_SIZE, 32), not a request per chunk.
    expect(Math.max(...embeddingBatches)).toBe(chunks.length);
    for (const c of chunks) expect(c.text.length).toBeLessThanOrEqual(400);
    // HTML: text only, no script or style.
    const html = await t.platform.db.knex.withSchema(PGVECTOR_SCHEMA).from(storeId).where({ file_id: page.id }).first('text');
    expect(html.text).toContain('Ferries leave at dawn & dusk.');
    expect(html.text).not.toContain('var x');
  });

  it("a file's content is the text extracted from it, in OpenAI's page shape; another organization gets 404", async () => {
    const spec = loadOpenApiValidator();
    const raw = await fetch(`${t.url}/v1/vector_stores/${storeId}/files/${plantedId}/content`, { headers: { authorization: `Bearer ${t.adminKey}` } });
    expect(raw.status).toBe(200);
    const body = await raw.json();
    expectValid(spec.validateResponse('get', '/v1/vector_stores/{vector_store_id}/files/{file_id}/content', 200, body));
    expect(body).toEqual({
      object: 'vector_store.file_content.page',
      data: [{ type: 'text', text: expect.stringContaining(PLANTED) }],
      has_more: false,
      next_page: null,
    });

    // The SDK's pager reads it; HTML comes back as its text, without script or style.
    const texts: string[] = [];
    for (const file of (await sdk.vectorStores.files.list(storeId)).data) {
      for await (const part of sdk.vectorStores.files.content(file.id, { vector_store_id: storeId })) texts.push(part.text ?? '');
    }
    expect(texts.some((text) => text.includes('Ferries leave at dawn & dusk.') && !text.includes('var x'))).toBe(true);
    expect(texts.some((text) => text.startsWith('# Harbour manual'))).toBe(true);

    await expect(sdk.vectorStores.files.content('file-doesnotexist000000000', { vector_store_id: storeId }).then((p) => p.data)).rejects.toMatchObject({
      status: 404,
    });
    const other = await projectWithKey(t, 'vs-content-outsider');
    const outsider = await fetch(`${t.url}/v1/vector_stores/${storeId}/files/${plantedId}/content`, { headers: { authorization: `Bearer ${other.key}` } });
    expect(outsider.status).toBe(404);
    const error = await outsider.json();
    expectValid(spec.validateSchema('ErrorResponse', error));
    expect(JSON.stringify(error)).not.toContain(PLANTED);
  });

  it('a score threshold and attribute filters narrow the results', async () => {
    const tagged = await upload('tagged.txt', 'Gulls nest on the breakwater every spring.');
    await sdk.vectorStores.files.createAndPoll(storeId, { file_id: tagged.id, attributes: { kind: 'birds', year: 2024 } }, poll);
    const all = (await sdk.vectorStores.search(storeId, { query: 'Gulls nest on the breakwater every spring.', max_num_results: 10 })).data;
    expect(all[0]).toMatchObject({ file_id: tagged.id, attributes: { kind: 'birds', year: 2024 } });
    const onlyBirds = (await sdk.vectorStores.search(storeId, { query: PLANTED, filters: { type: 'eq', key: 'kind', value: 'birds' } })).data;
    expect(onlyBirds.map((r) => r.file_id)).toEqual([tagged.id]);
    const notBirds = (
      await sdk.vectorStores.search(storeId, { query: PLANTED, filters: { type: 'and', filters: [{ type: 'ne', key: 'kind', value: 'birds' }] } })
    ).data;
    expect(notBirds.some((r) => r.file_id === tagged.id)).toBe(false);
    const recent = (await sdk.vectorStores.search(storeId, { query: PLANTED, filters: { type: 'gte', key: 'year', value: 2025 } })).data;
    expect(recent).toEqual([]);
    // New attributes apply to the next search, with no re-ingestion.
    const updated = await sdk.vectorStores.files.update(tagged.id, { vector_store_id: storeId, attributes: { kind: 'birds', year: 2025 } });
    expect(updated).toMatchObject({ status: 'completed', attributes: { year: 2025 } });
    expect((await sdk.vectorStores.search(storeId, { query: PLANTED, filters: { type: 'gte', key: 'year', value: 2025 } })).data.map((r) => r.file_id)).toEqual(
      [tagged.id],
    );
    const sure = (await sdk.vectorStores.search(storeId, { query: PLANTED, ranking_options: { score_threshold: 0.999 } })).data;
    expect(sure.map((r) => r.file_id)).toEqual([plantedId]);
    await sdk.vectorStores.files.delete(tagged.id, { vector_store_id: storeId });
  });

  it('deleting a file from the store removes its hits', async () => {
    const before = await t.platform.db.knex.withSchema(PGVECTOR_SCHEMA).from(storeId).where({ file_id: plantedId }).count({ n: '*' });
    expect(Number(before[0]!.n)).toBe(1);
    const deleted = await sdk.vectorStores.files.delete(plantedId, { vector_store_id: storeId });
    expect(deleted).toMatchObject({ id: plantedId, deleted: true });
    const results = (await sdk.vectorStores.search(storeId, { query: PLANTED, max_num_results: 50 })).data;
    expect(results.length).toBeGreaterThan(0);
    expect(results.some((r) => r.file_id === plantedId)).toBe(false);
    const after = await t.platform.db.knex.withSchema(PGVECTOR_SCHEMA).from(storeId).where({ file_id: plantedId }).count({ n: '*' });
    expect(Number(after[0]!.n)).toBe(0);
    expect((await sdk.vectorStores.retrieve(storeId)).file_counts.total).toBe(2);
    // The File itself stays.
    expect((await sdk.files.retrieve(plantedId)).id).toBe(plantedId);
  });

  it('a file batch with one bad file: the batch reports one failed, the others completed', async () => {
    const good = await upload('good.txt', 'Lobster pots are checked at sunrise.');
    const pdf = await upload('invoice.pdf', minimalPdf([PDF_LINE]));
    const broken = await upload('broken.pdf', 'this is not a PDF at all');
    const batch = await sdk.vectorStores.fileBatches.createAndPoll(storeId, { file_ids: [good.id, pdf.id, broken.id], chunking_strategy: small }, poll);
    expect(batch.object).toBe('vector_store.files_batch');
    expect(batch.status).toBe('completed');
    expect(batch.file_counts).toEqual({ in_progress: 0, completed: 2, failed: 1, cancelled: 0, total: 3 });
    expectValid(loadOpenApiValidator().validateSchema('VectorStoreFileBatchObject', batch));
    const failed = (await sdk.vectorStores.fileBatches.listFiles(batch.id, { vector_store_id: storeId, filter: 'failed' })).data;
    expect(failed.map((f) => f.id)).toEqual([broken.id]);
    expect(failed[0]!.last_error).toMatchObject({ code: 'invalid_file', message: expect.stringContaining('broken.pdf') });
    // The PDF's text was extracted and is found.
    const hits = (await sdk.vectorStores.search(storeId, { query: PDF_LINE })).data;
    expect(hits[0]).toMatchObject({ file_id: pdf.id, content: [{ text: PDF_LINE }] });
    expect(hits[0]!.score).toBeGreaterThan(0.999);
    // An unsupported kind of file fails with unsupported_file.
    const image = await upload('photo.png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    const file = await sdk.vectorStores.files.createAndPoll(storeId, { file_id: image.id }, poll);
    expect(file.status).toBe('failed');
    expect(file.last_error?.code).toBe('unsupported_file');
  });

  it('cancelling a batch: its files end completed or cancelled, and cancelled ones hold no vectors', async () => {
    const files = await Promise.all(Array.from({ length: 6 }, (_, i) => upload(`cancel-${i}.md`, manual())));
    const batch = await sdk.vectorStores.fileBatches.create(storeId, { file_ids: files.map((f) => f.id), chunking_strategy: small });
    const cancelled = await sdk.vectorStores.fileBatches.cancel(batch.id, { vector_store_id: storeId });
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.file_counts.in_progress).toBe(0);
    expect(cancelled.file_counts.completed + cancelled.file_counts.cancelled).toBe(6);
    // Six files of a dozen chunks each take a second or so to ingest: the cancel comes long before that.
    expect(cancelled.file_counts.cancelled).toBeGreaterThan(0);
    const listed = (await sdk.vectorStores.fileBatches.listFiles(batch.id, { vector_store_id: storeId, filter: 'cancelled' })).data;
    expect(listed.length).toBe(cancelled.file_counts.cancelled);
    // A worker that was mid-file when the batch was cancelled removes what it wrote; wait for that.
    const knex = t.platform.db.knex;
    const stray = async () =>
      listed.length
        ? Number(
            (
              await knex
                .withSchema(PGVECTOR_SCHEMA)
                .from(storeId)
                .whereIn(
                  'file_id',
                  listed.map((f) => f.id),
                )
                .count({ n: '*' })
            )[0]!.n,
          )
        : 0;
    const deadline = Date.now() + 20_000;
    while ((await stray()) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await stray()).toBe(0);
    for (const f of listed) await sdk.vectorStores.files.delete(f.id, { vector_store_id: storeId });
    for (const f of files.filter((f) => !listed.some((l) => l.id === f.id))) await sdk.vectorStores.files.delete(f.id, { vector_store_id: storeId });
  });

  it("a store's own embedding model embeds its files (an unknown one fails them with the reason)", async () => {
    const file = await upload('model.txt', 'Which model embeds me?');
    const store = await sdk.vectorStores.create({ name: 'other-model', embedding_model: 'no-such-model', file_ids: [file.id] } as Parameters<
      typeof sdk.vectorStores.create
    >[0]);
    expect((store as unknown as { embedding_model: string }).embedding_model).toBe('no-such-model');
    const done = await sdk.vectorStores.files.poll(store.id, file.id, poll);
    expect(done.status).toBe('failed');
    expect(done.last_error).toMatchObject({ code: 'server_error', message: expect.stringContaining('no-such-model') });
    await sdk.vectorStores.delete(store.id);
  });

  it('a file left half-indexed by a crashed worker is ingested again from scratch, never counted completed meanwhile', async () => {
    const doc = await upload('resume.md', manual());
    await sdk.vectorStores.files.createAndPoll(storeId, { file_id: doc.id, chunking_strategy: small }, poll);
    const knex = t.platform.db.knex;
    const chunks = async () => Number((await knex.withSchema(PGVECTOR_SCHEMA).from(storeId).where({ file_id: doc.id }).count({ n: '*' }))[0]!.n);
    const total = await chunks();
    expect(total).toBeGreaterThan(4);
    // What a worker that died mid-file leaves: the file IN_PROGRESS under its (still live) lease, half the vectors written.
    const ids = (await knex.withSchema(PGVECTOR_SCHEMA).from(storeId).where({ file_id: doc.id }).orderBy('chunk_index').select('id')).map((r) => r.id);
    await knex
      .withSchema(PGVECTOR_SCHEMA)
      .from(storeId)
      .whereIn('id', ids.slice(ids.length / 2))
      .delete();
    await knex
      .withSchema('vectorstores')
      .table('vector_store_files')
      .where({ vector_store_id: storeId, file_id: doc.id })
      .update({ status: 'IN_PROGRESS', lease_owner: 'crashed-worker', lease_until: knex.raw("now() + interval '1 second'"), usage_bytes: 0, chunk_count: 0 });
    const during = await sdk.vectorStores.retrieve(storeId);
    expect(during.status).toBe('in_progress');
    expect(during.file_counts.in_progress).toBe(1);
    // Its half-written chunks are not served while it is not COMPLETED.
    const first = await knex.withSchema(PGVECTOR_SCHEMA).from(storeId).where({ file_id: doc.id }).orderBy('chunk_index').first('text');
    expect((await sdk.vectorStores.search(storeId, { query: first.text, max_num_results: 50 })).data.some((r) => r.file_id === doc.id)).toBe(false);
    // Once the dead lease lapses, the worker takes the file over and completes it, with every chunk once.
    const file = await sdk.vectorStores.files.poll(storeId, doc.id, poll);
    expect(file.status).toBe('completed');
    expect(await chunks()).toBe(total);
    const row = await knex.withSchema('vectorstores').table('vector_store_files').where({ vector_store_id: storeId, file_id: doc.id }).first();
    expect(row.chunk_count).toBe(total);
    expect(row.attempts).toBeGreaterThanOrEqual(2);
  });

  it('the rag tool: the runtime receives the retrieved chunk, and never the tool', async () => {
    const rag = { type: 'function' as const, function: { name: 'rag', parameters: { vector_store_name: 'harbour' } } };
    received.length = 0;
    const completion = await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: PDF_LINE }], tools: [rag], max_tokens: 3 });
    expect(completion.object).toBe('chat.completion');
    expect(received).toHaveLength(1);
    const [system, user] = received[0]!['messages'] as { role: string; content: string }[];
    expect(system!.role).toBe('system');
    expect(system!.content).toContain(PDF_LINE);
    expect(system!.content).toContain('invoice.pdf');
    expect(user).toEqual({ role: 'user', content: PDF_LINE });
    expect(received[0]!['tools']).toBeUndefined();

    // Streaming takes the same path; other tools stay, only rag is served here.
    received.length = 0;
    const weather = { type: 'function' as const, function: { name: 'weather', parameters: { type: 'object', properties: {} } } };
    const stream = await sdk.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: PDF_LINE }],
      tools: [rag, weather],
      max_tokens: 3,
      stream: true,
    });
    for await (const _chunk of stream) void _chunk;
    expect((received[0]!['messages'] as { content: string }[])[0]!.content).toContain(PDF_LINE);
    expect(received[0]!['tools']).toEqual([weather]);

    // tool_choice none: the tool is dropped, nothing is retrieved.
    received.length = 0;
    await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: PDF_LINE }], tools: [rag], tool_choice: 'none', max_tokens: 2 });
    expect(received[0]!['messages']).toEqual([{ role: 'user', content: PDF_LINE }]);
    expect(received[0]!['tools']).toBeUndefined();

    // A store the caller's project does not have: 404, and the runtime sees nothing.
    received.length = 0;
    const missing = { ...rag, function: { ...rag.function, parameters: { vector_store_name: 'no-such-store' } } };
    await expect(
      sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], tools: [missing], max_tokens: 2 }),
    ).rejects.toMatchObject({ status: 404 });
    expect(received).toHaveLength(0);
  });

  it('bad input is refused with OpenAI errors and changes nothing', async () => {
    const count = async () => (await sdk.vectorStores.list({ limit: 100 })).data.length;
    const before = await count();
    const bad = async (body: Record<string, unknown>) => {
      const res = await fetch(`${t.url}/v1/vector_stores`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    };
    const overlap = await bad({ name: 'x1', chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 200, chunk_overlap_tokens: 150 } } });
    expect(overlap.status).toBe(400);
    expect(overlap.body.error).toMatchObject({ type: 'invalid_request_error', param: 'chunking_strategy.chunk_overlap_tokens' });
    const size = await bad({ name: 'x2', chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 50, chunk_overlap_tokens: 10 } } });
    expect(size.status).toBe(400);
    expect((await bad({ name: 'x3', file_ids: ['file-doesnotexist'] })).status).toBe(404);
    expect((await bad({ name: 'x4', metadata: { k: 'v'.repeat(513) } })).status).toBe(400);
    expect((await bad({ name: 'x5', expires_after: { anchor: 'created_at', days: 1 } })).status).toBe(400);
    const duplicate = await bad({ name: 'harbour' });
    expect(duplicate.status).toBe(409);
    expect(await count()).toBe(before);
    const search = await fetch(`${t.url}/v1/vector_stores/${storeId}/search`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'x', filters: { type: 'like', key: 'a', value: 1 } }),
    });
    expect(search.status).toBe(400);
    expect((await search.json()).error.param).toBe('filters');
  });

  it('update (POST), list and delete', async () => {
    const updated = await sdk.vectorStores.update(storeId, {
      name: 'harbour-docs',
      metadata: { team: 'ops' },
      expires_after: { anchor: 'last_active_at', days: 7 },
    });
    expect(updated).toMatchObject({ name: 'harbour-docs', metadata: { team: 'ops' }, expires_after: { anchor: 'last_active_at', days: 7 } });
    expect(updated.expires_at).toBeGreaterThan(updated.last_active_at!);
    const other = await sdk.vectorStores.create({ name: 'scratch' });
    const listed = await sdk.vectorStores.list({ order: 'asc' });
    expect(listed.data.map((s) => s.id)).toEqual([storeId, other.id]);
    // The wire shapes of lists and deletes, as OpenAI describes them.
    const spec = loadOpenApiValidator();
    const get = async (p: string) => (await fetch(`${t.url}${p}`, { headers: { authorization: `Bearer ${t.adminKey}` } })).json();
    expectValid(spec.validateResponse('get', '/v1/vector_stores', 200, await get('/v1/vector_stores')));
    expectValid(
      spec.validateResponse('get', '/v1/vector_stores/{vector_store_id}/files', 200, await get(`/v1/vector_stores/${storeId}/files?filter=completed`)),
    );
    const removed = await (
      await fetch(`${t.url}/v1/vector_stores/${other.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${t.adminKey}` } })
    ).json();
    expectValid(spec.validateResponse('delete', '/v1/vector_stores/{vector_store_id}', 200, removed));
    expect(removed).toMatchObject({ id: other.id, deleted: true });
    await expect(sdk.vectorStores.retrieve(other.id)).rejects.toMatchObject({ status: 404 });
  });

  it("another project's key gets 404 for the store, its files and its search", async () => {
    const other = await projectWithKey(t, 'vs-outsider');
    const outsider = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(outsider.vectorStores.retrieve(storeId)).rejects.toMatchObject({ status: 404 });
    await expect(outsider.vectorStores.files.list(storeId)).rejects.toMatchObject({ status: 404 });
    await expect(outsider.vectorStores.search(storeId, { query: PLANTED })).rejects.toMatchObject({ status: 404 });
    await expect(outsider.vectorStores.delete(storeId)).rejects.toMatchObject({ status: 404 });
    expect((await outsider.vectorStores.list()).data).toEqual([]);
    // The model is shared with the whole tenant, the store is not: the rag tool cannot reach it.
    received.length = 0;
    const rag = { type: 'function' as const, function: { name: 'rag', parameters: { vector_store_name: 'harbour-docs' } } };
    const refused = await outsider.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: PDF_LINE }], tools: [rag], max_tokens: 2 })
      .catch((e) => e);
    expect(refused).toMatchObject({ status: 404, message: expect.stringContaining('vector store') });
    expect(received).toHaveLength(0);
    expect((await sdk.vectorStores.retrieve(storeId)).id).toBe(storeId);
  });
});
