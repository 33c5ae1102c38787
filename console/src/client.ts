import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { Client, cacheExchange, fetchExchange, mapExchange, subscriptionExchange, type CombinedError } from 'urql';

/**
 * The header every console request carries: the gateway accepts the session cookie only with it (and
 * from this origin), which a page on another site cannot send (gateway/console.ts, CSRF).
 */
export const CSRF_HEADERS = { 'x-mariner-csrf': '1' };

/** graphql-ws's close code for a credential the platform no longer takes (an expired OIDC token, a deleted key). */
const CLOSE_UNAUTHORIZED = 4401;

/** Whether the API said the caller is not signed in (any more). */
export function unauthenticated(error: CombinedError | undefined): boolean {
  return !!error && (error.graphQLErrors.some((e) => e.extensions?.['code'] === 'UNAUTHENTICATED') || error.response?.status === 401);
}

/**
 * A GraphQL client for one signed-in session: queries and mutations over HTTP, subscriptions over
 * graphql-ws, both to /graphql on this origin, authenticated by the HttpOnly session cookie the browser
 * sends by itself. Nothing about the credential is in this script. `onUnauthenticated` hears when the API
 * stops taking the session (a request answered UNAUTHENTICATED, the WebSocket closed with 4401).
 */
export function createConsoleClient(onUnauthenticated: () => void = () => undefined): { client: Client; ws: WsClient } {
  const url = new URL('/graphql', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = createWsClient({
    url: url.toString(),
    lazy: true,
    // Reconnects after a network drop; subscriptions start again (the job log resumes from what it has).
    retryAttempts: Infinity,
    shouldRetry: () => true,
    on: {
      closed: (event) => {
        if ((event as CloseEvent | undefined)?.code === CLOSE_UNAUTHORIZED) onUnauthenticated();
      },
    },
  });
  const client = new Client({
    url: '/graphql',
    preferGetMethod: false,
    fetchOptions: { headers: CSRF_HEADERS, credentials: 'same-origin' },
    requestPolicy: 'cache-and-network',
    exchanges: [
      mapExchange({
        onError(error) {
          if (unauthenticated(error)) onUnauthenticated();
        },
      }),
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? '' };
          // A log followed from an offset (`jobLogs(fromOffset)`) resumes after the last line it got: graphql-ws
          // sends this same payload again when it reconnects after a network drop, so it asks for what is new.
          const resumable = typeof input.variables?.['fromOffset'] === 'number';
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, {
                next(value) {
                  if (resumable) {
                    const root = Object.values(value.data ?? {})[0] as { lines?: { offset: number }[] } | undefined;
                    const last = root?.lines?.at(-1)?.offset;
                    if (typeof last === 'number') input.variables = { ...input.variables, fromOffset: last + 1 };
                  }
                  sink.next(value as Parameters<typeof sink.next>[0]);
                },
                error: (error) => sink.error(error),
                complete: () => sink.complete(),
              });
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return { client, ws };
}

/** Signs in: the platform checks the key and sets the session cookie. Throws the API's message. */
export async function signIn(apiKey: string): Promise<void> {
  const response = await fetch('/console/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...CSRF_HEADERS },
    credentials: 'same-origin',
    body: JSON.stringify({ apiKey }),
  });
  if (!response.ok) {
    const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
    throw new Error(body.error?.message ?? `Sign-in failed (HTTP ${response.status})`);
  }
}

/** Signs out: the platform revokes the session and clears the cookie. */
export async function signOut(): Promise<void> {
  await fetch('/console/session', { method: 'DELETE', headers: CSRF_HEADERS, credentials: 'same-origin' });
}

/** A signed-in session's ends (gateway/console.ts): the session's, and its OIDC credential's when it is renewed before. */
export interface SessionInfo {
  expiresAt: string;
  credentialExpiresAt: string | null;
  refreshable: boolean;
}

/** Whether the platform offers OIDC sign-in (an issuer is configured), and this browser's session if it has one. */
export async function signInOptions(): Promise<{ oidc: boolean; session: SessionInfo | null }> {
  const response = await fetch('/console/session', { headers: CSRF_HEADERS, credentials: 'same-origin' });
  return response.ok ? ((await response.json()) as { oidc: boolean; session: SessionInfo | null }) : { oidc: false, session: null };
}

/**
 * Renews the session (an OIDC ID token from its refresh token; an API key checked): its new ends, `expired`
 * when it cannot go on, `unavailable` when the platform or the identity provider could not answer now.
 */
export async function refreshSession(): Promise<SessionInfo | 'expired' | 'unavailable'> {
  try {
    const response = await fetch('/console/session/refresh', { method: 'POST', headers: CSRF_HEADERS, credentials: 'same-origin' });
    if (response.status === 401) return 'expired';
    return response.ok ? ((await response.json()) as SessionInfo) : 'unavailable';
  } catch {
    return 'unavailable';
  }
}

/**
 * Uploads a file as the OpenAI SDK does (`POST /v1/files`, multipart): the platform streams the bytes to
 * its object store. XMLHttpRequest rather than fetch, for the upload's progress (0–100).
 */
export function uploadFile(file: File, purpose: string, onProgress: (percent: number) => void): Promise<{ id: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/files');
    for (const [name, value] of Object.entries(CSRF_HEADERS)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(Math.round((event.loaded / event.total) * 100));
    };
    xhr.onload = () => {
      let body: { id?: string; error?: { message?: string } } = {};
      try {
        body = JSON.parse(xhr.responseText) as typeof body;
      } catch {
        // Not JSON: the status says it.
      }
      if (xhr.status >= 200 && xhr.status < 300 && body.id) resolve({ id: body.id });
      else reject(new Error(body.error?.message ?? `Upload failed (HTTP ${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error('Upload failed: the platform could not be reached'));
    const form = new FormData();
    form.append('purpose', purpose);
    form.append('file', file);
    xhr.send(form);
  });
}
