import type { IncomingMessage, ServerResponse } from 'node:http';
import { createClient } from 'graphql-ws';
import { WebSocket } from 'ws';
import { sendJson } from '../lib/http.js';
import { RestError, restErrorFromGraphQL, sendRestError } from './errors.js';
import { FORWARDED_HEADERS, type GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import type { RouteContext } from './router.js';

/** OpenAI API: 503s say when to come back (a runtime may be starting). */
const RETRY_AFTER_SECONDS = '5';

function fail(res: ServerResponse, error: RestError, ctx: RouteContext): void {
  sendRestError(res, error, error.status === 503 ? { ...ctx.headers, 'retry-after': RETRY_AFTER_SECONDS } : ctx.headers);
}

/**
 * A streaming completion as server-sent events (OpenAI API: `stream: true`): the gateway subscription
 * `field` over graphql-ws, each event one `data:` line, then `data: [DONE]`. An error before the first
 * event is an ordinary OpenAI error response; the client leaving cancels the subscription and with it
 * the generation on the runtime.
 */
function stream(req: IncomingMessage, res: ServerResponse, ctx: RouteContext, graphqlUrl: string, field: string, body: Record<string, unknown>): Promise<void> {
  const connectionParams: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = req.headers[name];
    if (typeof value === 'string') connectionParams[name] = value;
  }
  const client = createClient({
    url: graphqlUrl.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    lazy: true,
    retryAttempts: 0,
    connectionParams: { ...connectionParams, 'x-request-id': ctx.requestId },
  });
  return new Promise<void>((resolve) => {
    let started = false;
    const finish = () => {
      void client.dispose();
      resolve();
    };
    const unsubscribe = client.subscribe<Record<string, unknown>>(
      { query: `subscription Stream($request: JSON!) { ${field}(request: $request) }`, variables: { request: body } },
      {
        next: (event) => {
          if (event.errors?.length) {
            const error = restErrorFromGraphQL(event.errors[0]!);
            if (!started) return fail(res, error, ctx);
            // A failure mid-stream ends it with the error (OpenAI streams do the same), no [DONE].
            if (!res.writableEnded) res.end(`data: ${JSON.stringify(error.body())}\n\n`);
            return;
          }
          if (!started) {
            started = true;
            res.writeHead(200, { ...ctx.headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
          }
          res.write(`data: ${JSON.stringify(event.data?.[field])}\n\n`);
        },
        error: (error) => {
          const graphQLErrors = Array.isArray(error) ? (error as { message: string; extensions?: Record<string, unknown> }[]) : [];
          const restError = graphQLErrors[0]
            ? restErrorFromGraphQL(graphQLErrors[0])
            : new RestError(502, `The streaming request failed (request id ${ctx.requestId})`, 'server_error');
          if (!started && !res.headersSent) fail(res, restError, ctx);
          else if (!res.writableEnded) res.end(`data: ${JSON.stringify(restError.body())}\n\n`);
          finish();
        },
        complete: () => {
          if (!res.headersSent) fail(res, new RestError(502, 'The stream ended without any event', 'server_error'), ctx);
          else if (!res.writableEnded) res.end('data: [DONE]\n\n');
          finish();
        },
      },
    );
    res.on('close', () => {
      if (!res.writableFinished) {
        unsubscribe();
        finish();
      }
    });
  });
}

/** OpenAI inference routes: chat completions, completions, embeddings (streaming where OpenAI streams). */
export function inferenceRoutes({ gateway, graphqlUrl }: { gateway: GatewayClient; graphqlUrl: () => string }) {
  const route = (mutation: string, subscription: string | null) => async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
    const body = await readJsonBody(req);
    if (body['stream'] === true) {
      if (!subscription) throw RestError.badRequest('This endpoint does not stream', 'stream');
      return stream(req, res, ctx, graphqlUrl(), subscription, body);
    }
    if (body['stream'] !== undefined && body['stream'] !== false && body['stream'] !== null) throw RestError.badRequest('stream must be a boolean', 'stream');
    try {
      const data = await gateway.request<Record<string, unknown>>(req, ctx.requestId, `mutation Complete($request: JSON!) { result: ${mutation}(request: $request) }`, { request: body });
      sendJson(res, 200, data['result'], ctx.headers);
    } catch (error) {
      if (error instanceof RestError && error.status === 503) return fail(res, error, ctx);
      throw error;
    }
  };
  return [
    { method: 'POST', path: '/v1/chat/completions', handler: route('createChatCompletion', 'chatCompletionChunks') },
    { method: 'POST', path: '/v1/completions', handler: route('createCompletion', 'completionChunks') },
    { method: 'POST', path: '/v1/embeddings', handler: route('createEmbedding', null) },
  ];
}
