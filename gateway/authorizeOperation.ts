import {
  getOperationAST,
  isAbstractType,
  Kind,
  TypeInfo,
  visit,
  visitWithTypeInfo,
  type DocumentNode,
  type GraphQLObjectType,
  type GraphQLSchema,
} from 'graphql';
import { getArgumentValues, getVariableValues } from 'graphql/execution/values.js';
import { authorizeField } from '../schema/rbac/authorizeField.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import type { RuleContext } from '../schema/rbac/rules.js';

export interface AuthorizeOperationInput {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null | undefined;
  variables?: Record<string, unknown> | null | undefined;
  policy: PolicyMap;
  context: RuleContext;
}

/**
 * Evaluates the policy map for every field an operation selects, before any subgraph is called
 * (DESIGN §4, prototypes §B): a TypeInfo walk calling each rule's public `resolve` with (args,
 * context) and no parent. Fields on an interface or union are checked for every possible type.
 * `@skip`/`@include` are ignored, so a skipped field is still checked (conservative). Throws a
 * GraphQLError (UNAUTHENTICATED or FORBIDDEN, with the field's coordinate) on the first refusal.
 */
export async function authorizeOperation(input: AuthorizeOperationInput): Promise<void> {
  const { schema, document, policy, context } = input;
  const operation = getOperationAST(document, input.operationName ?? undefined);
  if (!operation) return; // validation reports it
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], input.variables ?? {});
  const variableValues = coerced.coerced ?? {};
  context._shield ??= { cache: {} };
  const shieldContext = context as RuleContext & { _shield: { cache: Record<string, never> } };

  const checks: { type: GraphQLObjectType; field: string; args: Record<string, unknown>; info: unknown }[] = [];
  const typeInfo = new TypeInfo(schema);
  const fragments = document.definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION);
  for (const root of [operation, ...fragments]) {
    visit(
      root,
      visitWithTypeInfo(typeInfo, {
        Field(node) {
          if (node.name.value.startsWith('__')) return; // introspection meta-fields
          const parent = typeInfo.getParentType();
          const fieldDef = typeInfo.getFieldDef();
          if (!parent || !fieldDef) return; // unknown field: validation reports it
          if (parent.name.startsWith('__')) return; // inside introspection: governed by MARINER_INTROSPECTION
          let args: Record<string, unknown> = {};
          try {
            args = getArgumentValues(fieldDef, node, variableValues);
          } catch {
            // Bad arguments fail validation or execution; the rule sees none.
          }
          const types = isAbstractType(parent) ? schema.getPossibleTypes(parent) : [parent as GraphQLObjectType];
          for (const type of types) {
            const info = {
              fieldName: node.name.value,
              fieldNodes: [node],
              returnType: fieldDef.type,
              parentType: type,
              schema,
              fragments: {},
              operation,
              variableValues,
            };
            checks.push({ type, field: node.name.value, args, info });
          }
        },
      }),
    );
  }

  for (const check of checks) await authorizeField(policy, check.type.name, check.field, check.args, shieldContext, check.info);
}
