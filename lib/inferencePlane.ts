import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/**
 * The inference data plane's contract (DESIGN §3 "Inference"), shared by its two ends: the gateway,
 * which authenticates and authorizes an OpenAI inference request and forwards it
 * (gateway/inferencePlane.ts), and the inference subgraph, which admits, routes and streams it
 * (subgraphs/inference/dataPlane.ts). It carries exactly what the GraphQL fields `createChatCompletion`,
 * `chatCompletionChunks`, `createCompletion`, `completionChunks` and `createEmbedding` carry, without
 * GraphQL on the way: the body is the OpenAI request, the answer the runtime's own bytes (JSON, or
 * server-sent events passed through as they are generated). The same policy map decides (each kind
 * names the field it stands for), and GraphQL clients keep those fields.
 *
 * The request: `POST <inference subgraph>/inference/v1/<kind path>` with the internal token
 * (INTERNAL_TOKEN_HEADER) and `x-request-id`. The answer: 200 with the runtime's content type, or an
 * error status with `{errors: [{message, extensions: {code, field?}}]}` (GraphQL's error shape, so one
 * mapping serves both ways). The caller's rate-limit state after admission travels in
 * RATE_LIMIT_HEADER (absent when the caller is not limited). A failure after the first byte of a
 * stream ends it with an OpenAI error event (`data: {"error": …}`) and no `[DONE]`.
 */

export type InferenceKind = 'chat' | 'completion' | 'embedding';

/** One OpenAI inference request, as the REST layer hands it over. */
export interface InferenceCall {
  kind: InferenceKind;
  /** The OpenAI request body, already parsed (the REST layer checked `stream`). */
  request: Record<string, unknown>;
  requestId: string;
  /** Aborts the call (the client left): the request to the subgraph is destroyed, the generation stops. */
  signal: AbortSignal;
}

/** The inference subgraph's answer (lib/inferencePlane.ts): its status, headers and body, still streaming. */
export interface InferenceAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

export interface InferencePlane {
  /**
   * Authenticates the caller, authorizes the request by the policy map's rule for the GraphQL field
   * it stands for, and forwards it to the inference subgraph; throws the GraphQL error a refusal
   * would give over /graphql (UNAUTHENTICATED, FORBIDDEN, ...).
   */
  send(req: IncomingMessage, call: InferenceCall): Promise<InferenceAnswer>;
  close(): void;
}


/** The data plane's path of each kind, on the inference subgraph's port. */
export const INFERENCE_PLANE_PATHS: Record<InferenceKind, string> = {
  chat: '/inference/v1/chat/completions',
  completion: '/inference/v1/completions',
  embedding: '/inference/v1/embeddings',
};

/** The GraphQL field each kind stands for, whose rule in the policy map authorizes it. */
export function inferenceFieldOf(kind: InferenceKind, stream: boolean): { typeName: 'Mutation' | 'Subscription'; fieldName: string } {
  if (stream && kind === 'chat') return { typeName: 'Subscription', fieldName: 'chatCompletionChunks' };
  if (stream && kind === 'completion') return { typeName: 'Subscription', fieldName: 'completionChunks' };
  return { typeName: 'Mutation', fieldName: kind === 'chat' ? 'createChatCompletion' : kind === 'completion' ? 'createCompletion' : 'createEmbedding' };
}

/** The caller's rate-limit budgets after its request was admitted (or refused): OpenAI's `x-ratelimit-*`. */
export interface InferenceRateLimit {
  limitRequests: number;
  remainingRequests: number;
  limitTokens: number;
  remainingTokens: number;
  resetInMs: number;
}

export const RATE_LIMIT_HEADER = 'x-mariner-rate-limit';

/** The rate-limit state an answer carries, or null (not limited, or a header that does not parse). */
export function rateLimitOf(headers: IncomingHttpHeaders): InferenceRateLimit | null {
  const raw = headers[RATE_LIMIT_HEADER];
  if (typeof raw !== 'string') return null;
  try {
    const state = JSON.parse(raw) as InferenceRateLimit;
    return typeof state.limitRequests === 'number' && typeof state.resetInMs === 'number' ? state : null;
  } catch {
    return null;
  }
}

/** The header value of a rate-limit state. */
export function rateLimitHeaderOf(state: InferenceRateLimit): string {
  const { limitRequests, remainingRequests, limitTokens, remainingTokens, resetInMs } = state;
  return JSON.stringify({ limitRequests, remainingRequests, limitTokens, remainingTokens, resetInMs });
}
