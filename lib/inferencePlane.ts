import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { GraphQLError } from 'graphql';
import { ErrorCode, isErrorCode } from './errors.js';
import type { InternalCaller } from './identity.js';
import type { Logger } from './logging.js';
import type { RequestPriority } from './requestPriority.js';
import type { AudioUpload } from './transcription.js';

/**
 * The inference data plane's contract (DESIGN §3 "Inference"), shared by its ends: the REST layer,
 * which hands over an OpenAI inference request and writes the answer to its client; the gateway, which
 * authenticates and authorizes it (gateway/inferencePlane.ts); and the inference subgraph, which
 * admits, routes and streams it (subgraphs/inference/dataPlane.ts). It carries exactly what the
 * GraphQL fields `createChatCompletion`, `chatCompletionChunks`, `createCompletion`, `completionChunks`
 * and `createEmbedding` carry (and audio transcriptions, REST only), without GraphQL on the way: the request is the OpenAI body, the answer
 * the runtime's own bytes (JSON, or server-sent events passed through as they are generated). The same
 * policy map decides (each kind names the field it stands for), and GraphQL clients keep those fields.
 *
 * The answer goes to an InferenceSink. When the inference component runs in the gateway's process
 * (`mariner up`), the gateway calls its InferencePlaneServer directly with the REST layer's sink: the
 * runtime's bytes go from the tunnel to the client's socket with nothing between. Otherwise (`mariner
 * serve`, one Deployment each) over HTTP: `POST <inference subgraph>/inference/v1/<kind path>` with the
 * internal token (INTERNAL_TOKEN_HEADER) and `x-request-id`; the answer is 200 with the runtime's
 * content type, or an error status with `{errors: [{message, extensions: {code, field?}}]}` (GraphQL's
 * error shape). The caller's rate-limit state travels in RATE_LIMIT_HEADER (absent when the caller is
 * not limited). A failure after the first byte of a stream ends it with an OpenAI error event
 * (`data: {"error": …}`) and no `[DONE]`.
 */

export type InferenceKind = 'chat' | 'completion' | 'embedding' | 'transcription';

/** One OpenAI inference request, as the REST layer hands it over. */
export interface InferenceCall {
  kind: InferenceKind;
  /**
   * The OpenAI request body, already parsed (the REST layer checked `stream`); for a transcription, the
   * form's text fields (model, response_format, language, ...).
   */
  request: Record<string, unknown>;
  /**
   * A transcription's audio file (lib/transcription.ts), read once from the client's form and passed
   * on by reference (in process) or re-sent as multipart (over HTTP); absent for the other kinds.
   */
  audio?: AudioUpload;
  requestId: string;
  /**
   * `batch` for a batch's request (subgraphs/batches): the runtime serves interactive requests first
   * (lib/requestPriority.ts). Absent: interactive. Over HTTP it travels as PRIORITY_HEADER.
   */
  priority?: RequestPriority;
}

/** Why a request was refused or failed: one of our codes, as a GraphQL error would carry it. */
export interface InferenceError {
  code: ErrorCode;
  message: string;
  /** The request parameter at fault, for bad input. */
  field?: string;
  /** When to try again (a model shut down by its scaling schedule): REST's Retry-After. */
  retryAfterSeconds?: number;
}

/** The caller's rate-limit budgets after its request was admitted (or refused): OpenAI's `x-ratelimit-*`. */
export interface InferenceRateLimit {
  limitRequests: number;
  remainingRequests: number;
  limitTokens: number;
  remainingTokens: number;
  resetInMs: number;
}

/**
 * Where an answer goes. Exactly one of: `start` (then `write`s and `end`, or `fail` for an error event
 * mid-stream), or `fail` before any start. `leaving` is aborted when the reader goes away (the client
 * left): the writer stops, and with it the generation on the runtime.
 */
export interface InferenceSink {
  /** The answer starts (200) with its content type and the caller's rate-limit state (null: not limited). */
  start(contentType: string, rateLimit: InferenceRateLimit | null): void;
  /**
   * Passes bytes on: a stream's whole events (a write never ends inside one); resolves false when the
   * reader is gone (it waits while the reader is behind).
   */
  write(bytes: Buffer): Promise<boolean> | boolean;
  end(): void;
  /** A refusal or failure: an error answer before `start`, an error event that ends the stream after. */
  fail(error: InferenceError, rateLimit: InferenceRateLimit | null): void;
  readonly leaving: AbortSignal;
}

/** The gateway's data plane, as the REST layer calls it (gateway/inferencePlane.ts). */
export interface InferencePlane {
  /**
   * Authenticates the caller, authorizes the request by the policy map's rule for the GraphQL field
   * it stands for, and has the inference component answer it into `sink`; a refusal goes to `sink.fail`
   * as the GraphQL error it would be over /graphql (UNAUTHENTICATED, FORBIDDEN, ...).
   */
  send(req: IncomingMessage, call: InferenceCall, sink: InferenceSink): Promise<void>;
  /**
   * The same authentication and authorization as `send`, before any of the request's body is read (a
   * transcription's upload is read only for a caller who may make it): the refusal, or null.
   */
  refusal(req: IncomingMessage, call: InferenceCall): Promise<InferenceError | null>;
  close(): void;
}

/** The inference component's end, called in process or by its HTTP route (subgraphs/inference/dataPlane.ts). */
export interface InferencePlaneServer {
  /** Answers one request of an authenticated, authorized caller into `sink`; never throws. */
  serve(call: InferenceCall, caller: InternalCaller, sink: InferenceSink): Promise<void>;
  /**
   * Resolves once no interactive request (any but priority `batch`) is being answered in this process,
   * or after `maxWaitMs`: a batch worker in the same process waits on it before starting a request, so
   * its work does not share the process with interactive requests (lib/requestPriority.ts).
   */
  interactiveIdle?(maxWaitMs: number): Promise<void>;
  /** Whether an interactive request is being answered in this process, or one was within `windowMs`. */
  interactiveRecently?(windowMs: number): boolean;
}

/** The data plane's path of each kind, on the inference subgraph's port. */
export const INFERENCE_PLANE_PATHS: Record<InferenceKind, string> = {
  chat: '/inference/v1/chat/completions',
  completion: '/inference/v1/completions',
  embedding: '/inference/v1/embeddings',
  transcription: '/inference/v1/audio/transcriptions',
};

/** Whether a request streams (completions and chats that ask `stream: true`; embeddings never). */
export function streams(call: InferenceCall): boolean {
  return (call.kind === 'chat' || call.kind === 'completion') && call.request['stream'] === true;
}

/** The GraphQL field a request stands for, whose rule in the policy map authorizes it. */
export function inferenceFieldOf(call: InferenceCall): { typeName: 'Mutation' | 'Subscription'; fieldName: string } {
  const { kind } = call;
  // REST only (no GraphQL field yet): its rule in the policy map is the one chat completions have.
  if (kind === 'transcription') return { typeName: 'Mutation', fieldName: 'createTranscription' };
  if (streams(call)) return { typeName: 'Subscription', fieldName: kind === 'chat' ? 'chatCompletionChunks' : 'completionChunks' };
  return { typeName: 'Mutation', fieldName: kind === 'chat' ? 'createChatCompletion' : kind === 'completion' ? 'createCompletion' : 'createEmbedding' };
}

export const RATE_LIMIT_HEADER = 'x-mariner-rate-limit';

/** The rate-limit state an HTTP answer carries, or null (not limited, or a header that does not parse). */
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

/** A refusal or failure as the data plane reports it: ours as they are; anything else logged and masked. */
export function inferenceErrorOf(error: unknown, requestId: string, logger: Logger): InferenceError {
  if (error instanceof GraphQLError && isErrorCode(error.extensions['code'])) {
    const field = error.extensions['field'];
    const retryAfterSeconds = error.extensions['retryAfterSeconds'];
    return {
      code: error.extensions['code'],
      message: error.message,
      ...(typeof field === 'string' ? { field } : {}),
      ...(typeof retryAfterSeconds === 'number' ? { retryAfterSeconds } : {}),
    };
  }
  logger.error({ err: error, requestId }, 'inference request failed');
  return { code: ErrorCode.INTERNAL, message: `Internal error (request id ${requestId})` };
}
