import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from 'urql';

/**
 * The header every console request carries: the gateway accepts the session cookie only with it (and
 * from this origin), which a page on another site cannot send (gateway/console.ts, CSRF).
 */
export const CSRF_HEADERS = { 'x-mariner-csrf': '1' };

/**
 * A GraphQL client for one signed-in session: queries and mutations over HTTP, subscriptions over
 * graphql-ws, both to /graphql on this origin, authenticated by the HttpOnly session cookie the browser
 * sends by itself. Nothing about the credential is in this script.
 */
export function createConsoleClient(): { client: Client; ws: WsClient } {
  const url = new URL('/graphql', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = createWsClient({
    url: url.toString(),
    lazy: true,
    // Reconnects after a network drop; subscriptions start again (the job log resumes from what it has).
    retryAttempts: Infinity,
    shouldRetry: () => true,
  });
  const client = new Client({
    url: '/graphql',
    preferGetMethod: false,
    fetchOptions: { headers: CSRF_HEADERS, credentials: 'same-origin' },
    requestPolicy: 'cache-and-network',
    exchanges: [
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

/** Whether the platform offers OIDC sign-in (an issuer is configured). */
export async function signInOptions(): Promise<{ oidc: boolean }> {
  const response = await fetch('/console/session', { headers: CSRF_HEADERS, credentials: 'same-origin' });
  return response.ok ? ((await response.json()) as { oidc: boolean }) : { oidc: false };
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
