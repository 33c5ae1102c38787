import http, { type IncomingHttpHeaders } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { forwardedRequestId } from '../lib/http.js';
import type { Logger } from '../lib/logging.js';
import { HOP_BY_HOP } from '../lib/tunnel.js';

/** The control plane's request id of a tunnel request (`x-request-id`), when it is sane. */
export function tunnelRequestId(req: Http2ServerRequest): string | undefined {
  return forwardedRequestId(req, undefined);
}

/**
 * One log line per inference request that reaches this agent, when its answer ends, with the request id
 * the control plane sent (the one the client got in `x-request-id`): the agent's line reads with the
 * gateway's and the subgraphs' for the same request. `cancelled`: the control plane reset the stream first.
 */
export function logRuntimeRequest(logger: Logger, req: Http2ServerRequest, res: Http2ServerResponse, modelId: string, runtimePath: string): void {
  const started = performance.now();
  const requestId = tunnelRequestId(req);
  res.stream.once('close', () => {
    const line = { requestId, modelId, path: runtimePath, status: res.statusCode, ms: Math.round(performance.now() - started) };
    logger.info(res.writableEnded ? line : { ...line, cancelled: true }, 'inference request');
  });
}

/**
 * Answers an inference request with an OpenAI-shaped error (OpenAI API: error object). The control
 * plane takes 502 and 503 from an agent to mean "try another runtime" (subgraphs/inference/router.ts).
 */
export function answerRuntimeError(res: Http2ServerResponse, status: 502 | 503, message: string): void {
  // The tunnel stream is gone (the client left): nobody to answer.
  if (res.stream.destroyed) return;
  if (res.headersSent) return void res.stream.close();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type: 'server_error', param: null, code: null } }));
}

/**
 * Forwards one request arriving over the tunnel to a runtime's OpenAI-compatible HTTP server, streaming
 * both ways (a chat completion's SSE chunks pass through as they come). Hop-by-hop headers and HTTP/2
 * pseudo-headers stay behind. A runtime that cannot be reached answers 502 before the first byte; once
 * the answer has started, a failure ends the tunnel stream (the caller sees a cut stream, never a
 * second status). When the tunnel stream closes first (the client left), the upstream request is
 * aborted, so the runtime stops generating. The control plane's `x-request-id` goes to the runtime too.
 */
export function forwardToRuntime(options: {
  baseUrl: string;
  modelId: string;
  req: Http2ServerRequest;
  res: Http2ServerResponse;
  runtimePath: string;
  /** Headers the host sets for the runtime (they replace any of those names the request had). */
  extraHeaders?: Record<string, string>;
  /** The body to send instead of the request's (already read, rewritten by the host). */
  body?: Buffer;
}): void {
  const { baseUrl, modelId, req, res, runtimePath } = options;
  // The caller left while the host was looking for the runtime: nothing to forward.
  if (res.stream.destroyed || res.stream.closed) return;
  const headers: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) if (!name.startsWith(':') && !HOP_BY_HOP.has(name)) headers[name] = value;
  Object.assign(headers, options.extraHeaders);
  if (options.body) headers['content-length'] = String(options.body.length);
  let completed = false;
  const upstream = http.request(new URL(runtimePath, baseUrl), { method: req.method, headers }, (answer) => {
    const out: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
    res.writeHead(answer.statusCode ?? 502, out);
    answer.once('end', () => (completed = true));
    // The runtime died mid-answer: `pipe` would leave the tunnel stream open forever; reset it, so the
    // control plane ends the caller's stream with an error instead of a truncated success.
    answer.once('close', () => {
      if (!answer.complete && !res.stream.destroyed) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
    answer.pipe(res);
  });
  upstream.on('error', (error) => answerRuntimeError(res, 502, `runtime of ${modelId} failed: ${error.message}`));
  // The control plane cancelled (the client left): stop the generation. After a complete answer the
  // connection is left to the keep-alive pool.
  res.stream.once('close', () => {
    if (!completed) upstream.destroy();
  });
  if (options.body) upstream.end(options.body);
  else req.pipe(upstream);
}
