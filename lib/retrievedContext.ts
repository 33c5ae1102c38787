/**
 * Retrieved chunks as the context a model is given (the `rag` tool of chat completions,
 * subgraphs/inference/rag.ts, and the `file_search` tool of the Responses API, rest-compat/responses.ts):
 * one system message, the best chunks first, numbered with their file's name, cut at about 2,000 tokens.
 */

/** Context added at most (about 2,000 tokens): the best chunks first, the rest left out. */
export const MAX_CONTEXT_CHARS = 8000;

/** The chunk a search returned: its file's name and its text. */
export interface ContextChunk {
  filename: string;
  text: string;
}

/** The system message's text: how to use the context, and the chunks; `source` names where they came from. */
export function retrievedContext(source: string, chunks: readonly ContextChunk[]): string {
  const parts: string[] = [];
  let size = 0;
  for (const [i, c] of chunks.entries()) {
    const part = `[${i + 1}] (${c.filename})\n${c.text}`;
    if (parts.length && size + part.length > MAX_CONTEXT_CHARS) break;
    parts.push(part);
    size += part.length;
  }
  return `Use the following context, retrieved from ${source}, to answer the user. If it does not help, answer without it.\n\n${parts.join('\n\n')}`;
}
