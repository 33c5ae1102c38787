import http from 'node:http';
import { ErrorCode, isErrorCode, openAIErrorBody, openAIStatusFor } from '../../lib/errors.js';
import { INTERNAL_TOKEN_HEADER, type Identity, type InternalTokens } from '../../lib/identity.js';
import {
  INFERENCE_PLANE_PATHS,
  type InferenceCall,
  type InferenceError,
  type InferenceKind,
  type InferencePlaneServer,
  type InferenceSink,
} from '../../lib/inferencePlane.js';
import { IdPrefix } from '../../lib/ids.js';
import { isJsonObject } from '../../lib/jsonObject.js';
import { PRIORITY_HEADER, type RequestPriority } from '../../lib/requestPriority.js';
import { chunkOfCompletion, ResponseBuilder } from '../../lib/responseEvents.js';
import { chatRequestOf, readResponseRequest } from '../../lib/responseRequest.js';
import type { BatchResponses } from './clients.js';
import type { BatchKind } from './validation.js';

/** What one request of a batch answered: OpenAI's `response` of the output line (status and body). */
export interface RequestAnswer {
  statusCode: number;
  body: unknown;
  /** Our code when it failed (the worker retries RATE_LIMITED and UNAVAILABLE later). */
  code: ErrorCode | null;
}

/** Runs one request of a batch as its creator, through the inference data plane. */
export interface RequestRunner {
  run(identity: Identity, kind: BatchKind, body: Record<string, unknown>, requestId: string, signal: AbortSignal): Promise<RequestAnswer>;
  close(): void;
}

/**
 * The id of the response a `/v1/responses` line makes: derived from the line's request id (its batch
 * and line), the same on every run of the line, so a rerun finds the response an earlier run stored.
 */
export const responseIdOf = (requestId: string) => `${IdPrefix.response}${requestId.slice(IdPrefix.batchRequest.length)}`;

/**
 * Test hooks (tests only): `afterResponseStored` runs once a line's response is stored and before its
 * answer goes back to the worker; a throw there is a worker that died between the two writes.
 */
export const requestRunnerTestHooks: { afterResponseStored: ((requestId: string, responseId: string) => void) | null } = { afterResponseStored: null };

/** How long a batch request waits for the process's interactive requests before it starts anyway. */
const INTERACTIVE_HOLD_MS = 1_000;
/** Interactive traffic within this window makes the batch back off to one request at a time in the process. */
const INTERACTIVE_WINDOW_MS = 2_000;
/**
 * While it backs off, the process is left idle after each batch request for this many times as long as
 * the request took (at most this many times INTERACTIVE_HOLD_MS): 2 keeps batch work to at most a third
 * of the time, so an interactive request arriving at random finds no batch request running about two
 * times in three, and the median one runs alone (at 1, half the time, the median was at the edge:
 * interactive p50 +19% and +21% under a batch against the goal of 20%).
 */
const IDLE_PER_BATCH_WORK = 2;

/** An answer of the data plane, whole: a batch request never streams. */
function bufferedSink(signal: AbortSignal): { sink: InferenceSink; answer: Promise<RequestAnswer> } {
  let resolve!: (answer: RequestAnswer) => void;
  const answer = new Promise<RequestAnswer>((r) => (resolve = r));
  const parts: Buffer[] = [];
  const failed = (error: InferenceError) =>
    resolve({ statusCode: openAIStatusFor(error.code), body: openAIErrorBody(error.code, error.message, error.field ?? null), code: error.code });
  const sink: InferenceSink = {
    start: () => undefined,
    write: (bytes) => (parts.push(bytes), !signal.aborted),
    end() {
      const text = Buffer.concat(parts).toString('utf8');
      try {
        resolve({ statusCode: 200, body: JSON.parse(text), code: null });
      } catch {
        failed({ code: ErrorCode.INTERNAL, message: 'The runtime answered with something that is not JSON' });
      }
    },
    fail: (error) => failed(error),
    leaving: signal,
  };
  // A worker stopping does not wait for the plane to notice: the request is given back.
  const stopped = () => failed({ code: ErrorCode.UNAVAILABLE, message: 'The batch worker stopped before the answer came' });
  signal.addEventListener('abort', stopped, { once: true });
  return { sink, answer: answer.finally(() => signal.removeEventListener('abort', stopped)) };
}

/**
 * Each request is what an interactive call of its creator would be (DESIGN §3 "Inference"): the
 * inference component's data plane authorizes it by the policy map's rule for the field it stands for
 * (`createChatCompletion`, ...), admits it with the creator's rate limits, routes it and records its usage. In the process of the inference component (`mariner up`) that is a function call;
 * otherwise one kept-alive HTTP connection to its data plane (lib/inferencePlane.ts), with an internal
 * token for the creator.
 */
export function createRequestRunner(options: {
  local: InferencePlaneServer | null;
  inferenceUrl: () => string;
  tokens: InternalTokens;
  /** Sent as `batch` priority (lib/requestPriority.ts): the runtime serves interactive requests first. */
  yieldToInteractive: boolean;
  /** Where a `/v1/responses` line's response is stored (`store`, the default). */
  responses: BatchResponses;
}): RequestRunner {
  const priority: RequestPriority = options.yieldToInteractive ? 'batch' : 'interactive';
  const agent = new http.Agent({ keepAlive: true });

  async function overHttp(call: InferenceCall, identity: Identity, sink: InferenceSink): Promise<void> {
    const token = await options.tokens.mint('inference', call.requestId, identity);
    const payload = Buffer.from(JSON.stringify(call.request));
    const base = options.inferenceUrl().replace(/\/graphql$/, '');
    try {
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const upstream = http.request(`${base}${INFERENCE_PLANE_PATHS[call.kind]}`, {
          method: 'POST',
          agent,
          signal: sink.leaving,
          headers: {
            'content-type': 'application/json',
            'content-length': payload.length,
            [INTERNAL_TOKEN_HEADER]: token,
            'x-request-id': call.requestId,
            [PRIORITY_HEADER]: priority,
          },
        });
        upstream.once('error', reject);
        upstream.once('response', resolve);
        upstream.end(payload);
      });
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      const bytes = Buffer.concat(chunks);
      if (response.statusCode === 200) {
        sink.start(String(response.headers['content-type'] ?? 'application/json'), null);
        await sink.write(bytes);
        return sink.end();
      }
      const { errors } = JSON.parse(bytes.toString('utf8')) as { errors?: { message: string; extensions?: { code?: unknown; field?: unknown } }[] };
      const [error] = errors ?? [];
      if (error && isErrorCode(error.extensions?.code)) {
        const field = error.extensions.field;
        return sink.fail({ code: error.extensions.code, message: error.message, ...(typeof field === 'string' ? { field } : {}) }, null);
      }
      sink.fail({ code: ErrorCode.INTERNAL, message: `The inference service answered ${response.statusCode}` }, null);
    } catch (error) {
      if (!sink.leaving.aborted)
        sink.fail({ code: ErrorCode.UNAVAILABLE, message: `The inference service could not be reached (${(error as Error).message}); retried later` }, null);
    }
  }

  /**
   * Batch requests in the data plane of this process, and those waiting to enter it. While interactive
   * requests come (one answered within INTERACTIVE_WINDOW_MS), the batch backs off to one request at a
   * time here, and leaves the process idle after each for twice as long as it took (IDLE_PER_BATCH_WORK:
   * at most a third of the time is batch work, so most interactive requests arrive while none runs):
   * each batch request's own work
   * (routing, the tunnel, the runtime, its record) shares the process and the machine's CPU with the
   * interactive ones. The worker's caps (4 per batch) are what runs with no interactive traffic.
   */
  let inPlane = 0;
  /** While interactive traffic is recent, no batch request enters before this (ms since the epoch). */
  let nextEntryAt = 0;
  const backedOff: (() => void)[] = [];
  const local = options.yieldToInteractive ? options.local : null;

  async function enterPlane(signal: AbortSignal): Promise<void> {
    for (;;) {
      if (signal.aborted || !local?.interactiveRecently?.(INTERACTIVE_WINDOW_MS)) break;
      if (inPlane > 0) await new Promise<void>((resolve) => backedOff.push(resolve));
      else if (Date.now() < nextEntryAt) await new Promise((resolve) => setTimeout(resolve, nextEntryAt - Date.now()));
      else break;
    }
    inPlane++;
    // In the inference component's process, a request starts once no interactive one is being answered there.
    if (local?.interactiveIdle) await local.interactiveIdle(INTERACTIVE_HOLD_MS);
  }

  function leavePlane(startedAt: number): void {
    inPlane--;
    const now = Date.now();
    nextEntryAt = now + IDLE_PER_BATCH_WORK * Math.min(INTERACTIVE_HOLD_MS, now - startedAt);
    backedOff.shift()?.();
  }

  async function inference(identity: Identity, kind: InferenceKind, body: Record<string, unknown>, requestId: string, signal: AbortSignal) {
    const call: InferenceCall = { kind, request: body, requestId, priority };
    await enterPlane(signal);
    const startedAt = Date.now();
    try {
      if (signal.aborted) return { statusCode: 503, body: null, code: ErrorCode.UNAVAILABLE };
      const { sink, answer } = bufferedSink(signal);
      if (options.local) await options.local.serve(call, { requestId, system: false, identity, worker: null }, sink);
      else await overHttp(call, identity, sink);
      return await answer;
    } finally {
      leavePlane(startedAt);
    }
  }

  /**
   * A `/v1/responses` line, made as POST /v1/responses makes one (rest-compat/responses.ts): the request
   * becomes a chat completion (lib/responseRequest.ts) run through the data plane as any other line,
   * whose answer becomes the response object (lib/responseEvents.ts); with `store` (the default) it is
   * recorded in the creator's project before its line is, so its id answers GET /v1/responses/{id}.
   * A refusal of the chat completion is the line's error answer as it is.
   *
   * The line is idempotent: its response's id is derived from the batch and line (responseIdOf), and a
   * run that finds that response stored (an earlier run stored it, then its worker died before writing
   * the line) answers with it without running again; one that stores it second (two runs at once after
   * a lapsed lease) answers with the one stored first. So a line stores one response however often it runs.
   */
  async function response(identity: Identity, body: Record<string, unknown>, requestId: string, signal: AbortSignal): Promise<RequestAnswer> {
    const request = readResponseRequest(body);
    const id = responseIdOf(requestId);
    const caller = { requestId, identity };
    if (request.store) {
      const earlier = await options.responses.stored(caller, id);
      if (earlier) return { statusCode: 200, body: earlier, code: null };
    }
    const { stream: _stream, stream_options: _options, ...chat } = chatRequestOf(request, request.instructions, []);
    const answer = await inference(identity, 'chat', { ...chat, stream: false }, requestId, signal);
    if (answer.statusCode !== 200 || !isJsonObject(answer.body)) return answer;
    const builder = new ResponseBuilder(request, () => undefined);
    builder.response.id = id;
    builder.begin();
    builder.chunk(chunkOfCompletion(answer.body));
    const made = builder.finish();
    if (request.store) {
      if (!(await options.responses.record(caller, made, request.inputItems))) {
        const first = await options.responses.stored(caller, id);
        if (first) return { statusCode: 200, body: first, code: null };
        // Taken outside the creator's project (stored there under this id on purpose): the line fails, once.
        const message = `The response id ${id} of ${requestId} is taken by a response outside the batch's project`;
        return { statusCode: 500, body: openAIErrorBody(ErrorCode.INTERNAL, message, null), code: ErrorCode.INTERNAL };
      }
      requestRunnerTestHooks.afterResponseStored?.(requestId, id);
    }
    return { statusCode: 200, body: made, code: null };
  }

  return {
    run: (identity, kind, body, requestId, signal) =>
      kind === 'response' ? response(identity, body, requestId, signal) : inference(identity, kind, body, requestId, signal),
    close: () => agent.destroy(),
  };
}
