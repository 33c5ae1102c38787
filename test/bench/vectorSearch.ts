/**
 * Vector store benchmark (`npm run bench:vectors`, options after `--`).
 *
 * 1. Search latency on pgvector (the embedded default: PGlite with pgvector 0.8, one table per store,
 *    HNSW index, cosine): random unit vectors of --dim dimensions are written through the VectorIndex
 *    interface (`insert`, batches of 500) with the HNSW index dropped, which is then built again (bulk
 *    load; both timed), then --queries top-10 searches (`search`, exactly what the
 *    vectorstores subgraph runs: a transaction with SET LOCAL ef_search / iterative scan, then the
 *    ordered HNSW scan) are timed at each size of --sizes (default 10,000 and 100,000 vectors; the
 *    table grows from one size to the next). Recall@10 against an exact brute-force search in JS is
 *    reported for the first 50 queries, so a fast but wrong index shows.
 * 2. Ingestion throughput: the embedded platform with the tiny GGUF model (64-dimensional embeddings,
 *    node-llama-cpp on the CPU) as the store's embedding model; one text file of --ingest-chunks chunks
 *    (static chunking, 100 tokens, overlap 0) is added to a store, timed from the create call to the
 *    file's COMPLETED, polled every 20 ms. Chunks/s is chunks over that time: text extraction, chunking,
 *    embeddings through the inference path (batches of MARINER_EMBEDDING_BATCH_SIZE, default 32) and the
 *    pgvector writes.
 *
 *   --sizes A,B      vector counts to measure search at (default 10000,100000)
 *   --queries N      timed searches per size (default 300, after 30 warm-up)
 *   --dim D          dimensions (default 64: the tiny test model's)
 *   --ingest-chunks  chunks of the ingestion run (default 400; 0 skips it)
 *
 * Writes bench-results/vectorSearch.{json,md}. Everything runs in this one Node process (PGlite is
 * WebAssembly in-process), on this machine; a production Postgres with pgvector is not measured here.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI, { toFile } from 'openai';
import { startAgent } from '../../agent/index.js';
import { createLocalExecutor } from '../../agent/localExecutor.js';
import { loadConfig } from '../../lib/config.js';
import { openDatabase } from '../../lib/db.js';
import { silentLogger } from '../../lib/logging.js';
import { createPgvectorIndex, PGVECTOR_SCHEMA } from '../../subgraphs/vectorstores/index.js';
import { startTestPlatform } from '../support/platform.js';
import { writeTinyGguf } from '../support/tinyGguf.js';
import { BenchAbort, intOption, latencyStats, parseBenchArgs, runBench, UsageError, type LatencyStats } from './support.js';

const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench-results');
const USAGE = '--sizes 10000,100000 --queries 300 --dim 64 --ingest-chunks 400';
const TOP_K = 10;
const RECALL_QUERIES = 50;
const STORE = 'vs_benchVectorSearch';

/** A seeded generator (mulberry32): the same vectors every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function unitVector(next: () => number, dim: number): number[] {
  const v = Array.from({ length: dim }, () => next() * 2 - 1);
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

interface SearchResult {
  vectors: number;
  insertSeconds: number;
  indexSeconds: number;
  latency: LatencyStats;
  recallAt10: number;
}

async function searchBench(sizes: number[], queries: number, dim: number): Promise<SearchResult[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mariner-bench-vectors-'));
  const db = await openDatabase({ dataDir });
  try {
    const index = (await createPgvectorIndex(db.knex, { required: true }))!;
    await index.dropCollection(STORE);
    await index.createCollection(STORE, dim, 'cosine');
    // Bulk load as pgvector recommends: rows first, then the HNSW index (built at each size, timed
    // apart); inserting into a live HNSW index is several times slower on PGlite.
    const hnsw = `${STORE}_hnsw`;
    const next = random(7);
    const all: Float32Array[] = [];
    const out: SearchResult[] = [];
    for (const size of sizes) {
      await db.knex.raw('drop index if exists ??.??', [PGVECTOR_SCHEMA, hnsw]);
      const started = process.hrtime.bigint();
      while (all.length < size) {
        const batch = Array.from({ length: Math.min(2000, size - all.length) }, (_, i) => {
          const vector = unitVector(next, dim);
          return { fileId: `file-${Math.floor((all.length + i) / 100)}`, chunkIndex: (all.length + i) % 100, text: `chunk ${all.length + i}`, vector };
        });
        await index.insert(STORE, 'cosine', batch);
        for (const c of batch) all.push(Float32Array.from(c.vector));
      }
      const insertSeconds = Number(process.hrtime.bigint() - started) / 1e9;
      const building = process.hrtime.bigint();
      await db.knex.raw('create index ?? on ??.?? using hnsw (embedding vector_cosine_ops)', [hnsw, PGVECTOR_SCHEMA, STORE]);
      const indexSeconds = Number(process.hrtime.bigint() - building) / 1e9;
      const rows = await db.knex.withSchema(PGVECTOR_SCHEMA).from(STORE).count({ n: '*' });
      if (Number(rows[0]!.n) !== size) throw new BenchAbort(`expected ${size} vectors in the table, found ${rows[0]!.n}`);
      const queryVectors = Array.from({ length: queries + 30 }, () => unitVector(next, dim));
      for (const q of queryVectors.slice(0, 30)) await index.search(STORE, 'cosine', q, { topK: TOP_K });
      const samples: bigint[] = [];
      const wall = process.hrtime.bigint();
      const found: string[][] = [];
      for (const q of queryVectors.slice(30)) {
        const t0 = process.hrtime.bigint();
        const hits = await index.search(STORE, 'cosine', q, { topK: TOP_K });
        samples.push(process.hrtime.bigint() - t0);
        if (hits.length !== TOP_K) throw new BenchAbort(`a search returned ${hits.length} hits, not ${TOP_K}`);
        if (found.length < RECALL_QUERIES) found.push(hits.map((h) => h.text));
      }
      const latency = latencyStats(samples, process.hrtime.bigint() - wall);
      // Exact top-10 by brute force (the vectors are unit length: cosine = dot product).
      let agreed = 0;
      found.forEach((hits, qi) => {
        const q = queryVectors[30 + qi]!;
        const scored = all.map((v, i) => {
          let dot = 0;
          for (let d = 0; d < dim; d++) dot += v[d]! * q[d]!;
          return { i, dot };
        });
        scored.sort((a, b) => b.dot - a.dot);
        const exact = new Set(scored.slice(0, TOP_K).map((s) => `chunk ${s.i}`));
        agreed += hits.filter((h) => exact.has(h)).length;
      });
      const recallAt10 = Math.round((agreed / (found.length * TOP_K)) * 1000) / 1000;
      out.push({ vectors: size, insertSeconds: Math.round(insertSeconds * 10) / 10, indexSeconds: Math.round(indexSeconds * 10) / 10, latency, recallAt10 });
      console.log(
        `pgvector ${size} vectors (${dim}-d): insert ${insertSeconds.toFixed(1)} s, HNSW build ${indexSeconds.toFixed(1)} s; top-${TOP_K} p50 ${latency.p50} ms, p99 ${latency.p99} ms; recall@10 ${recallAt10}`,
      );
    }
    await index.dropCollection(STORE);
    return out;
  } finally {
    await db.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface IngestResult {
  chunks: number;
  seconds: number;
  chunksPerSecond: number;
  embeddingBatchSize: number;
}

async function ingestBench(chunks: number): Promise<IngestResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mariner-bench-ingest-'));
  const model = 'bench-embed';
  const config = loadConfig({});
  const t = await startTestPlatform({ embedded: true, config: { vectorStores: { ...config.vectorStores, defaultEmbeddingModel: model } } });
  let agent: Awaited<ReturnType<typeof startAgent>> | undefined;
  try {
    const gguf = path.join(dir, 'tiny.gguf');
    writeTinyGguf(gguf);
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "local" }) { registrationKey } }');
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      logger: silentLogger(),
    });
    await agent.whenConnected();
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const weights = await sdk.files.create({ file: await toFile(readFileSync(gguf), `${model}.gguf`), purpose: 'user_data' });
    await t.gqlOk('mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }', {
      input: { id: model, sourceRepository: 'FILE', source: weights.id },
    });
    const worker = { token: registerCluster.registrationKey };
    const task = (await t.gqlOk('mutation { acquireModelLoad { modelId source } }', {}, worker)).acquireModelLoad;
    await t.gqlOk(
      'mutation($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { loadingStatus } }',
      { input: { id: model, status: 'SUCCEEDED', objectPath: task.source, formats: ['GGUF'] } },
      worker,
    );
    await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { activationStatus } }', { id: model });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
    // Paragraphs of ~390 characters: one chunk each at 100 tokens (400 characters), no overlap.
    const paragraph = (i: number) => `Paragraph ${i}: ${'the harbour master logs every ship that enters the port '.repeat(6)}`.slice(0, 390);
    const text = Array.from({ length: chunks }, (_, i) => paragraph(i)).join('\n\n');
    const file = await sdk.files.create({ file: await toFile(Buffer.from(text), 'bench.txt'), purpose: 'assistants' });
    // Warm the embedding context first, so the figure is the steady state, not the runtime's first call.
    await sdk.embeddings.create({ model, input: 'warm up' });
    const started = process.hrtime.bigint();
    const store = await sdk.vectorStores.create({
      name: 'bench',
      file_ids: [file.id],
      chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 0 } },
    });
    const done = await sdk.vectorStores.files.poll(store.id, file.id, { pollIntervalMs: 20 });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (done.status !== 'completed') throw new BenchAbort(`ingestion ended ${done.status}: ${JSON.stringify(done.last_error)}`);
    const row = await t.platform.db.knex
      .withSchema('vectorstores')
      .table('vector_store_files')
      .where({ vector_store_id: store.id, file_id: file.id })
      .first('chunk_count');
    const result = {
      chunks: row.chunk_count,
      seconds: Math.round(seconds * 100) / 100,
      chunksPerSecond: Math.round((row.chunk_count / seconds) * 10) / 10,
      embeddingBatchSize: config.vectorStores.embeddingBatchSize,
    };
    console.log(
      `ingestion: ${result.chunks} chunks in ${result.seconds} s = ${result.chunksPerSecond} chunks/s (tiny model, batches of ${result.embeddingBatchSize})`,
    );
    return result;
  } finally {
    await agent?.close();
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = parseBenchArgs(
    process.argv.slice(2),
    {
      sizes: { type: 'string', default: '10000,100000' },
      queries: { type: 'string', default: '300' },
      dim: { type: 'string', default: '64' },
      'ingest-chunks': { type: 'string', default: '400' },
    },
    USAGE,
  );
  const sizes = args.sizes.split(',').map((s) => intOption('sizes', s, 100));
  if (sizes.some((s, i) => i > 0 && s <= sizes[i - 1]!)) throw new UsageError('--sizes must grow: 10000,100000');
  const queries = intOption('queries', args.queries, 10);
  const dim = intOption('dim', args.dim, 2);
  const ingestChunks = intOption('ingest-chunks', args['ingest-chunks'], 0);
  const search = await searchBench(sizes, queries, dim);
  const ingestion = ingestChunks > 0 ? await ingestBench(ingestChunks) : null;
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}`;
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path.join(RESULTS_DIR, 'vectorSearch.json'), JSON.stringify({ machine, dim, topK: TOP_K, queries, search, ingestion }, null, 2));
  const md = [
    `# Vector search and ingestion (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Machine: ${machine}. Command: \`npm run bench:vectors -- --sizes ${sizes.join(',')} --queries ${queries} --dim ${dim} --ingest-chunks ${ingestChunks}\``,
    '',
    `pgvector on embedded PGlite, HNSW (cosine), ${dim}-dimensional random unit vectors, top-${TOP_K}, ${queries} timed searches per size:`,
    '',
    '| vectors | insert (s) | HNSW build (s) | p50 (ms) | p90 (ms) | p99 (ms) | searches/s | recall@10 |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...search.map(
      (s) =>
        `| ${s.vectors} | ${s.insertSeconds} | ${s.indexSeconds} | ${s.latency.p50} | ${s.latency.p90} | ${s.latency.p99} | ${s.latency.requestsPerSecond} | ${s.recallAt10} |`,
    ),
    '',
    ingestion
      ? `Ingestion: ${ingestion.chunks} chunks in ${ingestion.seconds} s = **${ingestion.chunksPerSecond} chunks/s** (tiny GGUF embedding model on the CPU, embedding batches of ${ingestion.embeddingBatchSize}).`
      : 'Ingestion: skipped.',
    '',
  ].join('\n');
  writeFileSync(path.join(RESULTS_DIR, 'vectorSearch.md'), md);
  console.log(md);
}

runBench(main);
