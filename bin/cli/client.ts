import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { Context } from './config.js';
import { CliError } from './errors.js';

/**
 * The command line's one client of a platform, on its PUBLIC API only (so it works against `mariner up`
 * and a Helm install alike): GraphQL at /graphql over HTTP, subscriptions over graphql-ws on the same
 * path, the OpenAI REST API at /v1. The context's organization and project travel as the
 * OpenAI-Organization / OpenAI-Project headers (connection parameters on a WebSocket). Every refusal
 * becomes a CliError carrying the platform's message and code.
 */
export interface ApiClient {
  readonly context: Context;
  graphql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>): Promise<T>;
  /** A REST call; `body` as JSON, or a stream with its content type. Refusals (status ≥ 400) throw. */
  rest(method: string, path: string, options?: RestOptions): Promise<Response>;
  restJson<T = Record<string, any>>(method: string, path: string, body?: unknown): Promise<T>;
  /**
   * A REST call whose body streams from `body` with Node's own backpressure (node:http): only what the
   * socket can take is read, so an upload of any size uses constant memory. Answers JSON.
   */
  upload<T = Record<string, any>>(method: string, path: string, body: Readable, headers: Record<string, string>): Promise<T>;
  /**
   * A subscription's events, in order; ends when the server completes it. A dropped connection throws
   * a CliError with code `CONNECTION_LOST` (callers that can resume do: `fine-tuning jobs logs -f`).
   */
  subscribe<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<T>;
  close(): Promise<void>;
}

export interface RestOptions {
  json?: unknown;
  body?: ReadableStream<Uint8Array> | Uint8Array | string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

interface GraphQLErrorShape {
  message: string;
  extensions?: { code?: string };
}

export function errorFromGraphQL(errors: readonly GraphQLErrorShape[]): CliError {
  const first = errors[0]!;
  const code = first.extensions?.code;
  return new CliError(`${first.message}${code ? ` (${code})` : ''}`, code);
}

function unreachable(url: string, error: unknown): CliError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return new CliError(`cannot reach ${url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`, 'UNREACHABLE');
}

/** What a REST refusal says: OpenAI's `{error: {message, code}}`, else the status line. */
async function restError(response: Response): Promise<CliError> {
  const text = await response.text().catch(() => '');
  try {
    const { error } = JSON.parse(text) as { error?: { message?: string; code?: string | null; type?: string } };
    if (error?.message) {
      const code = error.code ?? error.type ?? undefined;
      return new CliError(`${error.message}${code ? ` (${code})` : ''}`, code);
    }
  } catch {
    // not JSON: the status says it
  }
  return new CliError(`HTTP ${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

export function createApiClient(context: Context): ApiClient {
  const headers: Record<string, string> = { authorization: `Bearer ${context.apiKey}` };
  if (context.organization) headers['openai-organization'] = context.organization;
  if (context.project) headers['openai-project'] = context.project;
  let ws: Client | undefined;
  /** How the WebSocket last closed (graphql-ws reports it to `on.closed`). */
  let closedBy: { code: number; reason: string } | undefined;

  async function rest(method: string, path: string, options: RestOptions = {}): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`${context.url}${path}`, {
        method,
        headers: { ...headers, ...(options.json !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers },
        ...(options.json !== undefined ? { body: JSON.stringify(options.json) } : options.body !== undefined ? { body: options.body } : {}),
        ...(options.body instanceof ReadableStream ? { duplex: 'half' } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      } as RequestInit);
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      throw unreachable(context.url, error);
    }
    if (response.status >= 400) throw await restError(response);
    return response;
  }

  return {
    context,
    async graphql<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
      let response: Response;
      try {
        response = await fetch(`${context.url}/graphql`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ query, variables }),
        });
      } catch (error) {
        throw unreachable(context.url, error);
      }
      const text = await response.text();
      let body: { data?: T | null; errors?: GraphQLErrorShape[] };
      try {
        body = JSON.parse(text);
      } catch {
        throw new CliError(`${context.url}/graphql answered HTTP ${response.status} without GraphQL (${text.slice(0, 120)}): is this a Mariner URL?`);
      }
      if (body.errors?.length) throw errorFromGraphQL(body.errors);
      if (!body.data) throw new CliError(`${context.url}/graphql answered HTTP ${response.status} without data`);
      return body.data;
    },
    rest,
    async restJson<T>(method: string, path: string, body?: unknown): Promise<T> {
      const response = await rest(method, path, body === undefined ? {} : { json: body });
      return (await response.json()) as T;
    },
    async upload<T>(method: string, path: string, body: Readable, extra: Record<string, string>): Promise<T> {
      const url = new URL(`${context.url}${path}`);
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const request = send(url, { method, headers: { ...headers, ...extra } });
      const answered = new Promise<IncomingMessage>((resolve, reject) => {
        request.once('response', resolve);
        request.once('error', reject);
      });
      try {
        // The server may answer (a refusal) before the body is sent: the answer counts, not the broken pipe.
        await Promise.race([pipeline(body, request), answered]);
      } catch (error) {
        const early = await Promise.race([answered, new Promise<undefined>((resolve) => setTimeout(resolve, 1000, undefined))]).catch(() => undefined);
        if (!early) throw unreachable(context.url, { cause: error });
      }
      const response = await answered.catch((error: unknown) => {
        throw unreachable(context.url, { cause: error });
      });
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      body.destroy();
      if ((response.statusCode ?? 500) >= 400)
        throw await restError(new Response(text, { status: response.statusCode ?? 500, statusText: response.statusMessage ?? '' }));
      return JSON.parse(text) as T;
    },
    async *subscribe<T>(query: string, variables?: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<T> {
      closedBy = undefined;
      ws ??= createClient({
        url: `${context.url.replace(/^http/, 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: headers,
        retryAttempts: 0,
        lazy: true,
        on: {
          closed: (event) => {
            const { code, reason } = event as { code: number; reason: string };
            closedBy = { code, reason };
          },
        },
      });
      const events = ws.iterate<T>({ query, ...(variables ? { variables } : {}) });
      const onAbort = () => void events.return?.(undefined);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        for (;;) {
          let next: IteratorResult<{ data?: T | null; errors?: readonly GraphQLErrorShape[] }>;
          try {
            next = await events.next();
          } catch (error) {
            if (Array.isArray(error)) throw errorFromGraphQL(error as GraphQLErrorShape[]);
            const closed = closedBy ?? (error as { code?: number; reason?: string });
            if (closed && typeof closed.code === 'number') {
              if (closed.code === 4401 || closed.code === 4403) throw new CliError(`${closed.reason || 'unauthorized'} (UNAUTHENTICATED)`, 'UNAUTHENTICATED');
              throw new CliError(`connection to ${context.url} lost (${closed.code}${closed.reason ? ` ${closed.reason}` : ''})`, 'CONNECTION_LOST');
            }
            if ((error as { code?: string }).code === 'ECONNREFUSED' || (error as Error).message?.includes('ECONNREFUSED')) {
              throw new CliError(`cannot reach ${context.url}: ECONNREFUSED`, 'CONNECTION_LOST');
            }
            throw new CliError(`subscription failed: ${(error as Error).message ?? String(error)}`, 'CONNECTION_LOST');
          }
          if (next.done) return;
          if (next.value.errors?.length) throw errorFromGraphQL(next.value.errors);
          if (next.value.data) yield next.value.data;
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
        await events.return?.(undefined);
      }
    },
    async close() {
      const client = ws;
      ws = undefined;
      await client?.dispose();
    },
  };
}
