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
import { PRIORITY_HEADER, type RequestPriority } from '../../lib/requestPriority.js';

/** What one request of a batch answered: OpenAI's `response` of the output line (status and body). */
export interface RequestAnswer {
  statusCode: number;
  body: unknown;
  /** Our code when it failed (the worker retries RATE_LIMITED and UNAVAILABLE later). */
  code: ErrorCode | null;
}

/** Runs one request of a batch as its creator, through the inference data plane. */
export interface RequestRunner {
  run(identity: Identity, kind: InferenceKind, body: Record<string, unknown>, requestId: string, signal: AbortSignal): Promise<RequestAnswer>;
  close(): void;
}

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

  return {
    async run(identity, kind, body, requestId, signal) {
      const call: InferenceCall = { kind, request: body, requestId, priority };
      const { sink, answer } = bufferedSink(signal);
      if (options.local) await options.local.serve(call, { requestId, system: false, identity, worker: null }, sink);
      else await overHttp(call, identity, sink);
      return answer;
    },
    close: () => agent.destroy(),
  };
}
