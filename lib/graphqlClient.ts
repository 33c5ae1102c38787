import { ErrorCode, isErrorCode, MarinerError } from './errors.js';

/**
 * A GraphQL call over HTTP to the gateway, for components that act as (or for) a caller: the
 * sessions server authorizing a user, an agent reporting with its registration key. A GraphQL error
 * is thrown as a MarinerError with its code; a transport failure as a plain Error. Calls to a
 * subgraph go through internalClient.ts, which builds on this.
 */
export async function graphqlRequest<T>(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
    ...(signal ? { signal } : {}),
  });
  let body: { data?: T | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
  try {
    body = (await response.json()) as typeof body;
  } catch {
    throw new Error(`${url} answered ${response.status} without JSON`);
  }
  const [error] = body.errors ?? [];
  if (error) {
    const code = error.extensions?.['code'];
    throw new MarinerError(isErrorCode(code) ? code : ErrorCode.INTERNAL, error.message);
  }
  if (!body.data) throw new Error(`${url} answered ${response.status} without data`);
  return body.data;
}
