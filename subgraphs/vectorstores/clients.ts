import { ErrorCode, MarinerError } from '../../lib/errors.js';
import { graphqlRequest } from '../../lib/graphqlClient.js';
import { INTERNAL_TOKEN_HEADER, type Identity, type InternalTokens } from '../../lib/identity.js';

/** Who a call is made for: a request's caller, or (ingestion) the one who added the file. */
export interface Caller {
  requestId: string;
  identity: Identity | null;
}

/** What ingestion needs of a File. */
export interface ProjectFile {
  id: string;
  filename: string;
  objectKey: string;
  bytes: number;
}

/** The files subgraph, asked as the caller: it applies `api.files.read` and project ownership. */
export interface FilesClient {
  file(caller: Caller, id: string): Promise<ProjectFile | null>;
}

/** The inference subgraph's embeddings path, as the caller (their project's models and rights). */
export interface EmbeddingsClient {
  /** `signal` ends the call early (the worker is stopping). */
  embed(caller: Caller, model: string, inputs: readonly string[], signal?: AbortSignal): Promise<number[][]>;
}

const FILE = `query VectorStoreSourceFile($id: ID!) { file(id: $id) { id filename objectKey bytes } }`;
const EMBED = `mutation VectorStoreEmbeddings($request: JSON!) { createEmbedding(request: $request) }`;

/** A lookup slower than this is an outage of the files subgraph. */
const FILE_TIMEOUT_MS = 10_000;

export function createFilesClient(options: { url: () => string; tokens: InternalTokens }): FilesClient {
  return {
    async file(caller, id) {
      const token = await options.tokens.mint('files', caller.requestId, caller.identity);
      const data = await graphqlRequest<{ file: ProjectFile | null }>(options.url(), FILE, { id }, { [INTERNAL_TOKEN_HEADER]: token }, AbortSignal.timeout(FILE_TIMEOUT_MS));
      return data.file;
    },
  };
}

/**
 * The embeddings a vector store makes (ingestion in the background, a search's query, the `rag` tool)
 * are the platform's calls, not the key's OpenAI inference calls: the per-key rate limits hold on
 * the OpenAI endpoints only, so a limited key's file ingestion does not fail half-way on a 429.
 * They are still recorded as the key's usage.
 */
function notRateLimited(identity: Identity | null): Identity | null {
  const apiKey = identity?.principal.apiKey;
  if (!identity || !apiKey || apiKey.excludedFromRateLimiting) return identity;
  return { ...identity, principal: { ...identity.principal, apiKey: { ...apiKey, excludedFromRateLimiting: true } } };
}

/**
 * Embeddings go through the inference subgraph like any caller's (model visibility, activation,
 * routing to a runtime, retries): ingestion adds no path of its own to the runtimes. Vectors are
 * asked as floats (the SDKs' base64 is for the wire to clients).
 */
export function createEmbeddingsClient(options: { url: () => string; tokens: InternalTokens; timeoutMs: number }): EmbeddingsClient {
  return {
    async embed(caller, model, inputs, signal) {
      const token = await options.tokens.mint('inference', caller.requestId, notRateLimited(caller.identity));
      const data = await graphqlRequest<{ createEmbedding: { data?: { index: number; embedding: number[] }[] } }>(
        options.url(),
        EMBED,
        { request: { model, input: inputs, encoding_format: 'float' } },
        { [INTERNAL_TOKEN_HEADER]: token },
        signal ? AbortSignal.any([signal, AbortSignal.timeout(options.timeoutMs)]) : AbortSignal.timeout(options.timeoutMs),
      );
      const items = data.createEmbedding.data ?? [];
      const vectors: number[][] = new Array(inputs.length);
      for (const item of items) vectors[item.index] = item.embedding;
      if (items.length !== inputs.length || vectors.some((v) => !Array.isArray(v) || v.length === 0)) {
        throw new MarinerError(ErrorCode.INTERNAL, `the embeddings of ${model} came back incomplete (${items.length} of ${inputs.length})`);
      }
      return vectors;
    },
  };
}
