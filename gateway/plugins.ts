import { HeaderMap, type ApolloServerPlugin } from '@apollo/server';
import { ErrorCode, httpStatusFor } from '../lib/errors.js';
import type { Logger } from '../lib/logging.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import { authorizeOperation } from './authorizeOperation.js';
import type { GatewayContext } from './context.js';

/**
 * RBAC before any subgraph is called: the whole operation is checked against the policy map in
 * `didResolveOperation`; a refusal ends the request with 401/403 and no query plan runs.
 */
export function createRbacPlugin(policy: PolicyMap): ApolloServerPlugin<GatewayContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ schema, document, operationName, request, contextValue }) {
          await authorizeOperation({ schema, document, operationName, variables: request.variables, policy, context: contextValue });
        },
      };
    },
  };
}

/**
 * A subscription sent over HTTP (a POST or GET to /graphql) is refused with BAD_USER_INPUT and 400:
 * subscriptions travel over graphql-ws on the same path (gateway/subscriptions.ts); the HTTP executor
 * cannot run them and would fail with an internal error. Runs after RBAC (`responseForOperation` comes
 * after every `didResolveOperation`), so what a caller may not subscribe to is still refused as such.
 */
export function createSubscriptionOverHttpPlugin(): ApolloServerPlugin<GatewayContext> {
  return {
    async requestDidStart() {
      return {
        // After every plugin's didResolveOperation (which Apollo runs together): RBAC has judged the operation.
        async responseForOperation({ operation }) {
          if (operation.operation !== 'subscription') return null;
          const message = 'Subscriptions are served over WebSocket (graphql-ws, subprotocol graphql-transport-ws) at /graphql, not over HTTP';
          return {
            http: { status: httpStatusFor(ErrorCode.BAD_USER_INPUT), headers: new HeaderMap() },
            body: { kind: 'single', singleResult: { errors: [{ message, extensions: { code: ErrorCode.BAD_USER_INPUT } }] } },
          };
        },
      };
    },
  };
}

/**
 * Errors outside the closed code set were masked to INTERNAL by formatError; here they get the
 * request id, so an operator can find the logged cause, and unexpected errors are logged.
 */
export function createErrorLoggingPlugin(logger: Logger): ApolloServerPlugin<GatewayContext> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ errors, contextValue }) {
          for (const error of errors) {
            const code = error.extensions?.['code'];
            if (code === undefined || code === 'INTERNAL_SERVER_ERROR' || code === ErrorCode.INTERNAL) {
              logger.error({ err: error.originalError ?? error, requestId: contextValue.requestId, path: error.path }, 'unexpected error');
            }
          }
        },
        async willSendResponse({ response, contextValue }) {
          response.http.headers.set('x-request-id', contextValue.requestId);
          if (response.body.kind !== 'single') return;
          for (const error of response.body.singleResult.errors ?? []) {
            if (error.extensions?.['code'] === ErrorCode.INTERNAL) {
              (error as { message: string }).message = `Internal error (request id ${contextValue.requestId})`;
            }
          }
        },
      };
    },
  };
}
