/**
 * Error masking of subscription events: the HTTP path masks with Apollo Server's `formatError`, which
 * does not run for events, so each event's errors go through the same `maskError` here (closed code
 * set; anything else becomes INTERNAL and is logged).
 */
import { GraphQLError, type ExecutionResult, type GraphQLFormattedError } from 'graphql';
import type { Logger } from '../lib/logging.js';
import { maskError } from '../lib/subgraphServer.js';

/** An event's result with only the errors masking keeps. */
export function maskResult(result: { data?: unknown; errors?: readonly GraphQLError[] | readonly GraphQLFormattedError[] }, logger: Logger): ExecutionResult {
  if (!result.errors?.length) return result as ExecutionResult;
  // graphql-ws serialises errors with toJSON: hand it GraphQLErrors, carrying only what masking kept.
  const errors = result.errors.map((error) => {
    const kept = error instanceof GraphQLError ? maskError(error.toJSON(), error, logger) : maskError(error, error, logger);
    return new GraphQLError(kept.message, { ...(kept.path ? { path: kept.path } : {}), ...(kept.extensions ? { extensions: kept.extensions } : {}) });
  });
  return { ...(result.data !== undefined ? { data: result.data as ExecutionResult['data'] } : {}), errors };
}
