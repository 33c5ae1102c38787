import { operationFromDocument, Supergraph } from '@apollo/federation-internals';
import { prettyFormatQueryPlan, QueryPlanner } from '@apollo/query-planner';
import { buildSubgraphSchema, printSubgraphSchema } from '@apollo/subgraph';
import { parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { SUBGRAPH_NAMES, subgraphTypeDefs, supergraphSdl } from '../schema/subgraphs.js';

/**
 * Reviewed diffs for schema and planner changes (STYLE: snapshot the printed SDL of every subgraph
 * and the query plans of the key operations). Update with `npx vitest run -u` and review the diff.
 */
describe('schema snapshots', () => {
  it.each(SUBGRAPH_NAMES)('the %s subgraph prints the SDL it serves', async (name) => {
    const sdl = printSubgraphSchema(buildSubgraphSchema({ typeDefs: subgraphTypeDefs(name) }));
    await expect(sdl).toMatchFileSnapshot(`./__snapshots__/${name}.subgraph.graphql`);
  });

  const supergraph = Supergraph.build(supergraphSdl());
  const planner = new QueryPlanner(supergraph);
  const operations: Record<string, string> = {
    self: `query Self { self { id organizationRoleBindings { role organization { id title summary { projectCount userCount } } } } }`,
    selfAndScopes: `query SelfAndScopes { self { id } roleScopes { role scopes } authorize(resource: "api.model", capability: READ) { authorized } }`,
    createApiKey: `mutation CreateKey($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id project { id title } } } }`,
    clusterTunnels: `subscription Tunnels($id: ID!) { clusterTunnels(clusterId: $id) { connected tunnels { agentId } cluster { id name componentStatuses { name isHealthy } } } }`,
    clusters: `query Clusters { clusters { items { id name connected tunnels { agentId } status { gpuCapacity stale } } } }`,
  };

  it.each(Object.keys(operations))('the query plan of %s', async (name) => {
    const operation = operationFromDocument(supergraph.apiSchema(), parse(operations[name]!));
    const plan = prettyFormatQueryPlan(planner.buildQueryPlan(operation));
    await expect(`${plan}\n`).toMatchFileSnapshot(`./__snapshots__/plan.${name}.txt`);
  });
});
