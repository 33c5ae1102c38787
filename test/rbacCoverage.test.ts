import { Supergraph } from '@apollo/federation-internals';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { isObjectType, type GraphQLSchema } from 'graphql';
import { describe, expect, it } from 'vitest';
import { policy, policyFor, ruleFor, type PolicyMap } from '../schema/rbac/policy.js';
import { SUBGRAPH_NAMES, subgraphTypeDefs, supergraphSdl } from '../schema/subgraphs.js';

/** Every `Type.field` of a schema's object types (introspection types excluded). */
function coordinates(schema: GraphQLSchema): string[] {
  return Object.values(schema.getTypeMap())
    .filter((type) => isObjectType(type) && !type.name.startsWith('__'))
    .flatMap((type) => Object.keys((type as ReturnType<typeof schema.getQueryType> & object).getFields()).map((f) => `${type.name}.${f}`));
}

function uncovered(schema: GraphQLSchema, map: PolicyMap): string[] {
  return coordinates(schema).filter((c) => {
    const [type, field] = c.split('.') as [string, string];
    return !ruleFor(map, type, field);
  });
}

describe('RBAC policy coverage (deny by default, every field has a rule)', () => {
  it('every field of the composed supergraph API has a rule in the policy map', () => {
    const api = Supergraph.build(supergraphSdl()).apiSchema().toGraphQLJSSchema();
    expect(coordinates(api).length).toBeGreaterThan(50);
    expect(uncovered(api, policy)).toEqual([]);
  });

  it('every field of the full supergraph, @inaccessible ones included, has a rule', () => {
    const full = Supergraph.build(supergraphSdl()).schema.toGraphQLJSSchema();
    expect(uncovered(full, policy).filter((c) => !c.startsWith('join__') && !c.startsWith('link__'))).toEqual([]);
  });

  it.each(SUBGRAPH_NAMES)('every field the %s subgraph serves, _service and _entities included, has a rule', (name) => {
    const schema = buildSubgraphSchema({ typeDefs: subgraphTypeDefs(name) });
    const fields = coordinates(schema);
    expect(fields).toContain('Query._service');
    expect(uncovered(schema, policyFor(name))).toEqual([]);
  });
});
