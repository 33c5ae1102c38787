import { badInput } from '../../../lib/errors.js';

/**
 * OpenAI's static chunking strategy (OpenAI API: StaticChunkingStrategy): chunks of at most
 * `maxChunkSizeTokens` (100-4096, default 800) overlapping by `chunkOverlapTokens` (default 400, at
 * most half the chunk size). LLMariner passes the chunk size where the overlap belongs (§5, embedder.go
 * `AddFile`); here each goes where it says.
 */
export interface ChunkingStrategy {
  maxChunkSizeTokens: number;
  chunkOverlapTokens: number;
}

export const DEFAULT_CHUNKING: ChunkingStrategy = { maxChunkSizeTokens: 800, chunkOverlapTokens: 400 };
export const MIN_CHUNK_TOKENS = 100;
export const MAX_CHUNK_TOKENS = 4096;

/**
 * Tokens are counted as LLMariner's splitter counts them, 4 characters per token: Mariner has no
 * tokenizer of the store's embedding model at hand, and any model's runtime refuses an input longer
 * than its context (the ingestion then reports the file failed, with the runtime's reason).
 */
export const CHARS_PER_TOKEN = 4;

/** Checks a requested strategy (`type` auto or static); `field` prefixes the names in errors. */
export function chunkingStrategyOf(
  input: { type: string; maxChunkSizeTokens?: number | null; chunkOverlapTokens?: number | null } | null | undefined,
  field = 'chunkingStrategy',
): ChunkingStrategy {
  if (!input || input.type === 'auto') {
    if (input && (input.maxChunkSizeTokens != null || input.chunkOverlapTokens != null)) {
      throw badInput(`${field}: the auto strategy takes no sizes; use type static`, field);
    }
    return DEFAULT_CHUNKING;
  }
  if (input.type !== 'static') throw badInput(`${field}.type must be auto or static, got "${String(input.type).slice(0, 40)}"`, `${field}.type`);
  const max = input.maxChunkSizeTokens;
  const overlap = input.chunkOverlapTokens;
  if (max == null || overlap == null) throw badInput(`${field}: static needs maxChunkSizeTokens and chunkOverlapTokens`, field);
  if (!Number.isInteger(max) || max < MIN_CHUNK_TOKENS || max > MAX_CHUNK_TOKENS) {
    throw badInput(`${field}.maxChunkSizeTokens must be an integer from ${MIN_CHUNK_TOKENS} to ${MAX_CHUNK_TOKENS}`, `${field}.maxChunkSizeTokens`);
  }
  if (!Number.isInteger(overlap) || overlap < 0 || overlap > max / 2) {
    throw badInput(
      `${field}.chunkOverlapTokens must be an integer from 0 to half of maxChunkSizeTokens (${Math.floor(max / 2)})`,
      `${field}.chunkOverlapTokens`,
    );
  }
  return { maxChunkSizeTokens: max, chunkOverlapTokens: overlap };
}

/** Coarsest first: paragraphs, lines, sentences, words, then characters. */
const SEPARATORS = ['\n\n', '\n', '. ', ' ', ''];

/**
 * Splits text into chunks of at most `maxChunkSizeTokens` with about `chunkOverlapTokens` of overlap
 * between neighbours: a recursive splitter that keeps paragraphs, then lines, sentences and words
 * whole where they fit, and packs neighbouring pieces up to the size. Chunks are trimmed; blank ones
 * are dropped.
 */
export function chunkText(text: string, strategy: ChunkingStrategy): string[] {
  const size = strategy.maxChunkSizeTokens * CHARS_PER_TOKEN;
  const overlap = strategy.chunkOverlapTokens * CHARS_PER_TOKEN;
  return split(text, SEPARATORS, size, overlap)
    .map((chunk) => chunk.trim())
    .filter((chunk) => chunk.length > 0);
}

function split(text: string, separators: readonly string[], size: number, overlap: number): string[] {
  let separator = '';
  let finer: readonly string[] = [];
  for (let i = 0; i < separators.length; i++) {
    const candidate = separators[i]!;
    if (candidate === '' || text.includes(candidate)) {
      separator = candidate;
      finer = separators.slice(i + 1);
      break;
    }
  }
  // Each piece keeps its separator, so pieces joined back give the text unchanged.
  const pieces = separator === '' ? [...text] : text.split(separator).map((p, i, all) => (i < all.length - 1 ? p + separator : p));
  const out: string[] = [];
  let fitting: string[] = [];
  for (const piece of pieces) {
    if (piece.length <= size) {
      fitting.push(piece);
      continue;
    }
    if (fitting.length) out.push(...merge(fitting, size, overlap));
    fitting = [];
    out.push(...split(piece, finer.length ? finer : [''], size, overlap));
  }
  if (fitting.length) out.push(...merge(fitting, size, overlap));
  return out;
}

/** Packs pieces (each ≤ size) into chunks ≤ size; a new chunk starts with the last ≤ overlap of the previous. */
function merge(pieces: readonly string[], size: number, overlap: number): string[] {
  const chunks: string[] = [];
  const current: string[] = [];
  let length = 0;
  for (const piece of pieces) {
    if (length + piece.length > size && current.length) {
      chunks.push(current.join(''));
      while (current.length && (length > overlap || length + piece.length > size)) length -= current.shift()!.length;
    }
    current.push(piece);
    length += piece.length;
  }
  if (current.length) chunks.push(current.join(''));
  return chunks;
}
