import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError, UsageError } from '../errors.js';
import { printData, printList, printObject } from '../output.js';
import { integerOption, run } from '../command.js';
import { listAll } from '../pages.js';
import { uploadFile } from './files.js';

/** `mariner vector-stores`: the project's vector stores (docs/vector-stores-and-retrieval.md), on GraphQL. */

const STORE_FIELDS = `id name createdAt usageBytes status embeddingModel metric expiresAt lastActiveAt metadata
  fileCounts { inProgress completed failed cancelled total }`;
const FILE_FIELDS = 'id vectorStoreId filename createdAt status usageBytes chunkCount lastError { code message } attributes';

interface StoreView {
  id: string;
  name: string;
  createdAt: string;
  usageBytes: number;
  status: string;
  embeddingModel: string;
  metric: string;
  expiresAt: string | null;
  lastActiveAt: string | null;
  metadata: Record<string, string>;
  fileCounts: { inProgress: number; completed: number; failed: number; cancelled: number; total: number };
}

interface StoreFileView {
  id: string;
  vectorStoreId: string;
  filename: string;
  createdAt: string;
  status: string;
  usageBytes: number;
  chunkCount: number;
  lastError: { code: string; message: string } | null;
  attributes: Record<string, unknown> | null;
}

const files = (s: StoreView) =>
  `${s.fileCounts.completed}/${s.fileCounts.total} ready` +
  (s.fileCounts.inProgress ? `, ${s.fileCounts.inProgress} in progress` : '') +
  (s.fileCounts.failed ? `, ${s.fileCounts.failed} failed` : '');

const STORE_COLUMNS = [
  { header: 'ID', value: (s: StoreView) => s.id },
  { header: 'NAME', value: (s: StoreView) => s.name },
  { header: 'STATUS', value: (s: StoreView) => s.status.toLowerCase() },
  { header: 'FILES', value: (s: StoreView) => files(s) },
  { header: 'BYTES', value: (s: StoreView) => s.usageBytes },
  { header: 'EMBEDDING MODEL', value: (s: StoreView) => s.embeddingModel },
  { header: 'CREATED', value: (s: StoreView) => s.createdAt },
];

/** A store by id (vs_...) or by name. */
async function findStore(client: ApiClient, idOrName: string): Promise<StoreView> {
  const byId = /^vs_[A-Za-z0-9]+$/.test(idOrName);
  const answer = await client.graphql<{ store: StoreView | null }>(
    byId
      ? `query ($key: ID!) { store: vectorStore(id: $key) { ${STORE_FIELDS} } }`
      : `query ($key: String!) { store: vectorStoreByName(name: $key) { ${STORE_FIELDS} } }`,
    { key: idOrName },
  );
  if (!answer.store) throw new CliError(`vector store ${idOrName} not found (NOT_FOUND)`, 'NOT_FOUND');
  return answer.store;
}

/** File ids for `files`: ids as they are, local paths uploaded first (purpose assistants). */
async function fileIds(client: ApiClient, given: string[], announce: boolean): Promise<string[]> {
  const ids: string[] = [];
  for (const file of given) {
    if (/^file-[A-Za-z0-9]+$/.test(file)) ids.push(file);
    else {
      const uploaded = await uploadFile(client, file, 'assistants');
      if (announce) process.stderr.write(`Uploaded ${file} as ${uploaded.id}\n`);
      ids.push(uploaded.id);
    }
  }
  return ids;
}

/** Reads the store again until no file is being ingested (there is no subscription for it). */
async function waitIngested(client: ApiClient, id: string): Promise<StoreView> {
  for (;;) {
    const store = await findStore(client, id);
    if (store.fileCounts.inProgress === 0) return store;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerVectorStores(program: Command): void {
  const stores = program
    .command('vector-stores')
    .description("the project's vector stores: create from files, add files, search by meaning, delete")
    .addHelpText(
      'after',
      `
Examples:
  mariner vector-stores create handbook handbook.md faq.txt --wait     # local files are uploaded first
  mariner vector-stores search handbook "Where is the console?"
  mariner vector-stores files add handbook file-1234
  mariner vector-stores delete handbook`,
    );

  stores
    .command('list')
    .description("the project's vector stores")
    .action(
      run(async (inv) => {
        const client = inv.client();
        const items = await listAll<StoreView>(client, 'vectorStores', STORE_FIELDS, { args: 'order: ASC' });
        printList(inv.format, items, STORE_COLUMNS);
      }),
    );

  stores
    .command('get')
    .argument('<store>', 'the store, by id or name')
    .description('one vector store')
    .action(
      run(async (inv, idOrName: string) => {
        const store = await findStore(inv.client(), idOrName);
        if (inv.format !== 'table') return printData(inv.format, store);
        printObject('table', {
          id: store.id,
          name: store.name,
          status: store.status.toLowerCase(),
          files: files(store),
          bytes: store.usageBytes,
          embeddingModel: store.embeddingModel,
          metric: store.metric,
          metadata: store.metadata,
          created: store.createdAt,
          expires: store.expiresAt,
        });
      }),
    );

  stores
    .command('create')
    .argument('<name>', "the store's name (unique in the project)")
    .argument('[files...]', 'files to ingest: file ids, or local files (uploaded first, purpose assistants)')
    .description('create a store; its files are ingested in the background (--wait waits for them)')
    .option('--embedding-model <model>', "the model that embeds the chunks (default: the platform's)")
    .option('--chunk-size <tokens>', 'static chunking: tokens per chunk (100 to 4096; default: auto)', integerOption('--chunk-size', 100, 4096))
    .option('--chunk-overlap <tokens>', 'static chunking: overlap (at most half the chunk size)', integerOption('--chunk-overlap', 0, 2048))
    .option('--expires-after-days <days>', 'delete it this many days after its last use', integerOption('--expires-after-days', 1, 365))
    .option('--metadata <key=value>', 'a metadata pair (repeatable)', collect, [])
    .option('--wait', 'wait until every file is ingested (or failed)')
    .action(
      run(async (inv, name: string, given: string[]) => {
        const o = inv.options;
        if (o['chunkOverlap'] !== undefined && o['chunkSize'] === undefined) throw new UsageError('--chunk-overlap goes with --chunk-size');
        const metadata: Record<string, string> = {};
        for (const pair of o['metadata'] as string[]) {
          const at = pair.indexOf('=');
          if (at <= 0) throw new UsageError(`--metadata takes key=value, not "${pair}"`);
          metadata[pair.slice(0, at)] = pair.slice(at + 1);
        }
        const client = inv.client();
        const ids = await fileIds(client, given, inv.format === 'table');
        const input = {
          name,
          ...(ids.length ? { fileIds: ids } : {}),
          ...(o['embeddingModel'] ? { embeddingModel: o['embeddingModel'] } : {}),
          ...(o['chunkSize'] !== undefined
            ? {
                chunkingStrategy: {
                  type: 'static',
                  maxChunkSizeTokens: o['chunkSize'],
                  chunkOverlapTokens: o['chunkOverlap'] ?? Math.min(400, Math.floor(o['chunkSize'] / 4)),
                },
              }
            : {}),
          ...(o['expiresAfterDays'] !== undefined ? { expiresAfter: { anchor: 'last_active_at', days: o['expiresAfterDays'] } } : {}),
          ...(Object.keys(metadata).length ? { metadata } : {}),
        };
        let { createVectorStore: store } = await client.graphql<{ createVectorStore: StoreView }>(
          `mutation ($input: CreateVectorStoreInput!) { createVectorStore(input: $input) { ${STORE_FIELDS} } }`,
          { input },
        );
        if (o['wait']) store = await waitIngested(client, store.id);
        if (inv.format !== 'table') return printData(inv.format, store);
        process.stdout.write(`Vector store ${store.id} (${store.name}) created: ${files(store)}\n`);
      }),
    );

  stores
    .command('delete')
    .argument('<store>', 'the store, by id or name')
    .description('delete a store and its vectors (its files stay)')
    .action(
      run(async (inv, idOrName: string) => {
        const client = inv.client();
        const { id } = await findStore(client, idOrName);
        const { deleteVectorStore } = await client.graphql<{ deleteVectorStore: { id: string; deleted: boolean } }>(
          `mutation ($id: ID!) { deleteVectorStore(id: $id) { id deleted } }`,
          { id },
        );
        if (inv.format === 'table') process.stdout.write(`Vector store ${deleteVectorStore.id} deleted\n`);
        else printData(inv.format, deleteVectorStore);
      }),
    );

  stores
    .command('search')
    .argument('<store>', 'the store, by id or name')
    .argument('<query...>', 'what to look for (several words are one query; quote it)')
    .description('the chunks nearest in meaning to the query, best first')
    .option('-n, --max-results <n>', 'at most this many (1 to 50)', integerOption('--max-results', 1, 50), 10)
    .option('--score-threshold <score>', 'leave out hits scoring lower (0 to 1)', Number)
    .option('--filter <json>', 'an OpenAI attribute filter, e.g. \'{"type":"eq","key":"kind","value":"faq"}\'')
    .action(
      run(async (inv, idOrName: string, words: string[]) => {
        const o = inv.options;
        let filters: unknown;
        if (o['filter'] !== undefined) {
          try {
            filters = JSON.parse(o['filter']);
          } catch {
            throw new UsageError(`--filter must be JSON: ${o['filter']}`);
          }
        }
        if (o['scoreThreshold'] !== undefined && !(o['scoreThreshold'] >= 0 && o['scoreThreshold'] <= 1))
          throw new UsageError('--score-threshold is between 0 and 1');
        const client = inv.client();
        const { id } = await findStore(client, idOrName);
        const input = {
          vectorStoreId: id,
          query: [words.join(' ')],
          maxNumResults: o['maxResults'],
          ...(o['scoreThreshold'] !== undefined ? { scoreThreshold: o['scoreThreshold'] } : {}),
          ...(filters !== undefined ? { filters } : {}),
        };
        const { searchVectorStore } = await client.graphql<{
          searchVectorStore: {
            searchQuery: string[];
            results: { fileId: string; filename: string; score: number; chunkIndex: number; text: string; attributes: unknown }[];
          };
        }>(
          `query ($input: SearchVectorStoreInput!) { searchVectorStore(input: $input) { searchQuery results { fileId filename score chunkIndex text attributes } } }`,
          {
            input,
          },
        );
        const items = searchVectorStore.results;
        if (inv.format !== 'table') return printData(inv.format, { query: searchVectorStore.searchQuery, items });
        if (!items.length) return void process.stdout.write('Nothing found.\n');
        for (const hit of items)
          process.stdout.write(`${hit.score.toFixed(3)}  ${hit.filename} #${hit.chunkIndex} (${hit.fileId})\n  ${hit.text.replace(/\s+/g, ' ').trim()}\n`);
      }),
    );

  const storeFiles = stores.command('files').description("a store's files: list, add, remove");

  storeFiles
    .command('list')
    .argument('<store>', 'the store, by id or name')
    .description("the store's files with their ingestion status")
    .action(
      run(async (inv, idOrName: string) => {
        const client = inv.client();
        const { id } = await findStore(client, idOrName);
        const items = await listAll<StoreFileView>(client, 'vectorStoreFiles', FILE_FIELDS, {
          declare: '$id: ID!',
          args: 'vectorStoreId: $id, order: ASC',
          variables: { id },
        });
        printList(inv.format, items, [
          { header: 'ID', value: (f) => f.id },
          { header: 'FILENAME', value: (f) => f.filename },
          { header: 'STATUS', value: (f) => f.status.toLowerCase() + (f.lastError ? `: ${f.lastError.message}` : '') },
          { header: 'CHUNKS', value: (f) => f.chunkCount },
          { header: 'BYTES', value: (f) => f.usageBytes },
          { header: 'ADDED', value: (f) => f.createdAt },
        ]);
      }),
    );

  storeFiles
    .command('add')
    .argument('<store>', 'the store, by id or name')
    .argument('<files...>', 'file ids, or local files (uploaded first, purpose assistants)')
    .description('add files to a store (ingested in the background; --wait waits)')
    .option('--attributes <json>', 'attributes for search filters, e.g. \'{"kind":"faq"}\'')
    .option('--wait', 'wait until they are ingested (or failed)')
    .action(
      run(async (inv, idOrName: string, given: string[]) => {
        let attributes: unknown;
        if (inv.options['attributes'] !== undefined) {
          try {
            attributes = JSON.parse(inv.options['attributes']);
          } catch {
            throw new UsageError(`--attributes must be JSON: ${inv.options['attributes']}`);
          }
        }
        const client = inv.client();
        const { id } = await findStore(client, idOrName);
        const ids = await fileIds(client, given, inv.format === 'table');
        const { createVectorStoreFileBatch: batch } = await client.graphql<{
          createVectorStoreFileBatch: { id: string; status: string; fileCounts: StoreView['fileCounts'] };
        }>(
          `mutation ($input: CreateVectorStoreFileBatchInput!) { createVectorStoreFileBatch(input: $input) { id status fileCounts { inProgress completed failed cancelled total } } }`,
          { input: { vectorStoreId: id, fileIds: ids, ...(attributes !== undefined ? { attributes } : {}) } },
        );
        const store = inv.options['wait'] ? await waitIngested(client, id) : null;
        if (inv.format !== 'table') return printData(inv.format, { vectorStoreId: id, batchId: batch.id, fileIds: ids, ...(store ? { store } : {}) });
        process.stdout.write(`Added ${ids.length} file${ids.length === 1 ? '' : 's'} to ${id}${store ? `: ${files(store)}` : ' (ingesting)'}\n`);
      }),
    );

  storeFiles
    .command('remove')
    .argument('<store>', 'the store, by id or name')
    .argument('<file>', 'the file id')
    .description('remove a file and its vectors from the store (the file stays)')
    .action(
      run(async (inv, idOrName: string, fileId: string) => {
        const client = inv.client();
        const { id } = await findStore(client, idOrName);
        const { deleteVectorStoreFile } = await client.graphql<{ deleteVectorStoreFile: { id: string; deleted: boolean } }>(
          `mutation ($store: ID!, $file: ID!) { deleteVectorStoreFile(vectorStoreId: $store, fileId: $file) { id deleted } }`,
          { store: id, file: fileId },
        );
        if (inv.format === 'table') process.stdout.write(`File ${deleteVectorStoreFile.id} removed from ${id}\n`);
        else printData(inv.format, deleteVectorStoreFile);
      }),
    );
}
