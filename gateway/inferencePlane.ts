import http, { type IncomingMessage } from 'node:http';
import { ErrorCode, isErrorCode, unauthenticated } from '../lib/errors.js';
import { bearerToken } from '../lib/http.js';
import {
  INFERENCE_PLANE_PATHS,
  inferenceErrorOf,
  inferenceFieldOf,
  rateLimitOf,
  type InferenceCall,
  type InferenceError,
  type InferencePlane,
  type InferencePlaneServer,
  type InferenceSink,
} from '../lib/inferencePlane.js';
import { INTERNAL_TOKEN_HEADER, type Identity } from '../lib/identity.js';
import type { Logger } from '../lib/logging.js';
import { encodeTranscriptionForm } from '../lib/transcription.js';
import { authorizeField } from '../schema/rbac/authorizeField.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import type { Authenticator } from './authentication.js';
import type { InternalTokenCache } from './internalTokenCache.js';

/** The end of a server-sent event. */
const EVENT_END = Buffer.from('\n\n');

export interface InferencePlaneOptions {
  authenticator: Authenticator;
  policy: PolicyMap;
  /** The gateway's internal tokens (one cache for all its paths). */
  tokens: InternalTokenCache;
  /** The inference subgraph's GraphQL URL: its data plane is on the same port. */
  inferenceUrl: string;
  /** The inference component's data plane when it runs in this process (then no HTTP at all). */
  local: InferencePlaneServer | null;
  logger: Logger;
  /** Sees each admitted call's caller (the usage record of its REST call: gateway/usage.ts); an in-memory note, no await. */
  onAdmitted?: (requestId: string, identity: Identity, modelId: string | null) => void;
}

/**
 * The gateway's end of the inference data plane (lib/inferencePlane.ts): what /graphql does for
 * `createChatCompletion` or `chatCompletionChunks` — authentication (the cached principal), the same
 * policy rule — and then the inference component answers straight into the REST layer's sink: in
 * process when it runs here, else over one kept-alive HTTP connection with an internal token (instead
 * of a GraphQL operation, and a WebSocket per stream), its token reused (internalTokenCache.ts).
 */
export function createInferencePlane(options: InferencePlaneOptions): InferencePlane {
  const base = options.inferenceUrl.replace(/\/graphql$/, '');
  const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  /** Who may make the call, as /graphql would judge the field it stands for; null after a refusal (sent to the sink). */
  async function identify(req: IncomingMessage, call: InferenceCall): Promise<Identity> {
    if (req.headers.authorization !== undefined && bearerToken(req) === undefined) {
      throw unauthenticated('Authorization header must be "Bearer <API key or OIDC token>"');
    }
    const { identity, worker } = await options.authenticator.authenticate(bearerToken(req), req.headers, call.requestId);
    const field = inferenceFieldOf(call);
    await authorizeField(options.policy, field.typeName, field.fieldName, { request: call.request }, { identity, worker, system: false });
    // The rules of these fields admit users only; a worker or nobody was refused above.
    if (!identity) throw unauthenticated();
    const model = (call.request as { model?: unknown } | null)?.model;
    options.onAdmitted?.(call.requestId, identity, typeof model === 'string' ? model : null);
    return identity;
  }

  async function admit(req: IncomingMessage, call: InferenceCall, sink: InferenceSink): Promise<Identity | null> {
    try {
      return await identify(req, call);
    } catch (error) {
      sink.fail(inferenceErrorOf(error, call.requestId, options.logger), null);
      return null;
    }
  }

  /** Over HTTP to the inference subgraph's data plane, its answer replayed into the sink as it arrives. */
  async function overHttp(call: InferenceCall, identity: Identity, sink: InferenceSink): Promise<void> {
    const token = await options.tokens.tokenFor('inference', call.requestId, identity);
    // A transcription's form goes on as multipart (its file is not JSON); the other kinds as their JSON body.
    const form = call.kind === 'transcription' && call.audio ? encodeTranscriptionForm(call.request, call.audio) : null;
    const payload = form ? form.body : Buffer.from(JSON.stringify(call.request));
    await new Promise<void>((resolve) => {
      const upstream = http.request(`${base}${INFERENCE_PLANE_PATHS[call.kind]}`, {
        method: 'POST',
        agent,
        headers: {
          'content-type': form ? form.contentType : 'application/json',
          'content-length': payload.length,
          [INTERNAL_TOKEN_HEADER]: token,
          'x-request-id': call.requestId,
        },
      });
      const abort = () => upstream.destroy();
      sink.leaving.addEventListener('abort', abort, { once: true });
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        sink.leaving.removeEventListener('abort', abort);
        resolve();
      };
      upstream.once('error', (error) => {
        if (!sink.leaving.aborted)
          sink.fail({ code: ErrorCode.UNAVAILABLE, message: `The inference service could not be reached (${error.message}); retry shortly` }, null);
        settle();
      });
      upstream.once('response', (answer) => {
        if (answer.statusCode !== 200) return void failureOf(answer).then((error) => (sink.fail(error, rateLimitOf(answer.headers)), settle()));
        const contentType = String(answer.headers['content-type'] ?? 'application/json');
        sink.start(contentType, rateLimitOf(answer.headers));
        // A stream's events may be cut across reads: each write ends at an event's end, the rest waits.
        const events = contentType.startsWith('text/event-stream');
        let tail: Buffer | null = null;
        answer.on('data', (read: Buffer) => {
          let bytes = tail ? Buffer.concat([tail, read]) : read;
          if (events) {
            const boundary = bytes.lastIndexOf(EVENT_END);
            tail = boundary === -1 ? bytes : boundary + 2 < bytes.length ? bytes.subarray(boundary + 2) : null;
            if (boundary === -1) return;
            if (tail) bytes = bytes.subarray(0, boundary + 2);
          }
          const written = sink.write(bytes);
          if (written === true) return;
          if (written === false) return void upstream.destroy();
          answer.pause();
          void written.then((ok) => (ok ? answer.resume() : upstream.destroy()));
        });
        answer.once('end', () => {
          sink.end();
          settle();
        });
        // Cut mid-answer (the inference process went away): an error event, as a runtime failing would give.
        answer.once('close', () => {
          if (!answer.complete && !sink.leaving.aborted)
            sink.fail({ code: ErrorCode.UNAVAILABLE, message: 'The inference service stopped before the answer finished; retry the request' }, null);
          settle();
        });
      });
      upstream.end(payload);
    });
  }

  return {
    async send(req, call, sink) {
      const identity = await admit(req, call, sink);
      if (!identity) return;
      if (options.local) return options.local.serve(call, { requestId: call.requestId, system: false, identity, worker: null }, sink);
      await overHttp(call, identity, sink);
    },
    async refusal(req, call) {
      try {
        await identify(req, call);
        return null;
      } catch (error) {
        return inferenceErrorOf(error, call.requestId, options.logger);
      }
    },
    close: () => agent.destroy(),
  };
}

/** The error of a non-200 answer of the data plane (GraphQL's error shape). */
async function failureOf(answer: IncomingMessage): Promise<InferenceError> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of answer) chunks.push(chunk as Buffer);
    const { errors } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      errors?: { message: string; extensions?: { code?: unknown; field?: unknown } }[];
    };
    const [error] = errors ?? [];
    if (error && isErrorCode(error.extensions?.code)) {
      return { code: error.extensions.code, message: error.message, ...(typeof error.extensions.field === 'string' ? { field: error.extensions.field } : {}) };
    }
  } catch {
    /* not the data plane's error shape */
  }
  return { code: ErrorCode.INTERNAL, message: `The inference service answered ${answer.statusCode}` };
}
