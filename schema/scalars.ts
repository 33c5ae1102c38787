import { GraphQLScalarType, valueFromASTUntyped } from 'graphql';

/**
 * The scalars the subgraph SDLs share, one implementation each: a subgraph's resolvers map the
 * scalar's name to it. (`DateTime` needs none: it travels as an ISO 8601 string.)
 */

/** Any JSON value (free-form data: the OpenAI request and response bodies, metadata). */
export const JSONScalar = new GraphQLScalarType({
  name: 'JSON',
  description: 'A JSON value.',
  serialize: (value) => value,
  parseValue: (value) => value,
  // A literal in the operation (`metadata: {a: "b"}`), variables inside it substituted.
  parseLiteral: (node, variables) => valueFromASTUntyped(node, variables),
});
