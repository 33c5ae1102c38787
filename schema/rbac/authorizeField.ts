import { GraphQLError } from 'graphql';
import objectHash from 'object-hash';
import { ErrorCode, forbidden, httpStatusFor, isErrorCode, MarinerError } from '../../lib/errors.js';
import { ruleFor, type PolicyMap } from './policy.js';
import type { RuleContext } from './rules.js';

/** How graphql-shield runs a rule outside its middleware: the options its own resolver passes. */
const SHIELD_OPTIONS = {
  debug: false,
  allowExternalErrors: true,
  hashFunction: objectHash,
} as const;

/**
 * Runs the policy map's rule for one field, `Type.field` (deny when it has none), with the field's
 * arguments and the caller's context, and no parent (DESIGN §4: rules read context and arguments).
 * The gateway's walk over an operation (gateway/authorizeOperation.ts) calls it for every field
 * selected; the inference data plane, which serves `createChatCompletion` / `chatCompletionChunks`
 * without GraphQL, calls it for the field it stands for — so one policy decides both ways. `info` is
 * what the walk knows of the field (rules do not read it). Throws a GraphQLError with the code the
 * rule chose (UNAUTHENTICATED or FORBIDDEN by default) and the field's coordinate.
 */
export async function authorizeField(
  policy: PolicyMap,
  typeName: string,
  fieldName: string,
  args: Record<string, unknown>,
  context: RuleContext,
  info: unknown = { fieldName, parentType: { name: typeName } },
): Promise<void> {
  context._shield ??= { cache: {} };
  const rule = ruleFor(policy, typeName, fieldName);
  const result = rule ? await rule.resolve(undefined as never, args, context as never, info as never, SHIELD_OPTIONS as never) : false;
  if (result !== true) throw refusal(result, `${typeName}.${fieldName}`);
}

function refusal(result: unknown, coordinate: string): GraphQLError {
  const base = result instanceof MarinerError ? result : forbidden(`Not authorized to access ${coordinate}`);
  const code = isErrorCode(base.extensions['code']) ? base.extensions['code'] : ErrorCode.FORBIDDEN;
  return new GraphQLError(base.message, {
    extensions: { code, coordinate, http: { status: httpStatusFor(code) } },
  });
}
