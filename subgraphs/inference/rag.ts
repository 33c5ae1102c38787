import { badInput } from '../../lib/errors.js';
import type { InternalTokens } from '../../lib/identity.js';
import { retrievedContext } from '../../lib/retrievedContext.js';
import { asCaller, createInternalClient } from '../../lib/internalClient.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import { RagSearchDocument, type RagSearchQuery } from './generated/vectorstoresOperations.js';

/** A retrieved chunk: its file, its score and its text. */
export type RetrievedChunk = RagSearchQuery['searchVectorStore']['results'][number];

/** The vectorstores subgraph's search, asked as the caller: their project's stores and their rights only. */
export interface VectorStoreSearch {
  search(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, vectorStoreName: string, queries: string[], maxResults: number): Promise<RetrievedChunk[]>;
}

/** A search embeds the queries first (through this subgraph, on a runtime that may be loading). */
const SEARCH_TIMEOUT_MS = 60_000;

/** The vectorstores subgraph's search (operations/vectorstores.graphql), as the caller. */
export function createVectorStoreSearch(options: { url: () => string; tokens: InternalTokens }): VectorStoreSearch {
  const vectorStores = createInternalClient({ subgraph: 'vectorstores', url: options.url, tokens: options.tokens, timeoutMs: SEARCH_TIMEOUT_MS });
  return {
    search: async (caller, vectorStoreName, queries, maxResults) =>
      (await vectorStores.request(asCaller(caller), RagSearchDocument, { input: { vectorStoreName, query: queries, maxNumResults: maxResults } }))
        .searchVectorStore.results,
  };
}

/** Chunks added to the prompt, and the user messages searched with (the latest ones). */
const RAG_RESULTS = 5;
const RAG_QUERIES = 3;
const MAX_QUERY_CHARS = 2000;

interface ChatMessage {
  role?: unknown;
  content?: unknown;
}

/** The text of a message's content: a string, or the text parts of an array. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (part && typeof part === 'object' && (part as { type?: unknown }).type === 'text' ? String((part as { text?: unknown }).text ?? '') : ''))
      .filter(Boolean)
      .join('\n');
  }
  return '';
}

function isRagTool(tool: unknown): tool is { type: 'function'; function: { name: 'rag'; parameters?: unknown } } {
  const t = tool as { type?: unknown; function?: { name?: unknown } } | null;
  return Boolean(t && t.type === 'function' && t.function && t.function.name === 'rag');
}

/**
 * The `rag` pseudo-tool (LLMariner §1, completions.go `handleToolsForRAG`): a function tool named
 * `rag` with parameters `{"vector_store_name": ...}` makes the server search that store (of the
 * caller's project, with the caller's rights) with the conversation's latest user messages and put
 * the retrieved chunks in a system message before the conversation; the tool itself never reaches the
 * runtime. `tool_choice: "none"` just drops it. A request without the tool is returned unchanged.
 */
export async function withRetrievedContext(
  search: VectorStoreSearch | null,
  caller: Pick<SubgraphContext, 'requestId' | 'identity'>,
  body: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const tools = body['tools'];
  if (!Array.isArray(tools) || !tools.some(isRagTool)) return body;
  const rag = tools.filter(isRagTool);
  if (rag.length > 1) throw badInput('tools: at most one rag tool', 'tools');
  const name = (rag[0]!.function.parameters as { vector_store_name?: unknown } | undefined)?.vector_store_name;
  if (typeof name !== 'string' || name.trim() === '')
    throw badInput('tools: the rag tool needs parameters.vector_store_name (a vector store of this project)', 'tools');
  const rest = tools.filter((t) => !isRagTool(t));
  const out: Record<string, unknown> = { ...body };
  if (rest.length) out['tools'] = rest;
  else {
    delete out['tools'];
    delete out['tool_choice'];
    delete out['parallel_tool_calls'];
  }
  const toolChoice = body['tool_choice'];
  if (toolChoice === 'none') return out;
  // tool_choice naming the rag function: it has been served here.
  if (typeof toolChoice === 'object' && toolChoice && (toolChoice as { function?: { name?: unknown } }).function?.name === 'rag') delete out['tool_choice'];
  if (!search) throw badInput('tools: the rag tool is not available on this platform (no vector stores)', 'tools');
  const messages = Array.isArray(body['messages']) ? (body['messages'] as ChatMessage[]) : [];
  const queries = messages
    .filter((m) => m && m.role === 'user')
    .map((m) => textOf(m.content).trim().slice(-MAX_QUERY_CHARS))
    .filter(Boolean)
    .slice(-RAG_QUERIES);
  if (queries.length === 0) return out;
  const chunks = await search.search(caller, name.trim(), queries, RAG_RESULTS);
  if (chunks.length === 0) return out;
  const system = { role: 'system', content: retrievedContext(`the vector store "${name.trim()}"`, chunks) };
  out['messages'] = [system, ...messages];
  return out;
}
