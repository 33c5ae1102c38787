/**
 * An operation subscribed over graphql-ws (its `onSubscribe`), checked as HTTP's are: Apollo plugins
 * do not run there, so the same steps are called here. Parsing with the token limit, validation with
 * graphql-armor's rules (depth, aliases, cost, directives), then RBAC over every field of the
 * operation (`authorizeOperation`, as `createRbacPlugin` calls it on HTTP), before anything is planned.
 */
import { getOperationAST, GraphQLError, parse, specifiedRules, validate, type DocumentNode, type GraphQLSchema, type ValidationRule } from 'graphql';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import { authorizeOperation } from './authorizeOperation.js';
import type { GatewayContext } from './context.js';
import type { ConnectionState } from './subscriptionConnection.js';

export interface OperationCheckOptions {
  /** The gateway's API schema (the supergraph's, without federation's internals). */
  schema: GraphQLSchema;
  /** graphql-armor's rules, as on HTTP. */
  validationRules: readonly ValidationRule[];
  maxTokens: number;
  policy: PolicyMap;
}

/** A graphql-ws `subscribe` message's payload. */
export interface OperationPayload {
  query: string;
  operationName?: string | null | undefined;
  variables?: Record<string, unknown> | null | undefined;
}

/** An operation that may run: its document, and the request context it runs with. */
export interface CheckedOperation {
  document: DocumentNode;
  context: GatewayContext;
}

export function createOperationCheck(options: OperationCheckOptions) {
  const { schema, policy } = options;
  const rules = [...specifiedRules, ...options.validationRules];

  /** The operation `id` of a connection, or the errors that refuse it (graphql-ws sends them as `error`). */
  return async function checkOperation(
    connection: ConnectionState,
    id: string,
    payload: OperationPayload,
  ): Promise<CheckedOperation | readonly GraphQLError[]> {
    let document: DocumentNode;
    try {
      document = parse(payload.query, { maxTokens: options.maxTokens });
    } catch (error) {
      return [new MarinerError(ErrorCode.BAD_USER_INPUT, (error as Error).message)];
    }
    const errors = validate(schema, document, rules);
    if (errors.length) return errors.map((e) => new MarinerError(ErrorCode.BAD_USER_INPUT, e.message));
    const operation = getOperationAST(document, payload.operationName ?? undefined);
    if (!operation) return [new MarinerError(ErrorCode.BAD_USER_INPUT, 'Unknown or ambiguous operation name')];
    const context: GatewayContext = {
      requestId: `${connection.requestId}:${id}`,
      identity: connection.credentials.identity,
      worker: connection.credentials.worker,
      system: false,
      internalTokens: new Map(),
      _shield: { cache: {} },
    };
    try {
      await authorizeOperation({ schema, document, operationName: payload.operationName, variables: payload.variables, policy, context });
    } catch (error) {
      if (error instanceof GraphQLError) return [error];
      throw error;
    }
    return { document, context };
  };
}

export type OperationCheck = ReturnType<typeof createOperationCheck>;
