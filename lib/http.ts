import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { HeaderMap, type HTTPGraphQLResponse } from '@apollo/server';
import { ErrorCode, httpStatusFor, type ErrorCode as Code } from './errors.js';

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`Request body is larger than ${limit} bytes`);
  }
}

/** Reads a request body, failing as soon as it passes `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) throw new BodyTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BodyTooLargeError(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function toHeaderMap(req: IncomingMessage): HeaderMap {
  const headers = new HeaderMap();
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
  }
  return headers;
}

/** Writes an Apollo Server HTTP response (complete or chunked) to node's response. */
export async function sendApolloResponse(res: ServerResponse, response: HTTPGraphQLResponse): Promise<void> {
  res.statusCode = response.status ?? 200;
  for (const [key, value] of response.headers) res.setHeader(key, value);
  if (response.body.kind === 'complete') {
    res.end(response.body.string);
    return;
  }
  for await (const chunk of response.body.asyncIterator) res.write(chunk);
  res.end();
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(text);
}

/** A GraphQL-shaped error response for failures before GraphQL runs (auth, body size, bad JSON). */
export function sendGraphQLError(res: ServerResponse, code: Code, message: string, headers: Record<string, string> = {}, status = httpStatusFor(code)): void {
  sendJson(res, status, { errors: [{ message, extensions: { code } }] }, headers);
}

/** Parses a JSON body, or answers BAD_USER_INPUT. Returns undefined when it answered. */
export function parseJsonBody(res: ServerResponse, text: string): unknown {
  if (text === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    sendGraphQLError(res, ErrorCode.BAD_USER_INPUT, 'Request body is not valid JSON');
    return undefined;
  }
}

const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The caller's `x-request-id` when it is sane, else a new one: it follows the request through every component. */
/** A request header's first value, trimmed; undefined when absent or blank. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return text && text.trim() !== '' ? text.trim() : undefined;
}

export function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/** A request id as the platform's own parts pass it on (a subscription's carries its operation after a colon). */
const FORWARDED_REQUEST_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * The request id one part of the platform sent another (`x-request-id`), when it is sane, else
 * `fallback`: a subgraph's caller reuses its internal token across requests
 * (gateway/internalTokenCache.ts), so each request's lines carry the id sent beside it, not the
 * token's; the agent logs the control plane's id for each tunnel request.
 */
export function forwardedRequestId<Fallback extends string | undefined>(req: { headers: IncomingHttpHeaders }, fallback: Fallback): string | Fallback {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && FORWARDED_REQUEST_ID.test(incoming) ? incoming : fallback;
}

export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * Writes `bytes`, waiting for `drain` when the reader is behind (so a slow reader holds the writer back
 * instead of growing memory); false when the response is gone.
 */
export function writeOrWait(res: ServerResponse, bytes: Buffer): Promise<boolean> | boolean {
  if (res.destroyed) return false;
  if (res.write(bytes)) return true;
  return new Promise((resolve) => {
    const settle = (ok: boolean) => () => {
      res.off('drain', drained).off('close', closed);
      resolve(ok);
    };
    const drained = settle(true);
    const closed = settle(false);
    res.once('drain', drained).once('close', closed);
  });
}
