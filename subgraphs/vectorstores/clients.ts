import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Identity, InternalTokens } from '../../lib/identity.js';
import { asCaller, createInternalClient } from '../../lib/internalClient.js';
import { VectorStoreSourceFileDocument, type VectorStoreSourceFileQuery } from './generated/filesOperations.js';
import { VectorStoreEmbeddingsDocument } from './generated/inferenceOperations.js';

/** Who a call is made for: a request's caller, or (ingestion) the one who added the file. */
export interface Caller {
  requestId: string;
  identity: Identity | null;
}

/** What ingestion needs of a File: its name and where its bytes are. */
export type ProjectFile = NonNullable<VectorStoreSourceFileQuery['file']>;

/** The files subgraph, asked as the caller: it applies `api.files.read` and project ownership. */
export interface FilesClient {
  file(caller: Caller, id: string): Promise<ProjectFile | null>;
}

/** The inference subgraph's embeddings path, as the caller (their project's models and rights). */
export interface EmbeddingsClient {
  /** `signal` ends the call early (the worker is stopping). */
  embed(caller: Caller, model: string, inputs: readonly string[], signal?: AbortSignal): Promise<number[][]>;
}

/** The files subgraph (operations/files.graphql); a lookup slower than the default timeout is an outage. */
export function createFilesClient(options: { url: () => string; tokens: InternalTokens }): FilesClient {
  const files = createInternalClient({ subgraph: 'files', url: options.url, tokens: options.tokens });
  return {
    file: async (caller, id) => (await files.request(asCaller(caller), VectorStoreSourceFileDocument, { id })).file,
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

/** The part of the OpenAI embeddings response (the `createEmbedding` JSON) ingestion reads. */
interface EmbeddingsResponse {
  data?: { index: number; embedding: number[] }[];
}

/**
 * Embeddings go through the inference subgraph (operations/inference.graphql) like any caller's
 * (model visibility, activation, routing to a runtime, retries): ingestion adds no path of its own to
 * the runtimes. Vectors are asked as floats (the SDKs' base64 is for the wire to clients).
 */
export function createEmbeddingsClient(options: { url: () => string; tokens: InternalTokens; timeoutMs: number }): EmbeddingsClient {
  const inference = createInternalClient({ subgraph: 'inference', url: options.url, tokens: options.tokens, timeoutMs: options.timeoutMs });
  return {
    async embed(caller, model, inputs, signal) {
      const data = await inference.request(
        asCaller({ requestId: caller.requestId, identity: notRateLimited(caller.identity) }),
        VectorStoreEmbeddingsDocument,
        { request: { model, input: inputs, encoding_format: 'float' } },
        signal ? { signal } : {},
      );
      const items = (data.createEmbedding as EmbeddingsResponse | null)?.data ?? [];
      const vectors: number[][] = new Array(inputs.length);
      for (const item of items) vectors[item.index] = item.embedding;
      if (items.length !== inputs.length || vectors.some((v) => !Array.isArray(v) || v.length === 0)) {
        throw new MarinerError(ErrorCode.INTERNAL, `the embeddings of ${model} came back incomplete (${items.length} of ${inputs.length})`);
      }
      return vectors;
    },
  };
}
