import http from 'node:http';
import { ErrorCode, MarinerError, unauthenticated } from '../lib/errors.js';
import { bearerToken } from '../lib/http.js';
import { INFERENCE_PLANE_PATHS, inferenceFieldOf, type InferenceAnswer, type InferencePlane } from '../lib/inferencePlane.js';
import { INTERNAL_TOKEN_HEADER, type Identity, type InternalTokens, type Principal } from '../lib/identity.js';
import { authorizeField } from '../schema/rbac/authorizeField.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import type { Authenticator } from './authentication.js';

/** A token is minted again once this share of its lifetime has passed (the rest covers the request). */
const TOKEN_REUSE_SHARE = 0.5;

/**
 * The gateway's end of the inference data plane (lib/inferencePlane.ts): what /graphql does for
 * `createChatCompletion` or `chatCompletionChunks` — authentication (the cached principal), the same
 * policy rule, an internal token for the inference subgraph — and then a plain HTTP request on a
 * kept-alive connection instead of a GraphQL operation and a WebSocket per stream. The internal token of
 * an identity is reused while it has more than half its lifetime left: a principal that changes (the
 * authenticator's cache drops it) is a new object, so its requests get a new token.
 */
export function createInferencePlane(options: { authenticator: Authenticator; policy: PolicyMap; tokens: InternalTokens; inferenceUrl: string }): InferencePlane {
  const base = options.inferenceUrl.replace(/\/graphql$/, '');
  const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  const minted = new WeakMap<Principal, Map<string, { token: Promise<string>; renewAt: number }>>();

  function tokenFor(identity: Identity, requestId: string): Promise<string> {
    let byProject = minted.get(identity.principal);
    if (!byProject) minted.set(identity.principal, (byProject = new Map()));
    const key = identity.project ? `${identity.project.organizationId}/${identity.project.projectId}/${identity.project.role}` : '';
    const known = byProject.get(key);
    if (known && known.renewAt > Date.now()) return known.token;
    const token = options.tokens.mint('inference', requestId, identity);
    byProject.set(key, { token, renewAt: Date.now() + options.tokens.ttlSeconds * 1000 * TOKEN_REUSE_SHARE });
    token.catch(() => byProject.delete(key));
    return token;
  }

  return {
    async send(req, call) {
      if (req.headers.authorization !== undefined && bearerToken(req) === undefined) {
        throw unauthenticated('Authorization header must be "Bearer <API key or OIDC token>"');
      }
      const { identity, worker } = await options.authenticator.authenticate(bearerToken(req), req.headers, call.requestId);
      const stream = call.kind !== 'embedding' && call.request['stream'] === true;
      const field = inferenceFieldOf(call.kind, stream);
      await authorizeField(options.policy, field.typeName, field.fieldName, { request: call.request }, { identity, worker, system: false });
      // The rule admitted a user identity (a worker or nobody is refused above).
      const token = await tokenFor(identity!, call.requestId);
      const payload = Buffer.from(JSON.stringify(call.request));
      return new Promise<InferenceAnswer>((resolve, reject) => {
        const upstream = http.request(`${base}${INFERENCE_PLANE_PATHS[call.kind]}`, {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': payload.length, [INTERNAL_TOKEN_HEADER]: token, 'x-request-id': call.requestId },
        });
        const abort = () => upstream.destroy();
        call.signal.addEventListener('abort', abort, { once: true });
        upstream.once('response', (body) => {
          body.once('close', () => call.signal.removeEventListener('abort', abort));
          resolve({ status: body.statusCode ?? 502, headers: body.headers, body });
        });
        upstream.once('error', (error) => {
          call.signal.removeEventListener('abort', abort);
          reject(new MarinerError(ErrorCode.UNAVAILABLE, `The inference service could not be reached (${error.message}); retry shortly`));
        });
        upstream.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}
